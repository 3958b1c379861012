"""REST bindings' request side (HttpRule, google/api/http.proto).

:class:`RestRequest` builds the request message of one binding from three
places, as http.proto's "Rules for HTTP mapping" say:

1. path variables (``{id}``, ``{item.id}``, ``{name=shelves/*}``), percent-
   decoded per :mod:`grpc_bridge.codec.percent` and converted like query values;
2. the body: the whole message (``body: "*"``), one top-level field
   (``body: "item"``), or nothing (no ``body:``: a non-empty body is a 400);
3. the query string, for every field not bound by the path or the body
   (none at all with ``body: "*"``).

A field bound by the path may not be set again by the body or the query (400
naming it). A ``google.api.HttpBody`` body (the whole request, or the body
field) takes the raw bytes and the request's Content-Type instead of JSON.
PATCH with ``body: <field>`` fills the request's one FieldMask field from the
body's JSON keys when the client sent no mask (:mod:`grpc_bridge.codec.fieldmask`).

:mod:`grpc_bridge.codec.rest_response` shapes the response side.

It is compiled once per binding at discovery time; a rule that doesn't fit
the messages is :class:`RestMappingError`. Nothing here knows about HTTP
servers or URLs: the route table hands over captured variables and the HTTP
layer the query, body and Content-Type.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from grpc_bridge.codec.fieldmask import mask_paths
from grpc_bridge.codec.json_codec import MessageCodec, parse_json
from grpc_bridge.codec.percent import decode_path_value
from grpc_bridge.codec.query import query_to_value, text_to_value
from grpc_bridge.codec.validate_plans import WRAPPERS_FILE
from grpc_bridge.errors import InvalidArgument

__all__ = ["HTTP_BODY", "FixedFields", "RestMappingError", "RestRequest", "StreamDecoder"]

HTTP_BODY = "google.api.HttpBody"
_FIELD_MASK = "google.protobuf.FieldMask"
# Well-known types a path variable can carry: they have a one-string JSON form.
_PATH_WKTS = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)


class RestMappingError(ValueError):
    """A rule that doesn't fit the method's messages (unknown field, repeated path field, ...)."""


@dataclass(frozen=True, slots=True)
class PathField:
    #: Dotted proto field names, as the template writes them.
    name: str
    chain: tuple[FieldDescriptor, ...]
    #: One-segment variable: decode everything, %2F included.
    single: bool
    #: Where a value comes from, as errors name it.
    where: str


class FixedFields(NamedTuple):
    """What the URL sets in every request message: converted path values, the query's value.

    (A tuple: one is made per request.)"""

    paths: tuple[tuple[PathField, Any], ...]
    query: Mapping[str, Any]


class StreamDecoder:
    """One streamed request message (its body's JSON) -> the message, path and query merged in.

    Duck-types the ``decode`` / ``decode_value`` pair of
    :class:`~grpc_bridge.codec.json_codec.MessageCodec`, so request streams
    and WebSocket frames read generic and REST routes alike.
    """

    __slots__ = ("_fixed", "_rest")

    def __init__(self, rest: RestRequest, fixed: FixedFields) -> None:
        self._rest = rest
        self._fixed = fixed

    def decode(self, body: bytes) -> Message:
        parsed = parse_json(body, max_depth=self._rest.max_depth) if body.strip() else None
        return self.decode_value(parsed)

    def decode_value(self, value: Any) -> Message:
        rest = self._rest
        if rest.body is None:
            # Every message must come from the URL alone; ``{}`` is the one way to send it.
            if value not in (None, {}):
                raise InvalidArgument(
                    "this route takes no request body (its binding has no body:): "
                    "send {} as each message and the fields in the path or query string"
                )
            value = None
        if rest.raw_whole:
            # An HttpBody stream is JSON too: {"contentType": ..., "data": <base64>}.
            return rest.codec.decode_value({} if value is None else value)
        fixed = self._fixed
        if fixed.query:
            # decode_value may rewrite values in place; each message gets its own copy.
            fixed = FixedFields(fixed.paths, copy.deepcopy(fixed.query))
        return rest.build(fixed, value)


class RestRequest:
    """Path variables + body + query -> the request message of one binding."""

    __slots__ = (
        "_body_field",
        "_body_name",
        "_bound",
        "_codec",
        "_descriptor",
        "_mask_field",
        "_max_depth",
        "_raw_field",
        "_raw_whole",
        "body",
        "path_fields",
    )

    def __init__(
        self,
        codec: MessageCodec,
        descriptor: Descriptor,
        variables: Sequence[tuple[tuple[str, ...], bool]],
        body: str | None,
        *,
        patch: bool = False,
        max_depth: int = 64,
    ) -> None:
        """``variables``: (field path, single-segment?) per template variable."""
        self._codec = codec
        self._descriptor = descriptor
        self._max_depth = max_depth
        self.body = body or None
        self.path_fields = tuple(
            PathField(name, _path_chain(descriptor, path), single, f'path variable "{name}"')
            for path, single in variables
            for name in (".".join(path),)
        )
        self._bound = frozenset(f.name for f in self.path_fields)
        self._body_field: FieldDescriptor | None = None
        self._raw_whole = self.body == "*" and descriptor.full_name == HTTP_BODY
        if self._raw_whole and self.path_fields:
            raise RestMappingError("a google.api.HttpBody request takes no path variables")
        if self.body is not None and self.body != "*":
            self._body_field = _body_field(descriptor, self.body, self.path_fields)
        body_field = self._body_field
        body_type = (
            None if body_field is None or body_field.is_repeated else body_field.message_type
        )
        self._raw_field = body_type is not None and body_type.full_name == HTTP_BODY
        self._body_name = None if body_field is None else body_field.name
        self._mask_field = (
            _patch_mask_field(descriptor, self._body_field, self.path_fields)
            if patch and self._body_field is not None and not self._raw_field
            else None
        )

    @property
    def raw_body(self) -> bool:
        """The body is an HttpBody's bytes, of any media type, rather than JSON."""
        return self._raw_whole or self._raw_field

    @property
    def takes_body(self) -> bool:
        return self.body is not None

    @property
    def raw_whole(self) -> bool:
        """The whole request is an HttpBody (``body: "*"``)."""
        return self._raw_whole

    @property
    def patch_mask(self) -> str | None:
        """The FieldMask field a PATCH fills from the body's keys, when the client sent none."""
        return None if self._mask_field is None else self._mask_field.name

    @property
    def codec(self) -> MessageCodec:
        return self._codec

    @property
    def max_depth(self) -> int:
        return self._max_depth

    def decode(
        self,
        path_params: Mapping[str, str],
        query: Iterable[tuple[str, str]],
        body: bytes,
        content_type: str | None,
        *,
        ignore_unknown_query: bool = False,
    ) -> Message:
        """The request message; :class:`InvalidArgument` names whatever is wrong.

        ``path_params`` are the route's captures, still percent-encoded.
        """
        if self.body is None and body.strip():
            raise InvalidArgument(
                "this route takes no request body (its binding has no body:); "
                "send the fields in the query string"
            )
        fixed = self.fixed_fields(path_params, query, ignore_unknown_query=ignore_unknown_query)
        if self._raw_whole:
            message = self._codec.message_class()
            message.content_type = content_type or ""  # type: ignore[attr-defined]
            message.data = body  # type: ignore[attr-defined]
            return message
        parsed: Any = None
        if body.strip() and not self._raw_field:
            parsed = parse_json(body, max_depth=self._max_depth)
        message = self.build(fixed, parsed)
        if self._raw_field:
            assert self._body_field is not None
            target = getattr(message, self._body_field.name)
            target.content_type = content_type or ""
            target.data = body
        return message

    def fixed_fields(
        self,
        path_params: Mapping[str, str],
        query: Iterable[tuple[str, str]],
        *,
        ignore_unknown_query: bool = False,
    ) -> FixedFields:
        """The path variables and query parameters of one request, decoded and checked once."""
        whole_body = self.body == "*"
        if whole_body:
            self._refuse_query(query, ignore_unknown_query)
        paths = tuple(
            [
                (field, self._path_value(field, path_params.get(field.name, "")))
                for field in self.path_fields
            ]
        )
        query_value: dict[str, Any] = {}
        if not whole_body:
            query_value = query_to_value(
                self._descriptor,
                query,
                ignore_unknown=ignore_unknown_query,
                bound=self._bound,
                body=self._body_name,
                max_depth=self._max_depth,
            )
        return FixedFields(paths, query_value)

    def stream_decoder(
        self,
        path_params: Mapping[str, str],
        query: Iterable[tuple[str, str]],
        *,
        ignore_unknown_query: bool = False,
    ) -> StreamDecoder:
        """Request messages of a stream (NDJSON lines, array elements, WebSocket frames).

        Each message is the binding's body, always JSON, and gets the path
        variables and query parameters merged in with the rules of
        :meth:`decode`; those are checked here, before any message arrives.
        """
        return StreamDecoder(
            self, self.fixed_fields(path_params, query, ignore_unknown_query=ignore_unknown_query)
        )

    def build(self, fixed: FixedFields, parsed: Any) -> Message:
        """The message from the body's JSON (None: no body) and the path and query fields."""
        value: dict[str, Any] = {}
        if parsed is not None:
            if self._body_field is None:
                value = parsed if isinstance(parsed, dict) else {}
            else:
                value = {self._body_field.name: parsed}
        if self.body == "*" and parsed is not None and not isinstance(parsed, dict):
            return self._codec.decode_value(parsed)  # the codec names the wrong JSON type
        # From the body as sent, before path values join it.
        mask = self._mask_paths(parsed) if self._mask_field is not None else []
        for field, converted in fixed.paths:
            _place(value, field, converted)
        _merge(value, fixed.query)
        message = self._codec.decode_value(value)
        if mask:
            assert self._mask_field is not None
            target = getattr(message, self._mask_field.name)
            if not target.paths:  # the client's own mask wins
                target.paths.extend(mask)
        return message

    def _refuse_query(self, query: Iterable[tuple[str, str]], ignore_unknown: bool) -> None:
        first = next(iter(query), None)
        if first is not None and not ignore_unknown:
            raise InvalidArgument(
                f'unknown query parameter "{first[0]}": this route (body: "*") takes '
                "every field from the path or the body"
            )

    def _path_value(self, field: PathField, raw: str) -> Any:
        where = field.where
        try:
            text = decode_path_value(raw, single=field.single)
        except ValueError as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc
        return text_to_value(field.chain[-1], text, where=where, max_depth=self._max_depth)

    def _mask_paths(self, parsed: Any) -> list[str]:
        assert self._body_field is not None
        body_type = self._body_field.message_type
        assert body_type is not None
        return mask_paths(parsed, body_type)


def _path_chain(descriptor: Descriptor, path: Sequence[str]) -> tuple[FieldDescriptor, ...]:
    name = ".".join(path)
    chain: list[FieldDescriptor] = []
    message = descriptor
    for index, part in enumerate(path):
        field = message.fields_by_name.get(part)
        if field is None:
            hint = next((f.name for f in message.fields if f.json_name == part), None)
            raise RestMappingError(
                f"path variable {name!r}: {message.full_name} has no field {part!r}"
                + (f" (field paths use proto names: {hint!r})" if hint else "")
            )
        chain.append(field)
        if field.is_repeated:
            raise RestMappingError(
                f"path variable {name!r}: {field.full_name} is a repeated or map field"
            )
        sub = field.message_type
        if index == len(path) - 1:
            if sub is not None and not _path_wkt(sub):
                raise RestMappingError(
                    f"path variable {name!r}: {field.full_name} is a message "
                    f"({sub.full_name}); bind one of its fields"
                )
        elif sub is None or sub.full_name.startswith("google.protobuf."):
            raise RestMappingError(f"path variable {name!r}: {field.full_name} has no subfields")
        else:
            message = sub
    return tuple(chain)


def _path_wkt(message: Descriptor) -> bool:
    return message.full_name in _PATH_WKTS or message.file.name == WRAPPERS_FILE


def _body_field(
    descriptor: Descriptor, name: str, path_fields: Sequence[PathField]
) -> FieldDescriptor:
    field = descriptor.fields_by_name.get(name)
    if field is None:
        raise RestMappingError(
            f"body {name!r}: {descriptor.full_name} has no such top-level field "
            '(body is "*", a top-level field name, or absent)'
        )
    for path_field in path_fields:
        if path_field.name == name:
            raise RestMappingError(f"field {name!r} is bound by both the path and the body")
    return field


def _patch_mask_field(
    descriptor: Descriptor, body: FieldDescriptor, path_fields: Sequence[PathField]
) -> FieldDescriptor | None:
    """The request's one FieldMask field (grpc-gateway: none when there are several)."""
    if body.message_type is None or body.is_repeated:
        return None
    masks = [
        f
        for f in descriptor.fields
        if f.message_type is not None
        and f.message_type.full_name == _FIELD_MASK
        and not f.is_repeated
    ]
    if len(masks) != 1 or masks[0] is body:
        return None
    if any(p.chain[0] is masks[0] for p in path_fields):
        return None
    return masks[0]


def _place(value: dict[str, Any], field: PathField, converted: Any) -> None:
    """Put one path value into the request's JSON; the body may not have set it."""
    node: Any = value
    for index, step in enumerate(field.chain):
        key = _present_key(node, step)
        if index == len(field.chain) - 1:
            if key is not None:
                raise InvalidArgument(
                    f'field "{field.name}" is bound by the path '
                    "and cannot be set by the request body"
                )
            node[step.name] = converted
            return
        if key is None or node[key] is None:
            key = key or step.name
            node[key] = {}
        node = node[key]
        if not isinstance(node, dict):
            return  # a wrong JSON type: decode_value names it


def _present_key(node: Any, field: FieldDescriptor) -> str | None:
    """The key ``node`` sets ``field`` under (proto or JSON name), if set to non-null."""
    if not isinstance(node, dict):
        return None
    for key in (field.name, field.json_name):
        if node.get(key) is not None:
            return key
    return None


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        existing = into.get(key)
        if isinstance(existing, dict) and isinstance(value, dict):
            _merge(existing, value)
        else:
            into[key] = value
