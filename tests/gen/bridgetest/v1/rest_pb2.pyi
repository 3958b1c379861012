import datetime

from bridgetest.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Thing(_message.Message):
    __slots__ = ("name", "id", "num", "flag", "color", "nested", "tags", "nums", "ts", "dur", "w_int32", "data", "ratio", "labels", "big", "colors", "paths")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NUM_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    NESTED_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    NUMS_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    DUR_FIELD_NUMBER: _ClassVar[int]
    W_INT32_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    BIG_FIELD_NUMBER: _ClassVar[int]
    COLORS_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    num: int
    flag: bool
    color: _common_pb2.Color
    nested: _common_pb2.Nested
    tags: _containers.RepeatedScalarFieldContainer[str]
    nums: _containers.RepeatedScalarFieldContainer[int]
    ts: _timestamp_pb2.Timestamp
    dur: _duration_pb2.Duration
    w_int32: _wrappers_pb2.Int32Value
    data: bytes
    ratio: float
    labels: _containers.ScalarMap[str, str]
    big: int
    colors: _containers.RepeatedScalarFieldContainer[_common_pb2.Color]
    paths: _field_mask_pb2.FieldMask
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., num: _Optional[int] = ..., flag: _Optional[bool] = ..., color: _Optional[_Union[_common_pb2.Color, str]] = ..., nested: _Optional[_Union[_common_pb2.Nested, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., nums: _Optional[_Iterable[int]] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dur: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., w_int32: _Optional[_Union[_wrappers_pb2.Int32Value, _Mapping]] = ..., data: _Optional[bytes] = ..., ratio: _Optional[float] = ..., labels: _Optional[_Mapping[str, str]] = ..., big: _Optional[int] = ..., colors: _Optional[_Iterable[_Union[_common_pb2.Color, str]]] = ..., paths: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateThingRequest(_message.Message):
    __slots__ = ("thing", "update_mask")
    THING_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    thing: Thing
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, thing: _Optional[_Union[Thing, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("id", "file")
    ID_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    id: str
    file: _httpbody_pb2.HttpBody
    def __init__(self, id: _Optional[str] = ..., file: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...
