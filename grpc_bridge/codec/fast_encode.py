"""Protobuf message → JSON-compatible value by reading fields directly, compiled per message type.

``json_format.MessageToDict`` walks ``ListFields()`` and dispatches on every
field's descriptor at run time. Here each message type gets a Python function
generated once (names, options and conversions baked in), so encoding is a
straight run of attribute reads. The output equals ``MessageToDict``'s with the
same options (tests/test_codec_properties.py checks it); keys come in field
order. Whatever the generated code can't vouch for — an extension, a closed
enum's unknown number, an ``Any`` of an unknown type, a NaN in a ``Value`` —
raises :class:`~grpc_bridge.codec.fast_scalars.Fallback` and the caller asks
``json_format``, which then produces its own result or error.
"""

from __future__ import annotations

import datetime
import keyword
import math
import struct
from binascii import b2a_base64
from collections.abc import Callable
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

from grpc_bridge.codec.fast_scalars import Fallback
from grpc_bridge.codec.validate_plans import WRAPPERS_FILE

__all__ = ["Encoder", "Encoders"]

_FD = FieldDescriptor
_Descriptor = Any
Encoder = Callable[..., Any]  # (message) -> value; regular types also (message, dict to fill)

_INT64_TYPES = frozenset(
    {
        _FD.TYPE_INT64,
        _FD.TYPE_UINT64,
        _FD.TYPE_SINT64,
        _FD.TYPE_FIXED64,
        _FD.TYPE_SFIXED64,
    }
)
# Rendered through a function of their own inside json_format (its _WKTJSONMETHODS).
_WKT_NAMES = frozenset(
    {
        "google.protobuf.Any",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.ListValue",
        "google.protobuf.Struct",
        "google.protobuf.Timestamp",
        "google.protobuf.Value",
    }
)
_STRING_WKTS = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
_FLOAT32 = struct.Struct("<f")


def _nonfinite(v: float) -> str:
    if v != v:
        return "NaN"
    return "Infinity" if v > 0 else "-Infinity"


def _double(v: float) -> float | str:
    return v if v - v == 0 else _nonfinite(v)


def _float32(v: float) -> float | str:
    """The shortest decimal that reads back as the same float32 (json_format's ToShortestFloat)."""
    if not v:
        return v
    if v - v != 0:
        return _nonfinite(v)
    precision = 6
    rounded = float(f"{v:.{precision}g}")
    while _FLOAT32.unpack(_FLOAT32.pack(rounded))[0] != v:
        precision += 1
        rounded = float(f"{v:.{precision}g}")
    return rounded


def _base64(v: bytes) -> str:
    return b2a_base64(v, newline=False).decode()


def _has_extensions(m: Any) -> bool:
    return any(field.is_extension for field, _ in m.ListFields())


def _neg_zero(v: float) -> bool:
    # Implicit-presence floats: -0.0 is "set" (protobuf serializes it), 0.0 is not.
    return math.copysign(1.0, v) < 0


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return message is not None and bool(message.GetOptions().map_entry)


