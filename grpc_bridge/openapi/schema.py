"""Protobuf messages -> JSON Schema 2020-12, in the proto3 JSON mapping the bridge is set to.

What the document shows is what the bridge *writes* (its responses) with the
configured ``json.*`` options; requests accept the same shapes (and a few more
the JSON mapping allows, such as numbers for 64-bit integers and the other
field-name spelling), so one schema serves both directions:

- field names: lowerCamel ``json_name``, or proto names with ``json.use_proto_names``;
- 64-bit integers as decimal strings, 32-bit ones as numbers; floats as numbers
  or ``"NaN"`` / ``"Infinity"`` / ``"-Infinity"``; bytes as base64;
- enums by name, or by number with ``json.enums_as_ints``;
- well-known types in their JSON forms (Timestamp, Duration, FieldMask as
  strings; Struct, Value, ListValue as free JSON; wrappers as their value or
  ``null``; Any as an object with ``@type``; Empty as ``{}``);
- ``oneof`` as ``oneOf`` (at most one member present), maps as
  ``additionalProperties`` (``propertyNames`` for integer and bool keys),
  ``google.api.field_behavior`` REQUIRED / OUTPUT_ONLY / INPUT_ONLY as
  ``required`` / ``readOnly`` / ``writeOnly``, ``deprecated`` options as
  ``deprecated``, comments (when the descriptors carry source info) as
  ``description``.

Every message is a component (``#/components/schemas/<full name>``), so
recursive messages are plain ``$ref`` cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.codec.validate_plans import INT_RANGES, WRAPPERS_FILE

__all__ = ["REF_PREFIX", "SchemaBuilder", "is_map", "ref"]

REF_PREFIX = "#/components/schemas/"
_FD = FieldDescriptor
_INT64 = frozenset({_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64})
_UINT64 = frozenset({_FD.TYPE_UINT64, _FD.TYPE_FIXED64})
_INT32 = frozenset({_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32})
_UINT32 = frozenset({_FD.TYPE_UINT32, _FD.TYPE_FIXED32})
_FLOATS = frozenset({_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT})
_FLOAT_WORDS = ["NaN", "Infinity", "-Infinity"]
_REQUIRED = field_behavior_pb2.REQUIRED
_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY
_INPUT_ONLY = field_behavior_pb2.INPUT_ONLY

_WKT: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 timestamp, e.g. 2024-01-01T00:00:00Z",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]{1,12}(\.[0-9]{1,9})?s$",
        "description": 'Seconds with an "s" suffix, e.g. 1.5s',
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths, e.g. name,priceCents",
    },
    "google.protobuf.Struct": {"type": "object", "description": "Any JSON object"},
    "google.protobuf.Value": {"description": "Any JSON value"},
    "google.protobuf.ListValue": {"type": "array", "description": "Any JSON array"},
    "google.protobuf.Empty": {"type": "object", "properties": {}, "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string", "description": "type.googleapis.com/<name>"}},
        # No "required": an Any with nothing in it is {} in the JSON mapping.
        "description": "A message of the type @type names, its fields alongside",
    },
}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": REF_PREFIX + name}


def is_map(field: FieldDescriptor) -> bool:
    sub = field.message_type
    return sub is not None and field.is_repeated and bool(sub.GetOptions().map_entry)


def _map_entry(field: FieldDescriptor) -> Descriptor:
    entry = field.message_type
    assert entry is not None
    return entry


class SchemaBuilder:
    """Builds schemas on demand and collects the components they reference."""

    def __init__(self, options: JsonOptions, comments: Mapping[str, str] | None = None) -> None:
        self.options = options
        self.comments = comments or {}
        #: Component name -> schema, in the order first referenced.
        self.components: dict[str, dict[str, Any]] = {}

    def name_of(self, field: FieldDescriptor) -> str:
        return str(field.name if self.options.use_proto_names else field.json_name)

    # -- messages ---------------------------------------------------------

    def message(self, descriptor: Descriptor) -> dict[str, Any]:
        """A schema for the message: a well-known type's JSON form, or a ``$ref``."""
        full = descriptor.full_name
        if full in _WKT:
            return dict(_WKT[full])
        if descriptor.file.name == WRAPPERS_FILE:
            inner = self._scalar(descriptor.fields_by_name["value"])
            inner_type = inner.get("type", "string")
            return {**inner, "type": [inner_type, "null"]}
        if full not in self.components:
            self.components[full] = {}  # placeholder first: recursion meets a $ref
            self.components[full] = self._object(descriptor)
        return ref(full)

    def _object(self, descriptor: Descriptor) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object", "title": descriptor.name}
        described = self.comments.get(descriptor.full_name)
        if described:
            out["description"] = described
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in descriptor.fields:
            name = self.name_of(field)
            prop = self.field(field)
            behaviors = field_behaviors(field)
            if _REQUIRED in behaviors:
                required.append(name)
            if _OUTPUT_ONLY in behaviors:
                prop["readOnly"] = True
            if _INPUT_ONLY in behaviors:
                prop["writeOnly"] = True
            properties[name] = prop
        out["properties"] = properties
        if not self.options.ignore_unknown_fields:
            # The bridge refuses unknown fields (400); the other spelling of a known
            # one is accepted but not listed, so a stricter schema than the bridge.
            out["additionalProperties"] = False
        if required:
            out["required"] = required
        groups = [
            [self.name_of(f) for f in oneof.fields]
            for oneof in descriptor.oneofs
            if not _synthetic(oneof.fields)
        ]
        at_most_one = [_at_most_one(names) for names in groups if len(names) > 1]
        if len(at_most_one) == 1:
            out.update(at_most_one[0])
        elif at_most_one:
            out["allOf"] = at_most_one
        if descriptor.GetOptions().deprecated:
            out["deprecated"] = True
        return out

    # -- fields -----------------------------------------------------------

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        """The field's schema as a property (repeated and map fields included)."""
        if is_map(field):
            entry = _map_entry(field)
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            out: dict[str, Any] = {"type": "object", "additionalProperties": self.single(value)}
            names = _map_key_names(key)
            if names is not None:
                out["propertyNames"] = names
        elif field.is_repeated:
            out = {"type": "array", "items": self.single(field)}
        else:
            out = self.single(field)
        notes = []
        described = self.comments.get(field.full_name)
        if described:
            notes.append(described)
        oneof = field.containing_oneof
        if oneof is not None and _synthetic(oneof.fields):
            notes.append("Optional (explicit presence): omitted when not set.")
        elif oneof is not None:
            notes.append(f"Member of oneof `{oneof.name}`: set at most one of its fields.")
        if notes:
            out = _with_description(out, " ".join(notes))
        if field.GetOptions().deprecated:
            out = {**out, "deprecated": True}
        return out

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        """One value of the field (an element, for repeated fields)."""
        if field.message_type is not None:
            return self.message(field.message_type)
        return self._scalar(field)

    def _scalar(self, field: FieldDescriptor) -> dict[str, Any]:
        kind = field.type
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        if kind in _INT64 or kind in _UINT64:
            low, high = INT_RANGES[kind]
            digits = "[0-9]{1,20}" if kind in _UINT64 else "-?[0-9]{1,19}"
            return {
                "type": "string",
                "format": "int64" if kind in _INT64 else "uint64",
                "pattern": f"^{digits}$",
                "description": f"64-bit integer as a decimal string ({low} to {high})",
            }
        if kind in _INT32 or kind in _UINT32:
            low, high = INT_RANGES[kind]
            return {
                "type": "integer",
                "format": "int32" if kind in _INT32 else "uint32",
                "minimum": low,
                "maximum": high,
            }
        if kind in _FLOATS:
            return {
                "anyOf": [{"type": "number"}, {"type": "string", "enum": list(_FLOAT_WORDS)}],
                "format": "double" if kind == _FD.TYPE_DOUBLE else "float",
            }
        if kind == _FD.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == _FD.TYPE_BYTES:
            return {"type": "string", "format": "byte", "contentEncoding": "base64"}
        return {"type": "string"}

    def enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        """A ``$ref`` to the enum's component (one type for generated clients)."""
        full = enum.full_name
        if full == "google.protobuf.NullValue":
            return {"type": "null"}
        if full not in self.components:
            out: dict[str, Any]
            if self.options.enums_as_ints:
                out = {"type": "integer", "enum": sorted({v.number for v in enum.values})}
            else:
                out = {"type": "string", "enum": [v.name for v in enum.values]}
            out["title"] = enum.name
            described = self.comments.get(full)
            values = ", ".join(f"{v.name} = {v.number}" for v in enum.values)
            out["description"] = (f"{described} " if described else "") + f"{full}: {values}"
            self.components[full] = out
        return ref(full)


