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

Works on the FileDescriptorProto as received (reflection reply or descriptor
set), which holds exactly what the server said; its source info, when
present, gives each element's leading comment, printed as ``//`` lines before
it (grpcurl prints doc comments only). grpc-go and grpc-java servers usually
send source info; Python servers send none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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


def describe(descriptor: Described, files: Mapping[str, bytes] | None = None) -> str:
    """The proto source of ``descriptor``, without a trailing newline.

    ``files``: serialized FileDescriptorProtos by name, as received
    (``Schema.files``); their source info, when present, gives the comments.
    """
    file = _file_of(descriptor, files or {})
    printer = _Printer(file)
    if isinstance(descriptor, FieldDescriptor) and descriptor.is_extension:
        return "\n".join(printer.extension(descriptor))
    if isinstance(descriptor, Descriptor):
        entry_of = _map_field_of(descriptor)
        if entry_of is not None:
            descriptor = entry_of
    element, path, parent = _locate(file, descriptor)
    if isinstance(descriptor, ServiceDescriptor):
        lines = printer.service(element, path)
    elif isinstance(descriptor, MethodDescriptor):
        lines = printer.method(element, path)
    elif isinstance(descriptor, EnumDescriptor):
        lines = printer.enum(element, path)
    elif isinstance(descriptor, EnumValueDescriptor):
        lines = printer.enum_value(element, path)
    elif isinstance(descriptor, OneofDescriptor):
        lines = printer.oneof(parent, descriptor.index, path[:-2])
    elif isinstance(descriptor, FieldDescriptor):
        in_oneof = descriptor.containing_oneof is not None
        lines = printer.field(element, parent, path, in_oneof=in_oneof)
    else:
        lines = printer.message(element, path)
    return "\n".join(lines)


def _file_of(descriptor: Any, files: Mapping[str, bytes]) -> descriptor_pb2.FileDescriptorProto:
    holder = descriptor
    while not hasattr(holder, "file"):  # methods, oneofs and enum values name no file
        holder = (
            getattr(holder, "containing_service", None)
            or getattr(holder, "containing_type", None)
            or holder.type
        )
    file_descriptor = holder.file
    proto = descriptor_pb2.FileDescriptorProto()
    blob = files.get(file_descriptor.name)
    if blob is not None:
        try:
            proto.MergeFromString(blob)
        except Exception:  # never expected: the pool was built from these bytes
            proto.Clear()
    if not proto.name:
        file_descriptor.CopyToProto(proto)
    return proto


Path = tuple[int, ...]
# Field numbers of FileDescriptorProto, DescriptorProto, ... in source-info paths.
_FILE_MESSAGES, _FILE_ENUMS, _FILE_SERVICES = 4, 5, 6
_MESSAGE_FIELDS, _MESSAGE_NESTED, _MESSAGE_ENUMS, _MESSAGE_ONEOFS = 2, 3, 4, 8
_SERVICE_METHODS = _ENUM_VALUES = 2


def _locate(file: descriptor_pb2.FileDescriptorProto, descriptor: Any) -> tuple[Any, Path, Any]:
    """(element proto, its source-info path, the message or enum holding it) in ``file``."""
    if isinstance(descriptor, MethodDescriptor):
        service, path, _ = _locate(file, descriptor.containing_service)
        index = _index(service.method, descriptor.name)
        return service.method[index], (*path, _SERVICE_METHODS, index), service
    if isinstance(descriptor, EnumValueDescriptor):
        enum, path, _ = _locate(file, descriptor.type)
        index = _index(enum.value, descriptor.name)
        return enum.value[index], (*path, _ENUM_VALUES, index), enum
    if isinstance(descriptor, FieldDescriptor):
        message, path, _ = _locate(file, descriptor.containing_type)
        index = _index(message.field, descriptor.name)
        return message.field[index], (*path, _MESSAGE_FIELDS, index), message
    if isinstance(descriptor, OneofDescriptor):
        message, path, _ = _locate(file, descriptor.containing_type)
        index = descriptor.index
        return message.oneof_decl[index], (*path, _MESSAGE_ONEOFS, index), message
    if isinstance(descriptor, ServiceDescriptor):
        index = _index(file.service, descriptor.name)
        return file.service[index], (_FILE_SERVICES, index), file
    parent = descriptor.containing_type
    is_enum = isinstance(descriptor, EnumDescriptor)
    if parent is None:
        members = file.enum_type if is_enum else file.message_type
        index = _index(members, descriptor.name)
        return members[index], (_FILE_ENUMS if is_enum else _FILE_MESSAGES, index), file
    holder, path, _ = _locate(file, parent)
    members = holder.enum_type if is_enum else holder.nested_type
    index = _index(members, descriptor.name)
    kind = _MESSAGE_ENUMS if is_enum else _MESSAGE_NESTED
    return members[index], (*path, kind, index), holder


