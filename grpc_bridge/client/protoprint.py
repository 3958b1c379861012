"""Descriptors as proto source snippets, in the form ``grpcurl describe`` prints them.

grpcurl prints with jhump/protoreflect's ``protoprint.Printer{Compact: true,
SortElements: true, ForceFullyQualifiedNames: true, OmitComments:
CommentsNonDoc}``; this follows the same conventions so the two outputs can be
compared line by line:

- type names fully qualified with a leading dot (``.bridgetest.v1.Nested``);
- methods sorted by name; fields in tag order with each ``oneof`` at its
  smallest tag; nested messages, then nested enums, sorted by name; enum
  values by number, then name;
- options sorted by name, standard before custom (``(.google.api.http)``),
  message-valued ones in one line of text format;
- map entry types are shown as the ``map<K, V>`` field that uses them.

Works on ``descriptor_pb2`` protos (``CopyToProto``), which hold exactly what
the reflection reply or descriptor set said. Comments are printed when the
descriptors carry source info (reflection from a grpc-go or grpc-java server
usually does; Python servers send none).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, text_encoding
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    EnumValueDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    OneofDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

__all__ = ["describe", "full_name", "kind_of"]

# Registers (google.api.http) in the default pool, so the options of reflected
# methods parse it as an extension instead of leaving unknown bytes.
_HTTP_EXTENSION = annotations_pb2.http

FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}
_INDENT = "  "

Described = (
    Descriptor
    | EnumDescriptor
    | EnumValueDescriptor
    | FieldDescriptor
    | MethodDescriptor
    | OneofDescriptor
    | ServiceDescriptor
)


def kind_of(descriptor: Described) -> str:
    """grpcurl's words after "is": ``a message``, ``a service``, ``an enum`` ..."""
    if isinstance(descriptor, ServiceDescriptor):
        return "a service"
    if isinstance(descriptor, MethodDescriptor):
        return "a method"
    if isinstance(descriptor, EnumDescriptor):
        return "an enum"
    if isinstance(descriptor, EnumValueDescriptor):
        return "an enum value"
    if isinstance(descriptor, OneofDescriptor):
        return "a one-of"
    if isinstance(descriptor, FieldDescriptor):
        return "an extension" if descriptor.is_extension else "a field"
    if _map_field_of(descriptor) is not None:
        return "the entry type for a map field"
    return "a message"


def full_name(descriptor: Described) -> str:
    """The full name, enum values included (protobuf scopes them beside their enum)."""
    if isinstance(descriptor, EnumValueDescriptor):
        return f"{descriptor.type.full_name}.{descriptor.name}"
    return str(descriptor.full_name)


def describe(descriptor: Described) -> str:
    """The proto source of ``descriptor``, without a trailing newline."""
    if isinstance(descriptor, ServiceDescriptor):
        lines = _service(_proto(descriptor, descriptor_pb2.ServiceDescriptorProto()))
    elif isinstance(descriptor, MethodDescriptor):
        service = _proto(descriptor.containing_service, descriptor_pb2.ServiceDescriptorProto())
        lines = _method(next(m for m in service.method if m.name == descriptor.name))
    elif isinstance(descriptor, EnumDescriptor):
        lines = _enum(_proto(descriptor, descriptor_pb2.EnumDescriptorProto()))
    elif isinstance(descriptor, EnumValueDescriptor):
        enum = _proto(descriptor.type, descriptor_pb2.EnumDescriptorProto())
        lines = _enum_value(next(v for v in enum.value if v.name == descriptor.name))
    elif isinstance(descriptor, OneofDescriptor):
        parent = _proto(descriptor.containing_type, descriptor_pb2.DescriptorProto())
        lines = _oneof(parent, descriptor.index, proto2=_proto2(descriptor.containing_type))
    elif isinstance(descriptor, FieldDescriptor):
        lines = _lone_field(descriptor)
    else:
        entry_of = _map_field_of(descriptor)
        if entry_of is not None:
            lines = _lone_field(entry_of)
        else:
            message = _proto(descriptor, descriptor_pb2.DescriptorProto())
            lines = _message(message, proto2=_proto2(descriptor))
    return "\n".join(lines)


def _proto(descriptor: Any, proto: Any) -> Any:
    descriptor.CopyToProto(proto)
    return proto


def _map_field_of(message: Descriptor) -> FieldDescriptor | None:
    if not message.GetOptions().map_entry or message.containing_type is None:
        return None
    for field in message.containing_type.fields:
        if field.message_type is message:
            return field
    return None


