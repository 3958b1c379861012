"""JSON value → protobuf message by setting fields directly, compiled once per message type.

This is a fast path in front of the reference path (validate.py's checks, then
``json_format.ParseDict``), not a replacement: a converter either builds the
message the reference path would build, or gives up (:class:`Fallback`) and the
reference path runs from scratch and decides, with its exact error messages.
So a converter only has to be *right when it succeeds*; anything unusual — an
error, a numeric string for a float, an ``Any`` with content, a ``null`` for a
``Value`` field, a closed enum's unknown number, a custom JSON enum name —
simply falls back.

Each converter mirrors what ``json_format`` does to the message for the inputs
it accepts (``SetInParent`` before filling a message field, ``Clear`` before
filling a ``Struct``, the same base64 call), so the two paths agree byte for
byte; tests/test_codec_properties.py checks that against generated messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from grpc_bridge.codec.fast_scalars import (
    Convert,
    Fallback,
    Filler,
    empty_any,
    from_json_string,
    map_key_converter,
    scalar_converter,
    timestamp,
    wrapper,
)
from grpc_bridge.codec.validate import WRAPPERS_FILE

__all__ = ["Decoders", "Fallback", "Filler", "decode_with"]

_FD = FieldDescriptor
# protobuf's stubs type descriptors as unions of the pure-Python and upb classes.
_Descriptor = Any
#: (message, JSON value of one field, depth of the enclosing object) → None.
Handler = Callable[[Any, Any, int], None]
_STRING_WKTS = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)


# --- handlers: one JSON field into one message field ---------------------------------------------


def _set_scalar(field: FieldDescriptor) -> Handler:
    name = field.name
    # The commonest kinds skip the converter call.
    if field.type == _FD.TYPE_STRING:

        def set_string(msg: Any, v: Any, depth: int) -> None:
            if type(v) is not str:
                raise Fallback
            setattr(msg, name, v)

        return set_string
    if field.type == _FD.TYPE_BOOL:

        def set_bool(msg: Any, v: Any, depth: int) -> None:
            if type(v) is not bool:
                raise Fallback
            setattr(msg, name, v)

        return set_bool
    convert = scalar_converter(field)

    def handle(msg: Any, v: Any, depth: int) -> None:
        setattr(msg, name, convert(v))

    return handle


def _set_message(name: str, fill: Filler) -> Handler:
    def handle(msg: Any, v: Any, depth: int) -> None:
        sub = getattr(msg, name)
        sub.SetInParent()
        fill(v, sub, depth + 1)

    return handle


def _extend_scalars(name: str, convert: Convert) -> Handler:
    def handle(msg: Any, v: Any, depth: int) -> None:
        if type(v) is not list:
            raise Fallback
        getattr(msg, name).extend([convert(item) for item in v])

    return handle


def _add_messages(name: str, fill: Filler) -> Handler:
    def handle(msg: Any, v: Any, depth: int) -> None:
        if type(v) is not list:
            raise Fallback
        container = getattr(msg, name)
        depth += 2  # the array, then each element
        for item in v:
            fill(item, container.add(), depth)

    return handle


def _map_scalars(name: str, key: Convert, convert: Convert) -> Handler:
    def handle(msg: Any, v: Any, depth: int) -> None:
        if type(v) is not dict:
            raise Fallback
        entries = getattr(msg, name)
        for k, item in v.items():
            entries[key(k)] = convert(item)

    return handle


def _map_messages(name: str, key: Convert, fill: Filler) -> Handler:
    def handle(msg: Any, v: Any, depth: int) -> None:
        if type(v) is not dict:
            raise Fallback
        entries = getattr(msg, name)
        depth += 2
        for k, item in v.items():
            fill(item, entries[key(k)], depth)

    return handle


def _oneof_member(oneof: str, handler: Handler) -> Handler:
    def handle(msg: Any, v: Any, depth: int) -> None:
        if msg.WhichOneof(oneof) is not None:
            raise Fallback  # a second member: the reference path names both
        handler(msg, v, depth)

    return handle


# --- fillers: one JSON value into one message ----------------------------------------------------

#: A field's handler; for a field's proto-name spelling, its JSON name (both
#: spellings in one object is an error the reference path reports); and whether
#: ``null`` must go to the reference path (json_format sets a Value or NullValue
#: field to null instead of leaving it unset).
_Entry = tuple[Handler, str | None, bool]


class Decoders:
    """Fillers for every message type reachable from a root, built once and shared."""

    def __init__(self, *, ignore_unknown: bool, max_depth: int) -> None:
        self._ignore_unknown = ignore_unknown
        self._max_depth = max_depth
        self._fillers: dict[str, Filler] = {}
        self._pending: list[tuple[dict[str, _Entry], _Descriptor]] = []

    def filler(self, descriptor: _Descriptor) -> Filler:
        fill = self._filler(descriptor)
        # Iterative, so deep or recursive message graphs cost no Python stack here.
        while self._pending:
            self._fill_table(*self._pending.pop())
        return fill

    def _filler(self, descriptor: _Descriptor) -> Filler:
        full_name: str = descriptor.full_name
        fill = self._fillers.get(full_name)
        if fill is None:
            fill = self._make(descriptor)
            self._fillers[full_name] = fill
        return fill

    def _make(self, descriptor: _Descriptor) -> Filler:
        full_name: str = descriptor.full_name
        if descriptor.file.name == WRAPPERS_FILE:
            return wrapper(scalar_converter(descriptor.fields_by_name["value"]))
        if full_name == "google.protobuf.Timestamp":
            return timestamp
        if full_name in _STRING_WKTS:
            return from_json_string
        if full_name == "google.protobuf.Value":
            return self._value
        if full_name == "google.protobuf.Struct":
            return self._struct
        if full_name == "google.protobuf.ListValue":
            return self._list_value
        if full_name == "google.protobuf.Any":
            return empty_any
        table: dict[str, _Entry] = {}
        self._pending.append((table, descriptor))
        return self._regular(table)

    def _regular(self, table: dict[str, _Entry]) -> Filler:
        ignore_unknown = self._ignore_unknown
        max_depth = self._max_depth

        def fill(obj: Any, msg: Any, depth: int) -> None:
            if type(obj) is not dict or depth > max_depth:
                raise Fallback
            for key, item in obj.items():
                entry = table.get(key)
                if entry is None:
                    # "[name]" is extension syntax, which json_format looks at even when
                    # ignoring unknown fields.
                    if ignore_unknown and key[:1] != "[":
                        continue
                    raise Fallback
                handler, other, null_is_a_value = entry
                if other is not None and other in obj:
                    raise Fallback
                if item is not None:
                    handler(msg, item, depth)
                elif null_is_a_value:
                    raise Fallback

        return fill

    def _fill_table(self, table: dict[str, _Entry], descriptor: _Descriptor) -> None:
        for field in descriptor.fields:
            handler = self._handler(field)
            message = field.message_type if field.cpp_type == _FD.CPPTYPE_MESSAGE else None
            enum = field.enum_type if field.type == _FD.TYPE_ENUM else None
            null_is_a_value = not field.is_repeated and (
                (message is not None and message.full_name == "google.protobuf.Value")
                or (enum is not None and enum.full_name == "google.protobuf.NullValue")
            )
            table[field.json_name] = (handler, None, null_is_a_value)
            if field.name != field.json_name:
                table[field.name] = (handler, field.json_name, null_is_a_value)

    def _handler(self, field: FieldDescriptor) -> Handler:
        name = field.name
        message = field.message_type if field.cpp_type == _FD.CPPTYPE_MESSAGE else None
        handler: Handler
        if message is not None and message.GetOptions().map_entry:
            key = map_key_converter(message.fields_by_name["key"])
            value_field = message.fields_by_name["value"]
            if value_field.cpp_type == _FD.CPPTYPE_MESSAGE:
                handler = _map_messages(name, key, self._filler(value_field.message_type))
            else:
                handler = _map_scalars(name, key, scalar_converter(value_field))
        elif message is not None:
            fill = self._filler(message)
            handler = _add_messages(name, fill) if field.is_repeated else _set_message(name, fill)
        elif field.is_repeated:
            handler = _extend_scalars(name, scalar_converter(field))
        else:
            handler = _set_scalar(field)
        oneof = field.containing_oneof
        if oneof is not None and len(oneof.fields) > 1:
            handler = _oneof_member(oneof.name, handler)
        return handler

    # Struct, Value and ListValue, as json_format's _Convert*Message build them.

    def _value(self, v: Any, msg: Any, depth: int) -> None:
        t = type(v)
        if t is str:
            msg.string_value = v
        elif t is dict:
            self._struct(v, msg.struct_value, depth)
        elif t is list:
            self._list_value(v, msg.list_value, depth)
        elif v is None:
            msg.null_value = 0
        elif t is bool:
            msg.bool_value = v
        elif t is int or t is float:
            msg.number_value = v
        else:
            raise Fallback

    def _struct(self, v: Any, msg: Any, depth: int) -> None:
        if type(v) is not dict or depth > self._max_depth:
            raise Fallback
        msg.Clear()
        fields = msg.fields
        value = self._value
        depth += 1
        for key, item in v.items():
            value(item, fields[key], depth)

    def _list_value(self, v: Any, msg: Any, depth: int) -> None:
        if type(v) is not list or depth > self._max_depth:
            raise Fallback
        msg.ClearField("values")
        values = msg.values
        value = self._value
        depth += 1
        for item in v:
            value(item, values.add(), depth)


def decode_with(fill: Filler, message_class: type[Message], value: object) -> Message | None:
    """``value`` as a new message, or None when the reference path must decide."""
    message = message_class()
    try:
        fill(value, message, 1)
    except (Fallback, ValueError, TypeError, OverflowError, AttributeError, RecursionError):
        # ValueError includes the setters' UnicodeEncodeError for lone surrogates.
        return None
    return message
