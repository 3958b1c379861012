"""The printer of :mod:`.protoprint`: one file's elements as proto source, options as text format.

Fed the FileDescriptorProto of the file and an element of it with its
source-info path (which :mod:`.protoprint` finds), it prints the element the
way grpcurl does, its doc comment first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, text_encoding
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["Path", "Printer"]

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

Path = tuple[int, ...]
# Field numbers of FileDescriptorProto, DescriptorProto, ... in source-info paths.
FILE_MESSAGES, FILE_ENUMS, FILE_SERVICES = 4, 5, 6
MESSAGE_FIELDS, MESSAGE_NESTED, MESSAGE_ENUMS, MESSAGE_ONEOFS = 2, 3, 4, 8
SERVICE_METHODS = ENUM_VALUES = 2


class Printer:
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
            body += self.method(method, (*path, SERVICE_METHODS, index))
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
            body += self.field(field, message, (*path, MESSAGE_FIELDS, index))
        for index, nested in sorted(enumerate(message.nested_type), key=lambda jn: jn[1].name):
            if not nested.options.map_entry:
                body += self.message(nested, (*path, MESSAGE_NESTED, index))
        for index, enum in sorted(enumerate(message.enum_type), key=lambda je: je[1].name):
            body += self.enum(enum, (*path, MESSAGE_ENUMS, index))
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
            body += self.field(field, message, (*path, MESSAGE_FIELDS, j), in_oneof=True)
        doc = self._doc((*path, MESSAGE_ONEOFS, index))
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
            body += self.enum_value(value, (*path, ENUM_VALUES, index))
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
