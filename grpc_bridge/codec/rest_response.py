"""REST bindings' response side (HttpRule ``response_body``, google/api/http.proto).

:class:`RestResponse` renders one response message as the HTTP body: the whole
message as JSON, one top-level field of it (``response_body: field``: a JSON
array for a repeated field, the field's default when unset), or a
``google.api.HttpBody``'s raw ``data`` with its ``content_type`` (the whole
response, or the ``response_body`` field).
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message

from grpc_bridge.codec.json_codec import JsonOptions, MessageCodec
from grpc_bridge.codec.rest import HTTP_BODY, RestMappingError
from grpc_bridge.errors import JsonEncodeError

__all__ = ["RestResponse"]

_OCTET_STREAM = "application/octet-stream"
#: What aiohttp refuses in a header value: control characters but tab, and DEL.
_UNSAFE_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FD = FieldDescriptor
_INT64 = frozenset(
    {_FD.TYPE_INT64, _FD.TYPE_UINT64, _FD.TYPE_SINT64, _FD.TYPE_FIXED64, _FD.TYPE_SFIXED64}
)


class RestResponse:
    """The response message -> the HTTP body: whole, one field, or an HttpBody's bytes."""

    __slots__ = (
        "_codec",
        "_default",
        "_field",
        "_key",
        "_raw_sub",
        "_sub",
        "raw_body",
        "response_body",
    )

    def __init__(
        self,
        codec: MessageCodec,
        descriptor: Descriptor,
        response_body: str | None,
        pool: DescriptorPool,
        options: JsonOptions,
    ) -> None:
        self._codec = codec
        self.response_body = response_body or None
        self._field: FieldDescriptor | None = None
        self._sub: MessageCodec | None = None
        self._raw_sub: MessageCodec | None = None
        self._key = ""
        self._default: Any = None
        if self.response_body is None:
            self.raw_body = descriptor.full_name == HTTP_BODY
            return
        field = descriptor.fields_by_name.get(self.response_body)
        if field is None:
            raise RestMappingError(
                f"response_body {self.response_body!r}: {descriptor.full_name} has no such "
                "top-level field"
            )
        self._field = field
        self._key = field.name if options.use_proto_names else field.json_name
        message_type = None if field.is_repeated else field.message_type
        self.raw_body = message_type is not None and message_type.full_name == HTTP_BODY
        if message_type is not None:
            sub_codec = MessageCodec(message_factory.GetMessageClass(message_type), pool, options)
            if self.raw_body:
                self._raw_sub = sub_codec
            else:
                self._sub = sub_codec
        else:
            self._default = _default_json(field, options)

    def encode(self, message: Message) -> bytes:
        if self.raw_body:
            return bytes(self._http_body(message).data)
        if self._field is None:
            return self._codec.encode(message)
        if self._sub is not None:
            return self._sub.encode(getattr(message, self._field.name))
        value = self._codec.to_value(message).get(self._key, self._default)
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError as exc:  # not expected from MessageToDict's output
            raise JsonEncodeError(f"cannot render {self._key!r} as JSON: {exc}") from exc

    def encode_json(self, message: Message) -> bytes:
        """Like :meth:`encode`, but an HttpBody in its JSON form (base64 ``data``): for streams."""
        if not self.raw_body:
            return self.encode(message)
        if self._raw_sub is None:
            return self._codec.encode(message)
        return self._raw_sub.encode(getattr(message, self.response_body or ""))

    def content_type(self, message: Message) -> str | None:
        """An HttpBody's own content type (``application/octet-stream`` if it has none);
        None for JSON."""
        if not self.raw_body:
            return None
        content_type = str(self._http_body(message).content_type)
        if _UNSAFE_HEADER_VALUE.search(content_type):
            # It would split or corrupt the response head (aiohttp refuses to send it).
            raise JsonEncodeError(
                "the upstream's HttpBody content_type holds control characters: "
                "it cannot be a Content-Type header"
            )
        return content_type or _OCTET_STREAM

    def _http_body(self, message: Message) -> Any:
        return message if self._field is None else getattr(message, self._field.name)


def _default_json(field: FieldDescriptor, options: JsonOptions) -> Any:
    """What ``emit_unpopulated`` would print for an unset field (no message fields here)."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return {}
    if field.is_repeated:
        return []
    if field.type == _FD.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None
        number = int(field.default_value)
        if options.enums_as_ints:
            return number
        value = enum.values_by_number.get(number)
        return value.name if value is not None else number
    if field.type == _FD.TYPE_BYTES:
        return base64.b64encode(bytes(field.default_value)).decode("ascii")
    if field.type in _INT64:
        return str(field.default_value)
    return field.default_value
