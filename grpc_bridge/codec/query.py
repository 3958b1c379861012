"""URL query parameters -> a JSON value for :meth:`MessageCodec.decode_value` (spec §2).

The rules are grpc-gateway's ``runtime.PopulateQueryParameters``, made strict:

- ``nested.child.value=2``: nested fields by dots; each name in proto
  (``f_int32``) or lowerCamel (``fInt32``) form.
- ``r_int32=1&r_int32=2``: repeated fields by repeating the key; the same key
  twice for a singular field is an error.
- ``m_str_int[a]=1``: map entries by key in brackets; ``m_int_nested[7].name=x``
  reaches into a message value.
- Values are parsed like Go's strconv: integers in decimal (``+`` allowed,
  range-checked), floats in decimal or exponent form plus ``NaN`` / ``Inf`` /
  ``Infinity`` (any case, signed), bools as ``ParseBool`` (``1 t T TRUE true
  True`` / ``0 f F FALSE false False``), bytes as base64 in the standard or
  URL-safe alphabet, padded or not (a space counts as ``+``, since form
  decoding turns an unescaped ``+`` into one), enums by name or by the number
  of a declared value.
- Well-known types take their JSON string form: Timestamp (RFC 3339),
  Duration (``1.5s``), FieldMask (``a,b.c``; paths in snake_case or
  lowerCamel), wrappers their wrapped value. Struct, ListValue and Any take
  JSON text; a Value takes JSON text or, when the text isn't JSON, a plain
  string (``?val=abc`` is ``"abc"``, ``?val=123`` is ``123``).

The result is keyed by proto field names and holds only values that
``json_format.ParseDict`` accepts. Errors are :class:`InvalidArgument` naming
the parameter::

    unknown query parameter "foo"
    invalid value "abc" for query parameter "f_int32": not an integer
    query parameter "nested" names a message field (bridgetest.v1.Nested); set its fields, ...
    query parameter "f_int32" is given more than once, but field "f_int32" is not repeated
    field "id" is bound by the path and cannot be set by a query parameter
    field "item" is taken from the request body and cannot be set by a query parameter

:func:`text_to_value` converts one text the same way for REST path variables
(``where`` names the variable in errors).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Iterable
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

# The codec package's shared descriptor tables.
from grpc_bridge.codec.json_codec import parse_json
from grpc_bridge.codec.validate import FLOAT32_LIMIT
from grpc_bridge.codec.validate_plans import INT_RANGES, TYPE_NAMES, WRAPPERS_FILE
from grpc_bridge.errors import InvalidArgument

__all__ = ["query_to_value", "text_to_value"]

_FD = FieldDescriptor

# One segment of a parameter name: a field name, optionally with a [map key].
_SEGMENT = re.compile(r"([^.\[\]]+)(?:\[([^\]]*)\])?")
_INTEGER = re.compile(r"[-+]?[0-9]{1,20}")
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_BASE64_BODY = re.compile(r"[A-Za-z0-9+/_-]*")
_URLSAFE_TO_STD = str.maketrans("-_ ", "+/+")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_SNAKE_SEGMENT = re.compile(r"_([a-z])")

_JSON_TEXT_WKTS = {
    "google.protobuf.Struct": dict,
    "google.protobuf.ListValue": list,
    "google.protobuf.Any": dict,
}
_WKTS = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.Value",
        *_JSON_TEXT_WKTS,
    }
)


def query_to_value(
    descriptor: Descriptor,
    items: Iterable[tuple[str, str]],
    *,
    ignore_unknown: bool = False,
    bound: Collection[str] = (),
    body: str | None = None,
    max_depth: int = 64,
) -> dict[str, Any]:
    """URL query parameters -> a dict keyed by proto field names, ready for ``decode_value``.

    ``bound`` holds the dotted proto-name paths of fields bound by the URL path;
    ``body`` the top-level field a REST binding fills from the request body;
    ``max_depth`` bounds the JSON text of Struct / ListValue / Any / Value parameters.
    """
    result: dict[str, Any] = {}
    bound_paths = frozenset(bound)
    for param, raw in items:
        _assign(descriptor, result, param, raw, ignore_unknown, bound_paths, body, max_depth)
    return result


def text_to_value(field: FieldDescriptor, raw: str, *, where: str, max_depth: int = 64) -> Any:
    """One text for a singular non-message (or well-known-type) field, as a query value is read.

    ``where`` names the text's origin in errors, e.g. ``path variable "id"``.
    """
    return _convert(field, raw, where, max_depth)


def _assign(
    descriptor: Descriptor,
    result: dict[str, Any],
    param: str,
    raw: str,
    ignore_unknown: bool,
    bound: frozenset[str],
    body: str | None,
    max_depth: int,
) -> None:
    # Resolve the whole name before touching ``result``: an ignored unknown
    # "nested.foo" must not leave an empty "nested" behind.
    route = _route(descriptor, param, bound, body)
    if route is None:
        if ignore_unknown:
            return
        raise InvalidArgument(f'unknown query parameter "{param}"')
    steps, leaf, dotted, where = route
    value = _convert(leaf, raw, where, max_depth)
    target = result
    for name, key in steps[:-1]:
        target = target.setdefault(name, {})
        if key is not None:
            target = target.setdefault(key, {})
    name, key = steps[-1]
    if key is not None:
        target = target.setdefault(name, {})
        name, dotted = key, f"{dotted}[{key}]"
    elif leaf.is_repeated:
        target.setdefault(name, []).append(value)
        return
    if name in target:
        raise InvalidArgument(
            f'query parameter "{param}" is given more than once, '
            f'but field "{dotted}" is not repeated'
        )
    target[name] = value


#: (proto name, map key) per segment, the field set, its dotted path, the parameter as
#: errors name it.
_Route = tuple[tuple[tuple[str, str | None], ...], FieldDescriptor, str, str]
#: Routes of parameter names, by (message, name, bound paths, body field): a client
#: sends the same few names request after request, and a route is a pure function of
#: these (a name that is refused raises, and is not kept). Bounded; emptied when full.
_ROUTES: dict[tuple[Descriptor, str, frozenset[str], str | None], _Route | None] = {}
_MAX_ROUTES = 1024
_MAX_KEPT_NAME = 128


def _route(
    descriptor: Descriptor, param: str, bound: frozenset[str], body: str | None
) -> _Route | None:
    key = (descriptor, param, bound, body)
    routes = _ROUTES
    if key in routes:
        return routes[key]
    route = _resolve(descriptor, param, bound, body)
    if len(param) <= _MAX_KEPT_NAME:
        if len(routes) >= _MAX_ROUTES:
            routes.clear()
        routes[key] = route
    return route


def _resolve(
    descriptor: Descriptor, param: str, bound: frozenset[str], body: str | None
) -> _Route | None:
    """(proto name, map key) per segment, the field whose value is set, its dotted proto path.

    None when the name is malformed or names no field.
    """
    segments = _split(param)
    if segments is None:
        return None
    message = descriptor
    steps: list[tuple[str, str | None]] = []
    proto_path: list[str] = []
    for index, (name, map_key) in enumerate(segments):
        field = _find_field(message, name)
        if field is None:
            return None
        proto_path.append(field.name)
        dotted = ".".join(proto_path)
        if dotted in bound:
            raise InvalidArgument(
                f'field "{dotted}" is bound by the path and cannot be set by a query parameter'
            )
        if index == 0 and field.name == body:
            raise InvalidArgument(
                f'field "{dotted}" is taken from the request body '
                "and cannot be set by a query parameter"
            )
        key = None
        holder = field  # the field whose type the value (or next segment) has
        if _is_map(field):
            if map_key is None:
                raise InvalidArgument(
                    f'query parameter "{param}": map field "{dotted}" takes a key, '
                    f'e.g. "{name}[key]=value"'
                )
            assert field.message_type is not None
            key = _map_key(field.message_type.fields_by_name["key"], map_key, _query(param))
            holder = field.message_type.fields_by_name["value"]
        elif map_key is not None:
            raise InvalidArgument(f'query parameter "{param}": field "{dotted}" is not a map')
        elif field.is_repeated and _is_plain_message(field):
            raise InvalidArgument(
                f'query parameter "{param}": repeated message field "{dotted}" '
                "cannot be set by query parameters"
            )
        steps.append((field.name, key))
        is_last = index == len(segments) - 1
        if not _is_plain_message(holder):
            if not is_last:
                raise InvalidArgument(
                    f'query parameter "{param}": field "{dotted}" has no subfields'
                )
            return tuple(steps), holder, dotted, _query(param)
        if is_last:
            raise _names_message(param, holder)
        assert holder.message_type is not None
        message = holder.message_type
    return None  # unreachable: the last segment returned or raised


def _split(param: str) -> list[tuple[str, str | None]] | None:
    segments: list[tuple[str, str | None]] = []
    pos = 0
    while True:
        match = _SEGMENT.match(param, pos)
        if match is None:
            return None
        segments.append((match.group(1), match.group(2)))
        pos = match.end()
        if pos == len(param):
            return segments
        if param[pos] != ".":
            return None
        pos += 1


def _find_field(message: Descriptor, name: str) -> FieldDescriptor | None:
    field = message.fields_by_name.get(name)
    if field is not None:
        return field
    for candidate in message.fields:
        if name in (candidate.json_name, candidate.camelcase_name):
            return candidate
    return None


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return field.type == _FD.TYPE_MESSAGE and entry is not None and entry.GetOptions().map_entry


def _is_plain_message(field: FieldDescriptor) -> bool:
    """A message field that is not a well-known type with a JSON string/text form."""
    entry = field.message_type
    if field.type not in (_FD.TYPE_MESSAGE, _FD.TYPE_GROUP) or entry is None:
        return False
    return entry.full_name not in _WKTS and entry.file.name != WRAPPERS_FILE


def _names_message(param: str, field: FieldDescriptor) -> InvalidArgument:
    message = field.message_type
    assert message is not None
    hint = f'; set its fields, e.g. "{param}.{message.fields[0].name}"' if message.fields else ""
    return InvalidArgument(
        f'query parameter "{param}" names a message field ({message.full_name}){hint}'
    )


def _query(param: str) -> str:
    return f'query parameter "{param}"'


def _bad_value(raw: str, where: str, problem: str) -> InvalidArgument:
    """``where`` is the value's origin, e.g. ``query parameter "f_int32"``."""
    shown = raw if len(raw) <= 64 else raw[:64] + "..."
    return InvalidArgument(
        f"invalid value {json.dumps(shown, ensure_ascii=False)} for {where}: {problem}"
    )