def _lone_field(field: FieldDescriptor) -> list[str]:
    if field.is_extension:
        parent: Any = field.extension_scope
        if parent is None:
            file = descriptor_pb2.FileDescriptorProto()
            any_field: Any = field  # mypy's stubs miss FieldDescriptor.file
            any_field.file.CopyToProto(file)
            protos = list(file.extension)
            scope = file
        else:
            scope = _proto(parent, descriptor_pb2.DescriptorProto())
            protos = list(scope.extension)
        proto = next(f for f in protos if f.name == field.name)
        body = _field(proto, scope, proto2=_proto2(field))
        return [f"extend {proto.extendee} {{", *_indent(body), "}"]
    message = _proto(field.containing_type, descriptor_pb2.DescriptorProto())
    proto = next(f for f in message.field if f.name == field.name)
    return _field(
        proto, message, proto2=_proto2(field), in_oneof=field.containing_oneof is not None
    )


# -- services -------------------------------------------------------------------


def _service(service: descriptor_pb2.ServiceDescriptorProto) -> list[str]:
    body = [*_options(service.options)]
    for method in sorted(service.method, key=lambda m: m.name):
        body += _method(method)
    return [f"service {service.name} {{", *_indent(body), "}"]


def _method(method: descriptor_pb2.MethodDescriptorProto) -> list[str]:
    request = ("stream " if method.client_streaming else "") + method.input_type
    response = ("stream " if method.server_streaming else "") + method.output_type
    head = f"rpc {method.name} ( {request} ) returns ( {response} )"
    options = list(_options(method.options))
    if not options:
        return [head + ";"]
    return [head + " {", *_indent(options), "}"]


# -- messages -------------------------------------------------------------------


def _message(message: descriptor_pb2.DescriptorProto, *, proto2: bool) -> list[str]:
    body = [*_options(message.options)]
    # Fields in tag order; a real oneof appears once, where its first field is.
    shown_oneofs: set[int] = set()
    for field in sorted(message.field, key=lambda f: f.number):
        if field.HasField("oneof_index") and not field.proto3_optional:
            if field.oneof_index not in shown_oneofs:
                shown_oneofs.add(field.oneof_index)
                body += _oneof(message, field.oneof_index, proto2=proto2)
            continue
        body += _field(field, message, proto2=proto2)
    for nested in sorted(message.nested_type, key=lambda n: n.name):
        if not nested.options.map_entry:
            body += _message(nested, proto2=proto2)
    for enum in sorted(message.enum_type, key=lambda e: e.name):
        body += _enum(enum)
    for extension_range in sorted(message.extension_range, key=lambda r: r.start):
        body.append(f"extensions {_range(extension_range.start, extension_range.end - 1)};")
    extendees: dict[str, list[descriptor_pb2.FieldDescriptorProto]] = {}
    for extension in message.extension:
        extendees.setdefault(extension.extendee, []).append(extension)
    for extendee in sorted(extendees):
        fields = sorted(extendees[extendee], key=lambda f: f.number)
        inner = [line for f in fields for line in _field(f, message, proto2=proto2)]
        body += [f"extend {extendee} {{", *_indent(inner), "}"]
    for reserved in sorted(message.reserved_range, key=lambda r: r.start):
        body.append(f"reserved {_range(reserved.start, reserved.end - 1)};")
    for name in sorted(message.reserved_name):
        body.append(f'reserved "{name}";')
    return [f"message {message.name} {{", *_indent(body), "}"]


def _oneof(message: descriptor_pb2.DescriptorProto, index: int, *, proto2: bool) -> list[str]:
    oneof = message.oneof_decl[index]
    fields = sorted(
        (f for f in message.field if f.HasField("oneof_index") and f.oneof_index == index),
        key=lambda f: f.number,
    )
    body = [*_options(oneof.options)]
    for field in fields:
        body += _field(field, message, proto2=proto2, in_oneof=True)
    return [f"oneof {oneof.name} {{", *_indent(body), "}"]


def _field(
    field: descriptor_pb2.FieldDescriptorProto,
    scope: Any,
    *,
    proto2: bool,
    in_oneof: bool = False,
) -> list[str]:
    entry = _map_entry(field, scope)
    if entry is not None:
        key, value = (next(f for f in entry.field if f.number == n) for n in (1, 2))
        head = f"map<{_type(key)}, {_type(value)}> {field.name} = {field.number}"
    else:
        label = ""
        if field.label == FDP.LABEL_REPEATED:
            label = "repeated "
        elif field.label == FDP.LABEL_REQUIRED:
            label = "required "
        elif field.proto3_optional or (
            proto2 and not in_oneof and field.label == FDP.LABEL_OPTIONAL
        ):
            label = "optional "
        head = f"{label}{_type(field)} {field.name} = {field.number}"
    compact = _field_options(field)
    return [f"{head}{' [' + ', '.join(compact) + ']' if compact else ''};"]


