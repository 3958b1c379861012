"""JSON value → protobuf message by one constructor call, compiled once per message type.

This is a fast path in front of the reference path (validate.py's checks, then
``json_format.ParseDict``), not a replacement: a converter either builds the
message the reference path would build, or gives up (:class:`Fallback`) and the
reference path runs from scratch and decides, with its exact error messages.
So a converter only has to be *right when it succeeds*; anything unusual — an
error, a numeric string for a float, an ``Any`` with content, a ``null`` for a
``Value`` field, a closed enum's unknown number, a custom JSON enum name —
simply falls back.

Each converter mirrors what ``json_format`` does to the message for the inputs
it accepts (a present nested message even when empty, ``Clear`` before filling
a ``Struct``, the same base64 call), so the two paths agree byte for byte;
tests/test_codec_properties.py checks that against generated messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from grpc_bridge.codec.fast_scalars import (
    Convert,
    Fallback,
    Filler,
    empty_any,
    from_json_string,
    map_key_converter,
    scalar_converter,
    timestamp,
    timestamp_parts,
    wrapper,
)
from grpc_bridge.codec.validate_plans import WRAPPERS_FILE

__all__ = ["Decoders", "Fallback", "Filler", "decode_with"]

_FD = FieldDescriptor
# protobuf's stubs type descriptors as unions of the pure-Python and upb classes.
_Descriptor = Any
_STRING_WKTS = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)


# --- builders: one JSON value into the keyword arguments of a message class ---------------------
#
# A regular message is built by one call of its class (upb's constructor), with
# nested messages as dicts, repeated fields as lists and maps as dicts: about a
# third of the cost of setting the same fields one by one. The constructor does
# what the setters do (a present-but-empty nested dict is SetInParent, a proto3
# ``optional`` set to its default is present, out-of-range or mistyped values
# raise), so the message is the one json_format builds. The well-known types
# whose JSON form is not an object of their fields (Struct, Value, Duration ...)
# are filled as messages by their fillers and passed as objects.

#: (JSON value, depth of the object it is the value of) → what to pass for it.
Build = Callable[[Any, int], Any]

# How an entry turns a field's JSON value into its keyword argument.
_STRING = 0  # a string field: the value itself
_SCALAR = 1  # convert(value)
_MESSAGE = 2  # build(value, depth + 1): a singular message field
_CONTAINER = 3  # build(value, depth): a repeated or map field

#: The field's keyword; how to convert (see above) and with what; for a
#: field's proto-name spelling, its JSON name (both spellings in one object is
#: an error the reference path reports); whether ``null`` must go to the
#: reference path (json_format sets a Value or NullValue field to null instead
#: of leaving it unset); and for a oneof member, the keywords of the others.
_Entry = tuple[str, int, Any, str | None, bool, frozenset[str] | None]


def _repeated_scalars(convert: Convert) -> Build:
    def build(v: Any, depth: int) -> Any:
        if type(v) is not list:
            raise Fallback
        return [convert(item) for item in v]

    return build


def _repeated_messages(element: Build) -> Build:
    def build(v: Any, depth: int) -> Any:
        if type(v) is not list:
            raise Fallback
        depth += 2  # the array, then each element
        return [element(item, depth) for item in v]

    return build


def _map_scalars(key: Convert, convert: Convert) -> Build:
    def build(v: Any, depth: int) -> Any:
        if type(v) is not dict:
            raise Fallback
        return {key(k): convert(item) for k, item in v.items()}

    return build


def _map_messages(key: Convert, element: Build) -> Build:
    def build(v: Any, depth: int) -> Any:
        if type(v) is not dict:
            raise Fallback
        depth += 2
        entries = {key(k): element(item, depth) for k, item in v.items()}
        if len(entries) != len(v):
            raise Fallback  # two spellings of one key: json_format merges both objects
        return entries

    return build


def _wrapper(convert: Convert) -> Build:
    def build(v: Any, depth: int) -> Any:
        return {"value": convert(v)}

    return build


def _filled(fill: Filler, message_class: type[Message]) -> Build:
    """A message filled by ``fill``, passed as an object (the constructor copies it)."""

    def build(v: Any, depth: int) -> Any:
        message = message_class()
        fill(v, message, depth)
        return message

    return build


def _timestamp(message_class: type[Message]) -> Build:
    def build(v: Any, depth: int) -> Any:
        parts = timestamp_parts(v)
        if parts is None:
            message = message_class()
            from_json_string(v, message, depth)
            return message
        return {"seconds": parts[0], "nanos": parts[1]}

    return build


def _empty_any(v: Any, depth: int) -> Any:
    if type(v) is not dict or v:
        raise Fallback  # a packed message: json_format resolves and packs it
    return {}


class _Root:
    """The filler of a regular message type, for :func:`decode_with`: built by its keywords."""

    __slots__ = ("build",)

    def __init__(self, build: Build) -> None:
        self.build = build

    def __call__(self, obj: Any, msg: Any, depth: int) -> None:
        msg.MergeFrom(type(msg)(**self.build(obj, depth)))


class Decoders:
    """Builders for every message type reachable from a root, built once and shared."""

    def __init__(self, *, ignore_unknown: bool, max_depth: int) -> None:
        self._ignore_unknown = ignore_unknown
        self._max_depth = max_depth
        self._builders: dict[str, Build] = {}
        self._pending: list[tuple[dict[str, _Entry], _Descriptor]] = []
        #: Regular message types: index, descriptor and table-driven builder.
        self._regulars: dict[str, tuple[int, _Descriptor, Build]] = {}
        #: The generated builders ("f<index>") and everything their code names.
        self._namespace: dict[str, Any] = {"Fallback": Fallback}

    def filler(self, descriptor: _Descriptor) -> Filler:
        wkt = self._wkt_filler(descriptor)
        if wkt is not None:
            return wkt
        self._builder(descriptor)
        # Iterative, so deep or recursive message graphs cost no Python stack here.
        while self._pending:
            self._fill_table(*self._pending.pop())
        for index, regular, build in list(self._regulars.values()):
            if f"f{index}" not in self._namespace:
                self._generate(index, regular, build)
        built: Build = self._namespace[f"f{self._regulars[descriptor.full_name][0]}"]
        return _Root(built)

    def _generate(self, index: int, descriptor: _Descriptor, generic: Build) -> None:
        """Python source of one message type's builder for the everyday input, ``exec``'d.

        It handles an object whose keys are all JSON names of the type's fields
        and hands anything else (proto names, unknown keys, a oneof) to the
        table-driven builder, which handles everything this handles the same way.
        """
        ns = self._namespace
        ns[f"g{index}"] = generic
        fields = list(descriptor.fields)
        if any(
            f.containing_oneof is not None and len(f.containing_oneof.fields) > 1 for f in fields
        ):
            ns[f"f{index}"] = generic
            return
        ns[f"k{index}"] = frozenset(f.json_name for f in fields)
        lines = [
            f"def f{index}(obj, depth):",
            f"    if type(obj) is not dict or depth > {self._max_depth}"
            f" or not obj.keys() <= k{index}:",
            f"        return g{index}(obj, depth)",
            "    kw = {}",
        ]
        for number, field in enumerate(fields):
            body = self._field_source(field, f"c{index}_{number}")
            lines.append(f"    v = obj.get({field.json_name!r})")
            lines.append("    if v is not None:")
            lines.extend(f"        {line}" for line in body)
            lines.append(f"        kw[{field.name!r}] = v")
            if self._null_is_a_value(field):
                lines.append(f"    elif {field.json_name!r} in obj:")
                lines.append("        raise Fallback")
        lines.append("    return kw")
        exec("\n".join(lines), ns)  # source built from the descriptor above

    def _element(self, descriptor: _Descriptor, name: str) -> str:
        """The name of the builder the generated code calls for one message of this type."""
        regular = self._regulars.get(descriptor.full_name)
        if regular is not None:
            return f"f{regular[0]}"
        self._namespace[name] = self._builder(descriptor)
        return name

    def _field_source(self, field: FieldDescriptor, name: str) -> list[str]:
        """Lines turning ``v`` (not None) into the field's keyword argument, in ``v``."""
        ns = self._namespace
        message = field.message_type if field.cpp_type == _FD.CPPTYPE_MESSAGE else None
        if message is not None and message.GetOptions().map_entry:
            key_field = message.fields_by_name["key"]
            value_field = message.fields_by_name["value"]
            lines = ["if type(v) is not dict:", "    raise Fallback"]
            if value_field.cpp_type == _FD.CPPTYPE_MESSAGE:
                element = self._element(value_field.message_type, name)
                ns[f"{name}k"] = map_key_converter(key_field)
                return [
                    *lines,
                    "d = depth + 2",
                    f"e = {{{name}k(k): {element}(x, d) for k, x in v.items()}}",
                    "if len(e) != len(v):",
                    "    raise Fallback",
                    "v = e",
                ]
            if key_field.type == _FD.TYPE_STRING and value_field.type == _FD.TYPE_STRING:
                return [
                    *lines,
                    "for x in v.values():",
                    "    if type(x) is not str:",
                    "        raise Fallback",
                ]
            ns[f"{name}k"] = map_key_converter(key_field)
            ns[name] = scalar_converter(value_field)
            return [*lines, f"v = {{{name}k(k): {name}(x) for k, x in v.items()}}"]
        if message is not None:
            element = self._element(message, name)
            if field.is_repeated:
                return [
                    "if type(v) is not list:",
                    "    raise Fallback",
                    "d = depth + 2",
                    f"v = [{element}(x, d) for x in v]",
                ]
            return [f"v = {element}(v, depth + 1)"]
        if field.type in (_FD.TYPE_STRING, _FD.TYPE_BOOL):
            kind = "str" if field.type == _FD.TYPE_STRING else "bool"
            if field.is_repeated:
                return [
                    "if type(v) is not list:",
                    "    raise Fallback",
                    "for x in v:",
                    f"    if type(x) is not {kind}:",
                    "        raise Fallback",
                ]
            return [f"if type(v) is not {kind}:", "    raise Fallback"]
        ns[name] = scalar_converter(field)
        if field.is_repeated:
            return ["if type(v) is not list:", "    raise Fallback", f"v = [{name}(x) for x in v]"]
        return [f"v = {name}(v)"]

    @staticmethod
    def _null_is_a_value(field: FieldDescriptor) -> bool:
        message = field.message_type if field.cpp_type == _FD.CPPTYPE_MESSAGE else None
        enum = field.enum_type if field.type == _FD.TYPE_ENUM else None
        return not field.is_repeated and (
            (message is not None and message.full_name == "google.protobuf.Value")
            or (enum is not None and enum.full_name == "google.protobuf.NullValue")
        )

    def _builder(self, descriptor: _Descriptor) -> Build:
        full_name: str = descriptor.full_name
        build = self._builders.get(full_name)
        if build is None:
            build = self._make(descriptor)
            self._builders[full_name] = build
        return build

    def _wkt_filler(self, descriptor: _Descriptor) -> Filler | None:
        """The filler of a well-known type whose JSON form is not an object of its fields."""
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
        return None

    def _make(self, descriptor: _Descriptor) -> Build:
        full_name: str = descriptor.full_name
        if descriptor.file.name == WRAPPERS_FILE:
            return _wrapper(scalar_converter(descriptor.fields_by_name["value"]))
        if full_name == "google.protobuf.Timestamp":
            return _timestamp(GetMessageClass(descriptor))
        if full_name == "google.protobuf.Any":
            return _empty_any
        fill = self._wkt_filler(descriptor)
        if fill is not None:
            return _filled(fill, GetMessageClass(descriptor))
        table: dict[str, _Entry] = {}
        self._pending.append((table, descriptor))
        build = self._regular(table)
        self._regulars[full_name] = (len(self._regulars), descriptor, build)
        return build

    def _regular(self, table: dict[str, _Entry]) -> Build:
        ignore_unknown = self._ignore_unknown
        max_depth = self._max_depth

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
                if kind == _STRING:
                    if type(item) is not str:
                        raise Fallback
                    kwargs[name] = item
                elif kind == _SCALAR:
                    kwargs[name] = convert(item)
                elif kind == _MESSAGE:
                    kwargs[name] = convert(item, depth + 1)
                else:
                    kwargs[name] = convert(item, depth)
            return kwargs

        return build

    def _fill_table(self, table: dict[str, _Entry], descriptor: _Descriptor) -> None:
        for field in descriptor.fields:
            kind, convert = self._converter(field)
            null_is_a_value = self._null_is_a_value(field)
            oneof = field.containing_oneof
            siblings = None
            if oneof is not None and len(oneof.fields) > 1:
                siblings = frozenset(f.name for f in oneof.fields if f.name != field.name)
            name = field.name
            table[field.json_name] = (name, kind, convert, None, null_is_a_value, siblings)
            if name != field.json_name:
                table[name] = (name, kind, convert, field.json_name, null_is_a_value, siblings)

    def _converter(self, field: FieldDescriptor) -> tuple[int, Any]:
        message = field.message_type if field.cpp_type == _FD.CPPTYPE_MESSAGE else None
        if message is not None and message.GetOptions().map_entry:
            key = map_key_converter(message.fields_by_name["key"])
            value_field = message.fields_by_name["value"]
            if value_field.cpp_type == _FD.CPPTYPE_MESSAGE:
                return _CONTAINER, _map_messages(key, self._builder(value_field.message_type))
            return _CONTAINER, _map_scalars(key, scalar_converter(value_field))
        if message is not None:
            build = self._builder(message)
            if field.is_repeated:
                return _CONTAINER, _repeated_messages(build)
            return _MESSAGE, build
        if field.is_repeated:
            return _CONTAINER, _repeated_scalars(scalar_converter(field))
        if field.type == _FD.TYPE_STRING:
            return _STRING, None
        return _SCALAR, scalar_converter(field)

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
    try:
        if type(fill) is _Root:
            return message_class(**fill.build(value, 1))
        message = message_class()
        fill(value, message, 1)
    except (
        Fallback,
        ValueError,
        TypeError,
        OverflowError,
        AttributeError,
        RecursionError,
        DecodeError,
    ):
        # ValueError includes the setters' UnicodeEncodeError for lone surrogates;
        # DecodeError is upb refusing to copy a Struct or Value nested deeper than
        # its limit (about 48 JSON levels) into the message being built.
        return None
    return message