def _map_key(field: FieldDescriptor, raw: str, param: str) -> str:
    """A map key in its JSON form: object keys are strings, whatever the key type."""
    if field.type == _FD.TYPE_BOOL:
        return "true" if _parse_bool(raw, param) else "false"
    if field.type in INT_RANGES:
        return str(_parse_int(field, raw, param))
    return raw


def _convert(field: FieldDescriptor, raw: str, param: str, max_depth: int) -> Any:
    if field.type in (_FD.TYPE_MESSAGE, _FD.TYPE_GROUP):
        assert field.message_type is not None
        return _convert_wkt(field.message_type, raw, param, max_depth)
    type_ = field.type
    if type_ in INT_RANGES:
        return _parse_int(field, raw, param)
    if type_ in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return _parse_float(raw, param, is32=type_ == _FD.TYPE_FLOAT)
    if type_ == _FD.TYPE_BOOL:
        return _parse_bool(raw, param)
    if type_ == _FD.TYPE_BYTES:
        return _parse_base64(raw, param)
    if type_ == _FD.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None
        if raw in enum.values_by_name:
            return raw
        if _INTEGER.fullmatch(raw) and (value := enum.values_by_number.get(int(raw))):
            return value.name
        raise _bad_value(raw, param, f"not a value of {enum.full_name}")
    return raw


