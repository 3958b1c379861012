"""What the compiled decoder (:mod:`.fast_decode`) is made of: builders of keyword arguments.

A regular message is built by one call of its class (upb's constructor), with
nested messages as dicts, repeated fields as lists and maps as dicts: about a
third of the cost of setting the same fields one by one. The constructor does
what the setters do (a present-but-empty nested dict is SetInParent, a proto3
``optional`` set to its default is present, out-of-range or mistyped values
raise), so the message is the one json_format builds. The well-known types
whose JSON form is not an object of their fields (Struct, Value, Duration ...)
are filled as messages by their fillers and passed as objects.

Every builder raises :class:`Fallback` for an input it does not handle, and
the reference path decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from grpc_bridge.codec.fast_scalars import (
    Convert,
    Fallback,
    Filler,
    from_json_string,
    timestamp_parts,
)

#: (JSON value, depth of the object it is the value of) → what to pass for it.
Build = Callable[[Any, int], Any]

# How an entry turns a field's JSON value into its keyword argument.
STRING = 0  # a string field: the value itself
SCALAR = 1  # convert(value)
MESSAGE = 2  # build(value, depth + 1): a singular message field
CONTAINER = 3  # build(value, depth): a repeated or map field

#: The field's keyword; how to convert (see above) and with what; for a
#: field's proto-name spelling, its JSON name (both spellings in one object is
#: an error the reference path reports); whether ``null`` must go to the
#: reference path (json_format sets a Value or NullValue field to null instead
#: of leaving it unset); and for a oneof member, the keywords of the others.
Entry = tuple[str, int, Any, str | None, bool, frozenset[str] | None]


def repeated_scalars(convert: Convert) -> Build:
    def build(v: Any, depth: int) -> Any:
        if type(v) is not list:
            raise Fallback
        return [convert(item) for item in v]

    return build


def repeated_messages(element: Build) -> Build:
    def build(v: Any, depth: int) -> Any:
        if type(v) is not list:
            raise Fallback
        depth += 2  # the array, then each element
        return [element(item, depth) for item in v]

    return build


def map_scalars(key: Convert, convert: Convert) -> Build:
    def build(v: Any, depth: int) -> Any:
        if type(v) is not dict:
            raise Fallback
        return {key(k): convert(item) for k, item in v.items()}

    return build


def map_messages(key: Convert, element: Build) -> Build:
    def build(v: Any, depth: int) -> Any:
        if type(v) is not dict:
            raise Fallback
        depth += 2
        entries = {key(k): element(item, depth) for k, item in v.items()}
        if len(entries) != len(v):
            raise Fallback  # two spellings of one key: json_format merges both objects
        return entries

    return build


def wrapper_kwargs(convert: Convert) -> Build:
    def build(v: Any, depth: int) -> Any:
        return {"value": convert(v)}

    return build


def filled(fill: Filler, message_class: type[Message]) -> Build:
    """A message filled by ``fill``, passed as an object (the constructor copies it)."""

    def build(v: Any, depth: int) -> Any:
        message = message_class()
        fill(v, message, depth)
        return message

    return build


def timestamp_kwargs(message_class: type[Message]) -> Build:
    def build(v: Any, depth: int) -> Any:
        parts = timestamp_parts(v)
        if parts is None:
            message = message_class()
            from_json_string(v, message, depth)
            return message
        return {"seconds": parts[0], "nanos": parts[1]}

    return build


def empty_any_kwargs(v: Any, depth: int) -> Any:
    if type(v) is not dict or v:
        raise Fallback  # a packed message: json_format resolves and packs it
    return {}


def table_builder(table: dict[str, Entry], *, ignore_unknown: bool, max_depth: int) -> Build:
    """The table-driven builder of a regular message type: handles every input the
    generated one (fast_decode.py) does, and falls back on the rest."""

    def build(obj: Any, depth: int) -> Any:
        if type(obj) is not dict or depth > max_depth:
            raise Fallback
        kwargs: dict[str, Any] = {}
        for key, item in obj.items():
            entry = table.get(key)
            if entry is None:
                # "[name]" is extension syntax, which json_format looks at even when
                # ignoring unknown fields.
                if ignore_unknown and key[:1] != "[":
                    continue
                raise Fallback
            name, kind, convert, other, null_is_a_value, siblings = entry
            if other is not None and other in obj:
                raise Fallback
            if item is None:
                if null_is_a_value:
                    raise Fallback
                continue
            if siblings is not None and not siblings.isdisjoint(kwargs):
                raise Fallback  # a second member: the reference path names both
            if kind == STRING:
                if type(item) is not str:
                    raise Fallback
                kwargs[name] = item
            elif kind == SCALAR:
                kwargs[name] = convert(item)
            elif kind == MESSAGE:
                kwargs[name] = convert(item, depth + 1)
            else:
                kwargs[name] = convert(item, depth)
        return kwargs

    return build


class StructFillers:
    """Struct, Value and ListValue, filled as json_format's _Convert*Message do."""

    __slots__ = ("_max_depth",)

    def __init__(self, max_depth: int) -> None:
        self._max_depth = max_depth

    def value(self, v: Any, msg: Any, depth: int) -> None:
        t = type(v)
        if t is str:
            msg.string_value = v
        elif t is dict:
            self.struct(v, msg.struct_value, depth)
        elif t is list:
            self.list_value(v, msg.list_value, depth)
        elif v is None:
            msg.null_value = 0
        elif t is bool:
            msg.bool_value = v
        elif t is int or t is float:
            msg.number_value = v
        else:
            raise Fallback

    def struct(self, v: Any, msg: Any, depth: int) -> None:
        if type(v) is not dict or depth > self._max_depth:
            raise Fallback
        msg.Clear()
        fields = msg.fields
        value = self.value
        depth += 1
        for key, item in v.items():
            value(item, fields[key], depth)

    def list_value(self, v: Any, msg: Any, depth: int) -> None:
        if type(v) is not list or depth > self._max_depth:
            raise Fallback
        msg.ClearField("values")
        values = msg.values
        value = self.value
        depth += 1
        for item in v:
            value(item, values.add(), depth)
