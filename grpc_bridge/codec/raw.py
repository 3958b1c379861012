"""Protobuf bytes passed through untouched: the binary (``+proto``) protocols' codec.

gRPC-Web and Connect's binary variants carry the very bytes the upstream
reads and writes, so the bridge never decodes and re-encodes them. A
:class:`RawMessage` stands where a message class would (both transports
call only ``FromString`` and ``SerializeToString``), and :func:`raw_method`
is a method whose request and response are raw. Oversize checks stay where
they are: the body limit on the way in, the upstream's receive limit on
the way out.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from google.protobuf.message import Message

from grpc_bridge.discovery.registry import MethodInfo


class RawMessage:
    """A message as its encoded bytes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    @classmethod
    def FromString(cls, data: bytes) -> RawMessage:
        return cls(bytes(data))

    def SerializeToString(self, **_: Any) -> bytes:
        return self.data

    def ByteSize(self) -> int:
        return len(self.data)


def raw(data: bytes) -> Message:
    """``data`` as the request message of a :func:`raw_method` call."""
    return cast("Message", RawMessage(data))


def raw_bytes(message: Message) -> bytes:
    """The bytes of a response message of a :func:`raw_method` call."""
    return cast("RawMessage", message).data


def raw_method(info: MethodInfo) -> MethodInfo:
    """``info`` with raw bytes for its request and response (built once per plan)."""
    raw_class = cast("type[Message]", RawMessage)
    return dataclasses.replace(info, input_class=raw_class, output_class=raw_class)