def _parse_int(field: FieldDescriptor, raw: str, param: str) -> int:
    if _INTEGER.fullmatch(raw) is None:
        raise _bad_value(raw, param, "not an integer")
    number = int(raw)
    lo, hi = INT_RANGES[field.type]
    if not lo <= number <= hi:
        raise _bad_value(raw, param, f"out of range for {TYPE_NAMES[field.type]}")
    return number


def _parse_float(raw: str, param: str, *, is32: bool) -> float | str:
    special = raw.lower()
    if special == "nan":
        return "NaN"
    if special.lstrip("+-") in ("inf", "infinity") and len(special) - len(special.lstrip("+-")) < 2:
        return "-Infinity" if special.startswith("-") else "Infinity"
    if _DECIMAL.fullmatch(raw) is None:
        raise _bad_value(raw, param, "not a number")
    value = float(raw)
    if value in (float("inf"), float("-inf")) or (is32 and abs(value) >= FLOAT32_LIMIT):
        raise _bad_value(raw, param, f"out of range for {'float' if is32 else 'double'}")
    return value


def _parse_bool(raw: str, param: str) -> bool:
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise _bad_value(raw, param, "not a boolean (true or false)")


def _parse_base64(raw: str, param: str) -> str:
    """Any of the four base64 flavours -> standard padded base64, as json_format reads it."""
    body = raw.rstrip("=")
    padding = len(raw) - len(body)
    body = body.translate(_URLSAFE_TO_STD)
    if (
        padding > 2
        or (padding and len(raw) % 4)
        or len(body) % 4 == 1
        or _BASE64_BODY.fullmatch(body) is None
    ):
        raise _bad_value(raw, param, "not valid base64")
    try:
        data = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error as exc:
        raise _bad_value(raw, param, "not valid base64") from exc
    return base64.b64encode(data).decode("ascii")


