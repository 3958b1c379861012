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

from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    EnumValueDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    OneofDescriptor,
    ServiceDescriptor,
)

from grpc_bridge.client.proto_printer import (
    ENUM_VALUES,
    FILE_ENUMS,
    FILE_MESSAGES,
    FILE_SERVICES,
    MESSAGE_ENUMS,
    MESSAGE_FIELDS,
    MESSAGE_NESTED,
    MESSAGE_ONEOFS,
    SERVICE_METHODS,
    Path,
    Printer,
)

__all__ = ["describe", "full_name", "kind_of"]

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
    printer = Printer(file)
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


def _locate(file: descriptor_pb2.FileDescriptorProto, descriptor: Any) -> tuple[Any, Path, Any]:
    """(element proto, its source-info path, the message or enum holding it) in ``file``."""
    if isinstance(descriptor, MethodDescriptor):
        service, path, _ = _locate(file, descriptor.containing_service)
        index = _index(service.method, descriptor.name)
        return service.method[index], (*path, SERVICE_METHODS, index), service
    if isinstance(descriptor, EnumValueDescriptor):
        enum, path, _ = _locate(file, descriptor.type)
        index = _index(enum.value, descriptor.name)
        return enum.value[index], (*path, ENUM_VALUES, index), enum
    if isinstance(descriptor, FieldDescriptor):
        message, path, _ = _locate(file, descriptor.containing_type)
        index = _index(message.field, descriptor.name)
        return message.field[index], (*path, MESSAGE_FIELDS, index), message
    if isinstance(descriptor, OneofDescriptor):
        message, path, _ = _locate(file, descriptor.containing_type)
        index = descriptor.index
        return message.oneof_decl[index], (*path, MESSAGE_ONEOFS, index), message
    if isinstance(descriptor, ServiceDescriptor):
        index = _index(file.service, descriptor.name)
        return file.service[index], (FILE_SERVICES, index), file
    parent = descriptor.containing_type
    is_enum = isinstance(descriptor, EnumDescriptor)
    if parent is None:
        members = file.enum_type if is_enum else file.message_type
        index = _index(members, descriptor.name)
        return members[index], (FILE_ENUMS if is_enum else FILE_MESSAGES, index), file
    holder, path, _ = _locate(file, parent)
    members = holder.enum_type if is_enum else holder.nested_type
    index = _index(members, descriptor.name)
    kind = MESSAGE_ENUMS if is_enum else MESSAGE_NESTED
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
