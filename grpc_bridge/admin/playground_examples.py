"""An example request per method, built from its input descriptor, for the playground.

The example is a starting point the user edits, so it must be a request the
bridge accepts as is: every field appears once with its proto3 JSON zero value
(64-bit integers as strings, enums by name, well-known types in their JSON
string forms), one element in lists and maps to show their shape, and only the
first member of each oneof (setting two members is a 400). Recursive messages
stop at their second appearance on the path, and nesting stops at
``MAX_DEPTH``, so a wide or self-referencing schema gives a bounded example.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

#: Messages nested deeper than this are shown as ``{}``.
MAX_DEPTH = 6

_INT64 = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_FLOATS = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})

# The proto3 JSON form of each well-known type (json_format's special cases).
_WELL_KNOWN: dict[str, Any] = {
    "google.protobuf.Timestamp": "1970-01-01T00:00:00Z",
    "google.protobuf.Duration": "0s",
    "google.protobuf.FieldMask": "",
    "google.protobuf.Struct": {},
    "google.protobuf.ListValue": [],
    "google.protobuf.Value": None,
    "google.protobuf.Empty": {},
    "google.protobuf.DoubleValue": 0,
    "google.protobuf.FloatValue": 0,
    "google.protobuf.Int64Value": "0",
    "google.protobuf.UInt64Value": "0",
    "google.protobuf.Int32Value": 0,
    "google.protobuf.UInt32Value": 0,
    "google.protobuf.BoolValue": False,
    "google.protobuf.StringValue": "",
    "google.protobuf.BytesValue": "",
}
# An Any needs a type URL the bridge can resolve; none is known in general.
_ANY = "google.protobuf.Any"


def example_request(descriptor: Descriptor, *, proto_names: bool = False) -> dict[str, Any]:
    """One message of ``descriptor``'s type in the proto3 JSON mapping, every field set."""
    return _message(descriptor, proto_names, (descriptor.full_name,))


def _message(descriptor: Descriptor, proto_names: bool, path: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    oneofs_seen: set[str] = set()
    for field in descriptor.fields:
        oneof = field.containing_oneof
        # proto3 `optional` is a synthetic one-member oneof; a real oneof shows its first member.
        if oneof is not None and len(oneof.fields) > 1:
            if oneof.full_name in oneofs_seen:
                continue
            oneofs_seen.add(oneof.full_name)
        value = _field(field, proto_names, path)
        if value is not _OMIT:
            out[field.name if proto_names else field.json_name] = value
    return out


class _Omit:
    """A field left out of the example (an Any, or a recursion cut inside a list)."""


_OMIT = _Omit()


def _field(field: FieldDescriptor, proto_names: bool, path: tuple[str, ...]) -> Any:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key = _single(entry.fields_by_name["key"], proto_names, path)
        value = _single(entry.fields_by_name["value"], proto_names, path)
        # JSON object keys are strings: "0" for integer keys, "false" for bool keys.
        text = "key" if key == "" else str(key).lower() if isinstance(key, bool) else str(key)
        return {} if value is _OMIT else {text: value}
    single = _single(field, proto_names, path)
    if field.is_repeated:
        return [] if single is _OMIT else [single]
    return single


def _single(field: FieldDescriptor, proto_names: bool, path: tuple[str, ...]) -> Any:
    message = field.message_type
    if message is not None:
        name = message.full_name
        if name == _ANY:
            return _OMIT
        if name in _WELL_KNOWN:
            return _WELL_KNOWN[name]
        if name in path or len(path) > MAX_DEPTH:
            return {}
        return _message(message, proto_names, (*path, name))
    if field.enum_type is not None:
        if field.enum_type.full_name == "google.protobuf.NullValue":
            return None
        zero = field.enum_type.values_by_number.get(0)
        return (zero or field.enum_type.values[0]).name
    if field.type in _INT64:
        return "0"
    if field.type in _FLOATS:
        return 0
    if field.type == FieldDescriptor.TYPE_BOOL:
        return False
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return ""
    return 0