def _convert_wkt(message: Descriptor, raw: str, param: str, max_depth: int) -> Any:
    name = message.full_name
    if message.file.name == WRAPPERS_FILE:
        return _convert(message.fields_by_name["value"], raw, param, max_depth)
    if name == "google.protobuf.Timestamp":
        return _check_json_string(
            timestamp_pb2.Timestamp(), raw, param, "not an RFC 3339 timestamp"
        )
    if name == "google.protobuf.Duration":
        return _check_json_string(duration_pb2.Duration(), raw, param, 'not a duration like "1.5s"')
    if name == "google.protobuf.FieldMask":
        paths = ",".join(
            _SNAKE_SEGMENT.sub(lambda m: m.group(1).upper(), p) for p in raw.split(",")
        )
        return _check_json_string(field_mask_pb2.FieldMask(), paths, param, "not a field mask")
    try:
        value = parse_json(raw.encode(), max_depth=max_depth)
    except InvalidArgument as exc:
        if name == "google.protobuf.Value":
            return raw  # not JSON: the plain string
        raise _bad_value(raw, param, f"not JSON for {name} ({exc.message})") from exc
    expected = _JSON_TEXT_WKTS.get(name)
    if expected is not None and not isinstance(value, expected):
        kind = "an object" if expected is dict else "an array"
        raise _bad_value(raw, param, f"{name} takes {kind} in JSON")
    return value


def _check_json_string(wkt: Any, text: str, param: str, problem: str) -> str:
    try:
        wkt.FromJsonString(text)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _bad_value(text, param, f"{problem} ({exc})") from exc
    return text