class Encoders:
    """Encoders for the message types of one pool under one set of ``json.*`` options."""

    def __init__(
        self,
        pool: DescriptorPool,
        *,
        use_proto_names: bool,
        emit_unpopulated: bool,
        enums_as_ints: bool,
    ) -> None:
        self._pool = pool
        self._proto_names = use_proto_names
        self._emit = emit_unpopulated
        self._enums_as_ints = enums_as_ints
        self._names: dict[str, str] = {}  # full name -> its encoder's name in the namespace
        self._pending: list[tuple[str, _Descriptor]] = []
        self._any: dict[str, tuple[Callable[[bytes], Any], Encoder, bool]] = {}
        self._ns: dict[str, Any] = {
            "Fallback": Fallback,
            "_double": _double,
            "_float32": _float32,
            "_base64": _base64,
            "_neg_zero": _neg_zero,
            "_has_extensions": _has_extensions,
        }

    def encoder(self, descriptor: _Descriptor) -> Encoder:
        name = self._encoder_name(descriptor)
        # Iterative, so deep or recursive message graphs cost no Python stack here.
        while self._pending:
            self._compile(*self._pending.pop())
        encode: Encoder = self._ns[name]
        return encode

    def _encoder_name(self, descriptor: _Descriptor) -> str:
        full_name: str = descriptor.full_name
        name = self._names.get(full_name)
        if name is not None:
            return name
        name = f"_e{len(self._names)}"
        self._names[full_name] = name
        if descriptor.file.name == WRAPPERS_FILE:
            convert = self._scalar(descriptor.fields_by_name["value"], "m.value")
            self._exec(name, f"def {name}(m):\n    return {convert}\n")
        elif full_name == "google.protobuf.Timestamp":
            self._ns[name] = timestamp_json
        elif full_name in _STRING_WKTS:
            self._ns[name] = _to_json_string
        elif full_name == "google.protobuf.Struct":
            self._ns[name] = self._struct
        elif full_name == "google.protobuf.ListValue":
            self._ns[name] = self._list_value
        elif full_name == "google.protobuf.Value":
            self._ns[name] = self._value
        elif full_name == "google.protobuf.Any":
            self._ns[name] = self._any_message
        else:
            self._pending.append((name, descriptor))
        return name

    def _exec(self, name: str, source: str) -> None:
        exec(compile(source, f"<grpc_bridge encoder {name}>", "exec"), self._ns)

    # --- regular messages: generated code -------------------------------------------------

    def _compile(self, name: str, descriptor: _Descriptor) -> None:
        lines = [f"def {name}(m, d=None):", "    if d is None:", "        d = {}"]
        if descriptor.is_extendable:
            lines.append("    if _has_extensions(m):\n        raise Fallback")
        done: set[str] = set()
        for field in sorted(descriptor.fields, key=lambda f: f.number):
            oneof = field.containing_oneof
            if oneof is not None and len(oneof.fields) > 1:
                if oneof.name not in done:
                    done.add(oneof.name)
                    lines += self._oneof(oneof)
                continue
            lines += self._field(field)
        lines.append("    return d")
        self._exec(name, "\n".join(lines) + "\n")

    def _key(self, field: FieldDescriptor) -> str:
        return repr(field.name if self._proto_names else field.json_name)

    @staticmethod
    def _read(field: FieldDescriptor) -> str:
        if keyword.iskeyword(field.name) or not field.name.isidentifier():
            return f"getattr(m, {field.name!r})"
        return f"m.{field.name}"

    def _oneof(self, oneof: Any) -> list[str]:
        lines = [f"    w = m.WhichOneof({oneof.name!r})"]
        for i, field in enumerate(oneof.fields):
            lines.append(f"    {'if' if i == 0 else 'elif'} w == {field.name!r}:")
            value = self._single(field, self._read(field))
            lines.append(f"        d[{self._key(field)}] = {value}")
        return lines

    def _field(self, field: FieldDescriptor) -> list[str]:
        key, read = self._key(field), self._read(field)
        if _is_map(field) or field.is_repeated:
            value = self._map(field) if _is_map(field) else self._repeated(field)
            if self._emit:
                return [f"    v = {read}", f"    d[{key}] = {value}"]
            return [f"    v = {read}", "    if v:", f"        d[{key}] = {value}"]
        if field.has_presence:
            return [
                f"    if m.HasField({field.name!r}):",
                f"        d[{key}] = {self._single(field, read)}",
            ]
        if self._emit:
            return [f"    d[{key}] = {self._single(field, read)}"]
        # Unset implicit-presence fields are their zero value (-0.0 counts as set).
        test = (
            "v or _neg_zero(v)"
            if field.cpp_type in (_FD.CPPTYPE_DOUBLE, _FD.CPPTYPE_FLOAT)
            else "v"
        )
        return [
            f"    v = {read}",
            f"    if {test}:",
            f"        d[{key}] = {self._single(field, 'v')}",
        ]

    def _single(self, field: FieldDescriptor, expr: str) -> str:
        if field.cpp_type == _FD.CPPTYPE_MESSAGE:
            return f"{self._encoder_name(field.message_type)}({expr})"
        return self._scalar(field, expr)

    def _repeated(self, field: FieldDescriptor) -> str:
        item = self._single(field, "x")
        return "list(v)" if item == "x" else f"[{item} for x in v]"

    def _map(self, field: FieldDescriptor) -> str:
        entry: _Descriptor = field.message_type
        key_type = entry.fields_by_name["key"].type
        if key_type == _FD.TYPE_BOOL:
            key = '("true" if k else "false")'
        elif key_type == _FD.TYPE_STRING:
            key = "k"
        else:
            key = "str(k)"
        value = self._single(entry.fields_by_name["value"], "x")
        return f"{{{key}: {value} for k, x in v.items()}}"

    def _scalar(self, field: FieldDescriptor, expr: str) -> str:
        type_ = field.type
        if type_ in _INT64_TYPES:
            return f"str({expr})"
        if type_ == _FD.TYPE_DOUBLE:
            return f"_double({expr})"
        if type_ == _FD.TYPE_FLOAT:
            return f"_float32({expr})"
        if type_ == _FD.TYPE_BYTES:
            return f"_base64({expr})"
        if type_ == _FD.TYPE_ENUM:
            return self._enum(field, expr)
        return expr  # int32 kinds, bool, string: already their JSON form

    def _enum(self, field: FieldDescriptor, expr: str) -> str:
        if self._enums_as_ints:
            return expr
        enum = field.enum_type
        assert enum is not None
        if enum.full_name == "google.protobuf.NullValue":
            return "None"
        name = f"_n{len(self._ns)}"
        # With allow_alias several names share a number: json_format writes the first.
        names: dict[int, str] = {}
        for value in enum.values:
            names.setdefault(value.number, value.name)
        self._ns[name] = names
        if enum.is_closed:
            return f"{name}[{expr}]"  # KeyError: json_format's own error, via fallback
        return f"{name}.get({expr}, {expr})"

    # --- well-known types -------------------------------------------------------------------

    def _value(self, m: Any) -> Any:
        which = m.WhichOneof("kind")
        if which == "string_value":
            return m.string_value
        if which == "number_value":
            number = m.number_value
            if number - number != 0:
                raise Fallback  # json_format refuses NaN and infinities here
            return number
        if which == "bool_value":
            return m.bool_value
        if which == "struct_value":
            return self._struct(m.struct_value)
        if which == "list_value":
            return self._list_value(m.list_value)
        return None  # null_value, or not set at all

    def _struct(self, m: Any) -> dict[str, Any]:
        value = self._value
        return {k: value(v) for k, v in m.fields.items()}

    def _list_value(self, m: Any) -> list[Any]:
        value = self._value
        return [value(v) for v in m.values]

    def _any_message(self, m: Any) -> Any:
        if not m.ListFields():
            return {}
        type_url = m.type_url
        entry = self._any.get(type_url.rpartition("/")[2])
        if entry is None:
            entry = self._any_entry(type_url.rpartition("/")[2])
        parse, encode, regular = entry
        inner = parse(m.value)
        if regular:
            return encode(inner, {"@type": type_url})
        return {"@type": type_url, "value": encode(inner)}

    def _any_entry(self, type_name: str) -> tuple[Callable[[bytes], Any], Encoder, bool]:
        try:
            descriptor = self._pool.FindMessageTypeByName(type_name)
        except KeyError:
            raise Fallback from None  # json_format's error; misses aren't cached
        regular = descriptor.file.name != WRAPPERS_FILE and descriptor.full_name not in _WKT_NAMES
        parse = message_factory.GetMessageClass(descriptor).FromString
        entry = (parse, self.encoder(descriptor), regular)
        self._any[type_name] = entry
        return entry


