from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RetryAdvice(_message.Message):
    __slots__ = ("wait_seconds", "why")
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    wait_seconds: int
    why: str
    def __init__(self, wait_seconds: _Optional[int] = ..., why: _Optional[str] = ...) -> None: ...
