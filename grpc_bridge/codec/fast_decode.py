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

The builders are in :mod:`.fast_builders`; this module puts them together per
message type (a table per type) and, for the everyday input of a regular type,
generates the Python source of its builder.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from grpc_bridge.codec.fast_builders import (
    CONTAINER,
    MESSAGE,
    SCALAR,
    STRING,
    Build,
    Entry,
    StructFillers,
    empty_any_kwargs,
    filled,
    map_messages,
    map_scalars,
    repeated_messages,
    repeated_scalars,
    table_builder,
    timestamp_kwargs,
    wrapper_kwargs,
)
from grpc_bridge.codec.fast_scalars import (
    Fallback,
    Filler,
    empty_any,
    from_json_string,
    map_key_converter,
    scalar_converter,
    timestamp,
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
        self._structs = StructFillers(max_depth)
        self._builders: dict[str, Build] = {}
        self._pending: list[tuple[dict[str, Entry], _Descriptor]] = []
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
            return self._structs.value
        if full_name == "google.protobuf.Struct":
            return self._structs.struct
        if full_name == "google.protobuf.ListValue":
            return self._structs.list_value
        if full_name == "google.protobuf.Any":
            return empty_any
        return None

    def _make(self, descriptor: _Descriptor) -> Build:
        full_name: str = descriptor.full_name
        if descriptor.file.name == WRAPPERS_FILE:
            return wrapper_kwargs(scalar_converter(descriptor.fields_by_name["value"]))
        if full_name == "google.protobuf.Timestamp":
            return timestamp_kwargs(GetMessageClass(descriptor))
        if full_name == "google.protobuf.Any":
            return empty_any_kwargs
        fill = self._wkt_filler(descriptor)
        if fill is not None:
            return filled(fill, GetMessageClass(descriptor))
        table: dict[str, Entry] = {}
        self._pending.append((table, descriptor))
        build = table_builder(table, ignore_unknown=self._ignore_unknown, max_depth=self._max_depth)
        self._regulars[full_name] = (len(self._regulars), descriptor, build)
        return build

    def _fill_table(self, table: dict[str, Entry], descriptor: _Descriptor) -> None:
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
                return CONTAINER, map_messages(key, self._builder(value_field.message_type))
            return CONTAINER, map_scalars(key, scalar_converter(value_field))
        if message is not None:
            build = self._builder(message)
            if field.is_repeated:
                return CONTAINER, repeated_messages(build)
            return MESSAGE, build
        if field.is_repeated:
            return CONTAINER, repeated_scalars(scalar_converter(field))
        if field.type == _FD.TYPE_STRING:
            return STRING, None
        return SCALAR, scalar_converter(field)


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