def field_behaviors(field: FieldDescriptor) -> frozenset[int]:
    """``google.api.field_behavior`` values, read through googleapis' definition (the
    upstream's private pool knows the extension only by its number)."""
    options = field.GetOptions()
    raw = options.SerializeToString()
    if not raw:
        return frozenset()
    try:
        parsed = descriptor_pb2.FieldOptions.FromString(raw)
    except DecodeError:
        return frozenset()
    return frozenset(parsed.Extensions[field_behavior_pb2.field_behavior])


def _synthetic(fields: Any) -> bool:
    """proto3 ``optional``: a one-field oneof named after its field."""
    return len(fields) == 1 and fields[0].containing_oneof.name == f"_{fields[0].name}"


def _at_most_one(names: list[str]) -> dict[str, Any]:
    """JSON Schema for "at most one of these properties": exactly one branch holds."""
    present = [{"required": [n]} for n in names]
    return {"oneOf": [*present, {"not": {"anyOf": present}}]}


def _map_key_names(key: FieldDescriptor) -> dict[str, Any] | None:
    kind = key.type
    if kind == _FD.TYPE_BOOL:
        return {"enum": ["true", "false"]}
    if kind in _UINT32 or kind in _UINT64:
        return {"pattern": "^[0-9]+$"}
    if kind in _INT32 or kind in _INT64:
        return {"pattern": "^-?[0-9]+$"}
    return None


def _with_description(schema: dict[str, Any], text: str) -> dict[str, Any]:
    if "$ref" in schema:
        # 3.1 allows siblings of $ref; they describe this use of the type.
        return {**schema, "description": text}
    existing = schema.get("description")
    return {**schema, "description": f"{text} {existing}" if existing else text}
