"""How a protocol's messages are written: the one codec interface every protocol picks from.

A :class:`Codec` says, per method plan, which method is called upstream
(:meth:`~Codec.info`), how a request message is decoded from the bytes a
client sent (:meth:`~Codec.decode`) and how a response message becomes the
bytes it reads (:meth:`~Codec.encoder`); ``name`` is the media subtype that
names it (``json``, ``proto``) and ``binary`` whether its bytes are not text.
There are two, made once: protocols look them up by the subtype their media
type names (:data:`CODECS`) and keep the one found per request form, so the
choice costs nothing per call.

- :data:`JSON_CODEC`: the method's JSON codecs (``plan.request_codec`` /
  ``plan.response_codec``: codec/json_codec.py, its ``json.*`` options) and
  the method as discovered (``plan.info``).
- :data:`PROTO_CODEC`: the upstream's protobuf bytes passed through untouched
  (codec/raw.py): never decoded and re-encoded, so unknown fields and the
  upstream's own field order survive; the method is ``plan.raw_info``.

Who uses what: gRPC-Web (``+proto``, ``+json``) and Connect (``proto``,
``json``) pick one of these by media type; the JSON protocols (unary, NDJSON
and SSE streams, request streams, WebSocket) use :data:`JSON_CODEC` where they
decode a plain body and encode a message. What only JSON has stays with the
JSON codec itself and is not part of this interface: REST bindings (path
variables, ``body:``, query parameters, HttpBody, ``response_body``), field
masks, a GET's message from its query string and a JSON array's elements
(``MessageCodec.decode_value``).

**Adding a codec** is a class here with these five members and an entry in
:data:`CODECS`; Connect then serves it under its own media types
(``application/<name>``, ``application/connect+<name>``), while gRPC-Web
lists its ``application/grpc-web+<name>`` types (and their answers) in
protocol/grpc_web_frames.py, which needs the new one added.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from google.protobuf.message import Message

from grpc_bridge.codec.json_codec import MessageCodec
from grpc_bridge.codec.raw import raw, raw_bytes
from grpc_bridge.discovery.registry import MethodInfo

__all__ = ["CODECS", "JSON_CODEC", "PROTO_CODEC", "Codec", "CodecPlan"]


class CodecPlan(Protocol):
    """What a codec reads of a method's plan (routing/plan.py's ``MethodPlan``, which sits
    above codec/: named here by its shape)."""

    @property
    def info(self) -> MethodInfo: ...

    @property
    def raw_info(self) -> MethodInfo: ...

    @property
    def request_codec(self) -> MessageCodec: ...

    @property
    def response_codec(self) -> MessageCodec: ...


class Codec(Protocol):
    """A message codec: one instance per kind, shared by every protocol and call."""

    @property
    def name(self) -> str:
        """The media subtype that names it: ``json``, ``proto``."""

    @property
    def binary(self) -> bool:
        """Its bytes are not text (no charset applies; not valid in a JSON document)."""

    def info(self, plan: CodecPlan) -> MethodInfo:
        """The method as called upstream: its message classes are what this codec makes
        and reads."""

    def decode(self, plan: CodecPlan, data: bytes) -> Message:
        """A request message from the client's bytes; bad bytes raise
        :class:`~grpc_bridge.errors.InvalidArgument` naming what is wrong."""

    def encoder(self, plan: CodecPlan) -> Callable[[Message], bytes]:
        """What turns each response message into the client's bytes (picked once per call,
        run once per message)."""


class _Json:
    """Proto3 JSON through the method's own JSON codecs."""

    # No fields: the instance is a singleton, hashed and compared by identity (it keys
    # protocols' per-form tables, looked up on every call).
    __slots__ = ()
    name: Final = "json"
    binary: Final = False

    def info(self, plan: CodecPlan) -> MethodInfo:
        return plan.info

    def decode(self, plan: CodecPlan, data: bytes) -> Message:
        return plan.request_codec.decode(data)

    def encoder(self, plan: CodecPlan) -> Callable[[Message], bytes]:
        return plan.response_codec.encode

    def __repr__(self) -> str:
        return "JSON_CODEC"


class _Proto:
    """Protobuf bytes as the upstream reads and writes them, passed through."""

    __slots__ = ()
    name: Final = "proto"
    binary: Final = True

    def info(self, plan: CodecPlan) -> MethodInfo:
        return plan.raw_info

    def decode(self, plan: CodecPlan, data: bytes) -> Message:
        return raw(data)

    def encoder(self, plan: CodecPlan) -> Callable[[Message], bytes]:
        return raw_bytes

    def __repr__(self) -> str:
        return "PROTO_CODEC"


JSON_CODEC: Final[Codec] = _Json()
PROTO_CODEC: Final[Codec] = _Proto()
#: Each codec by the media subtype that names it.
CODECS: Final[dict[str, Codec]] = {codec.name: codec for codec in (JSON_CODEC, PROTO_CODEC)}