def _to_json_string(m: Any) -> str:
    text: str = m.ToJsonString()
    return text


# Timestamp.ToJsonString goes through datetime + timedelta + isoformat (~2 µs);
# the dates of a day are cached, the rest is arithmetic.
_TS_MIN, _TS_MAX = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31, as json_format
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_days: dict[int, str] = {}


def timestamp_json(m: Any) -> str:
    """``Timestamp.ToJsonString()``, faster; out of range: json_format's own error."""
    seconds: int = m.seconds
    nanos: int = m.nanos
    if not (_TS_MIN <= seconds <= _TS_MAX and 0 <= nanos < 1_000_000_000):
        return _to_json_string(m)
    days, rest = divmod(seconds, 86400)
    date = _days.get(days)
    if date is None:
        if len(_days) > 4096:
            _days.clear()
        date = _days[days] = datetime.date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if nanos == 0:
        return f"{date}T{hours:02d}:{minutes:02d}:{secs:02d}Z"
    if nanos % 1_000_000 == 0:
        fraction = f"{nanos // 1_000_000:03d}"
    elif nanos % 1000 == 0:
        fraction = f"{nanos // 1000:06d}"
    else:
        fraction = f"{nanos:09d}"
    return f"{date}T{hours:02d}:{minutes:02d}:{secs:02d}.{fraction}Z"