def _map_entry(field: descriptor_pb2.FieldDescriptorProto, scope: Any) -> Any:
    if field.label != FDP.LABEL_REPEATED or field.type != FDP.TYPE_MESSAGE:
        return None
    short = field.type_name.rpartition(".")[2]
    for nested in getattr(scope, "nested_type", ()):
        if nested.name == short and nested.options.map_entry:
            return nested
    return None


def _proto2(descriptor: Any) -> bool:
    """Whether the file declaring ``descriptor`` is proto2 (its labels are then printed)."""
    file = descriptor_pb2.FileDescriptorProto()
    descriptor.file.CopyToProto(file)
    return file.syntax in ("", "proto2")


def _type(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type in _SCALARS:
        return _SCALARS[field.type]
    if field.type == FDP.TYPE_GROUP:
        return "group"
    return field.type_name


def _field_options(field: descriptor_pb2.FieldDescriptorProto) -> list[str]:
    out = []
    if field.HasField("default_value"):
        quoted = field.type in (FDP.TYPE_STRING, FDP.TYPE_BYTES)
        out.append(
            f'default = "{field.default_value}"' if quoted else f"default = {field.default_value}"
        )
    if field.HasField("json_name") and field.json_name != _camel(field.name):
        out.append(f'json_name = "{field.json_name}"')
    out += [option.removeprefix("option ").removesuffix(";") for option in _options(field.options)]
    return out


def _camel(name: str) -> str:
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _range(start: int, end: int) -> str:
    if start == end:
        return str(start)
    return f"{start} to {'max' if end >= 536870911 - 1 else end}"


# -- enums ----------------------------------------------------------------------


def _enum(enum: descriptor_pb2.EnumDescriptorProto) -> list[str]:
    body = [*_options(enum.options)]
    for value in sorted(enum.value, key=lambda v: (v.number, v.name)):
        body += _enum_value(value)
    for reserved in sorted(enum.reserved_range, key=lambda r: r.start):
        body.append(f"reserved {_range(reserved.start, reserved.end)};")
    for name in sorted(enum.reserved_name):
        body.append(f'reserved "{name}";')
    return [f"enum {enum.name} {{", *_indent(body), "}"]


def _enum_value(value: descriptor_pb2.EnumValueDescriptorProto) -> list[str]:
    options = [o.removeprefix("option ").removesuffix(";") for o in _options(value.options)]
    suffix = f" [{', '.join(options)}]" if options else ""
    return [f"{value.name} = {value.number}{suffix};"]


# -- options --------------------------------------------------------------------


def _options(options: Message) -> Iterator[str]:
    """``option name = value;`` lines: standard options by name, then extensions by name."""
    fields = options.ListFields()
    standard = sorted((f, v) for f, v in fields if not f.is_extension)
    custom = sorted(((f, v) for f, v in fields if f.is_extension), key=lambda fv: fv[0].full_name)
    for field, value in standard:
        yield f"option {field.name} = {_value(field, value)};"
    for field, value in custom:
        yield f"option (.{field.full_name}) = {_value(field, value)};"


def _value(field: FieldDescriptor, value: Any) -> str:
    if field.is_repeated:
        return "[" + ", ".join(_scalar(field, v) for v in value) + "]"
    return _scalar(field, value)


def _scalar(field: FieldDescriptor, value: Any) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return "{ " + " ".join(_text_fields(value)) + " }"
    if field.type == FieldDescriptor.TYPE_ENUM:
        named = field.enum_type.values_by_number.get(value) if field.enum_type else None
        return named.name if named is not None else str(value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + text_encoding.CEscape(value.encode(), as_utf8=True) + '"'
    if isinstance(value, bytes):
        return '"' + text_encoding.CEscape(value, as_utf8=False) + '"'
    return str(value)


def _text_fields(message: Message) -> Iterator[str]:
    """Text format on one line, the way Go's prototext writes it: ``name:value``."""
    for field, value in message.ListFields():
        name = f"[{field.full_name}]" if field.is_extension else field.name
        values = value if field.is_repeated else [value]
        for item in values:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                yield f"{name}:{{" + " ".join(_text_fields(item)) + "}"
            else:
                yield f"{name}:{_scalar(field, item)}"


def _indent(lines: list[str]) -> list[str]:
    return [_INDENT + line for line in lines]