def _index(members: Any, name: str) -> int:
    return next(i for i, member in enumerate(members) if member.name == name)


def _map_field_of(message: Descriptor) -> FieldDescriptor | None:
    if not message.GetOptions().map_entry or message.containing_type is None:
        return None
    for field in message.containing_type.fields:
        if field.message_type is message:
            return field
    return None


class _Printer:
    """Prints elements of one file: knows its syntax and its comments by path."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        self.proto2 = file.syntax in ("", "proto2")
        self.comments = {
            tuple(location.path): location.leading_comments
            for location in file.source_code_info.location
            if location.leading_comments
        }

    def _doc(self, path: Path) -> list[str]:
        """The element's leading comment as ``//`` lines (grpcurl prints doc comments only)."""
        text = self.comments.get(path)
        if not text:
            return []
        return ["//" + line for line in text.removesuffix("\n").split("\n")]

    # -- services ---------------------------------------------------------------

    def service(self, service: descriptor_pb2.ServiceDescriptorProto, path: Path) -> list[str]:
        body = [*_options(service.options)]
        for index, method in sorted(enumerate(service.method), key=lambda im: im[1].name):
            body += self.method(method, (*path, _SERVICE_METHODS, index))
        return [*self._doc(path), f"service {service.name} {{", *_indent(body), "}"]

    def method(self, method: descriptor_pb2.MethodDescriptorProto, path: Path) -> list[str]:
        request = ("stream " if method.client_streaming else "") + method.input_type
        response = ("stream " if method.server_streaming else "") + method.output_type
        head = f"rpc {method.name} ( {request} ) returns ( {response} )"
        options = list(_options(method.options))
        if not options:
            return [*self._doc(path), head + ";"]
        return [*self._doc(path), head + " {", *_indent(options), "}"]

    # -- messages ---------------------------------------------------------------

    def message(self, message: descriptor_pb2.DescriptorProto, path: Path) -> list[str]:
        body = [*_options(message.options)]
        # Fields in tag order; a real oneof appears once, where its first field is.
        shown_oneofs: set[int] = set()
        for index, field in sorted(enumerate(message.field), key=lambda jf: jf[1].number):
            if field.HasField("oneof_index") and not field.proto3_optional:
                if field.oneof_index not in shown_oneofs:
                    shown_oneofs.add(field.oneof_index)
                    body += self.oneof(message, field.oneof_index, path)
                continue
            body += self.field(field, message, (*path, _MESSAGE_FIELDS, index))
        for index, nested in sorted(enumerate(message.nested_type), key=lambda jn: jn[1].name):
            if not nested.options.map_entry:
                body += self.message(nested, (*path, _MESSAGE_NESTED, index))
        for index, enum in sorted(enumerate(message.enum_type), key=lambda je: je[1].name):
            body += self.enum(enum, (*path, _MESSAGE_ENUMS, index))
        for extension_range in sorted(message.extension_range, key=lambda r: r.start):
            body.append(f"extensions {_range(extension_range.start, extension_range.end - 1)};")
        extendees: dict[str, list[descriptor_pb2.FieldDescriptorProto]] = {}
        for extension in message.extension:
            extendees.setdefault(extension.extendee, []).append(extension)
        for extendee in sorted(extendees):
            fields = sorted(extendees[extendee], key=lambda f: f.number)
            inner = [line for f in fields for line in self.field(f, message, ())]
            body += [f"extend {extendee} {{", *_indent(inner), "}"]
        for reserved in sorted(message.reserved_range, key=lambda r: r.start):
            body.append(f"reserved {_range(reserved.start, reserved.end - 1)};")
        for name in sorted(message.reserved_name):
            body.append(f'reserved "{name}";')
        return [*self._doc(path), f"message {message.name} {{", *_indent(body), "}"]

    def oneof(self, message: descriptor_pb2.DescriptorProto, index: int, path: Path) -> list[str]:
        """``path``: the containing message's."""
        oneof = message.oneof_decl[index]
        fields = sorted(
            (
                (j, f)
                for j, f in enumerate(message.field)
                if f.HasField("oneof_index") and f.oneof_index == index
            ),
            key=lambda jf: jf[1].number,
        )
        body = [*_options(oneof.options)]
        for j, field in fields:
            body += self.field(field, message, (*path, _MESSAGE_FIELDS, j), in_oneof=True)
        doc = self._doc((*path, _MESSAGE_ONEOFS, index))
        return [*doc, f"oneof {oneof.name} {{", *_indent(body), "}"]

    def field(
        self,
        field: descriptor_pb2.FieldDescriptorProto,
        scope: Any,
        path: Path,
        *,
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
                self.proto2 and not in_oneof and field.label == FDP.LABEL_OPTIONAL
            ):
                label = "optional "
            head = f"{label}{_type(field)} {field.name} = {field.number}"
        compact = _field_options(field)
        suffix = f" [{', '.join(compact)}]" if compact else ""
        return [*self._doc(path), f"{head}{suffix};"]

    def extension(self, field: FieldDescriptor) -> list[str]:
        parent: Any = field.extension_scope
        if parent is None:
            any_field: Any = field  # mypy's stubs miss FieldDescriptor.file
            scope: Any = _proto(any_field.file, descriptor_pb2.FileDescriptorProto())
        else:
            scope = _proto(parent, descriptor_pb2.DescriptorProto())
        proto = next(f for f in scope.extension if f.name == field.name)
        return [f"extend {proto.extendee} {{", *_indent(self.field(proto, scope, ())), "}"]

    # -- enums ------------------------------------------------------------------

    def enum(self, enum: descriptor_pb2.EnumDescriptorProto, path: Path) -> list[str]:
        body = [*_options(enum.options)]
        values = sorted(enumerate(enum.value), key=lambda jv: (jv[1].number, jv[1].name))
        for index, value in values:
            body += self.enum_value(value, (*path, _ENUM_VALUES, index))
        for reserved in sorted(enum.reserved_range, key=lambda r: r.start):
            body.append(f"reserved {_range(reserved.start, reserved.end, _ENUM_MAX)};")
        for name in sorted(enum.reserved_name):
            body.append(f'reserved "{name}";')
        return [*self._doc(path), f"enum {enum.name} {{", *_indent(body), "}"]

    def enum_value(self, value: descriptor_pb2.EnumValueDescriptorProto, path: Path) -> list[str]:
        options = [o.removeprefix("option ").removesuffix(";") for o in _options(value.options)]
        suffix = f" [{', '.join(options)}]" if options else ""
        return [*self._doc(path), f"{value.name} = {value.number}{suffix};"]


def _proto(descriptor: Any, proto: Any) -> Any:
    descriptor.CopyToProto(proto)
    return proto


def _map_entry(field: descriptor_pb2.FieldDescriptorProto, scope: Any) -> Any:
    if field.label != FDP.LABEL_REPEATED or field.type != FDP.TYPE_MESSAGE:
        return None
    short = field.type_name.rpartition(".")[2]
    for nested in getattr(scope, "nested_type", ()):
        if nested.name == short and nested.options.map_entry:
            return nested
    return None


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


#: The largest field number, and the largest enum number: written "max" in ranges.
_FIELD_MAX = 536870911
_ENUM_MAX = 2147483647


def _range(start: int, end: int, maximum: int = _FIELD_MAX) -> str:
    """``start to end`` (inclusive), ``max`` for the largest number, one number alone."""
    if start == end:
        return str(start)
    return f"{start} to {'max' if end >= maximum else end}"


# -- enums ----------------------------------------------------------------------


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
