"""Proto comments, from the source info some descriptor sources carry, by full name.

Reflection servers built from generated code usually strip ``source_code_info``;
descriptor sets made with ``protoc --include_source_info`` keep it. Locations
are paths into the FileDescriptorProto (descriptor.proto's field numbers):
``[4, i]`` message i, ``[4, i, 2, j]`` its field j, ``[4, i, 3, k]`` a nested
message, ``[4, i, 4, k]`` / ``[5, i]`` enums, ``[6, i]`` service i and
``[6, i, 2, j]`` its method j.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

__all__ = ["comments_by_name"]

_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _METHOD = 2, 3, 4, 2


def comments_by_name(files: Iterable[Mapping[str, bytes]]) -> dict[str, str]:
    """``package.Message`` / ``package.Message.field`` / ``package.Service.Method`` -> comment."""
    out: dict[str, str] = {}
    for mapping in files:
        for raw in mapping.values():
            try:
                proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            except DecodeError:
                continue
            if proto.source_code_info.location:
                _collect(proto, out)
    return out


def _collect(proto: descriptor_pb2.FileDescriptorProto, out: dict[str, str]) -> None:
    names: dict[tuple[int, ...], str] = {}
    prefix = f"{proto.package}." if proto.package else ""

    def messages(
        items: Iterable[descriptor_pb2.DescriptorProto], path: tuple[int, ...], scope: str
    ) -> None:
        for i, message in enumerate(items):
            here = (*path, i)
            full = f"{scope}{message.name}"
            names[here] = full
            for j, field in enumerate(message.field):
                names[(*here, _FIELD, j)] = f"{full}.{field.name}"
            messages(message.nested_type, (*here, _NESTED), f"{full}.")
            for k, enum in enumerate(message.enum_type):
                names[(*here, _NESTED_ENUM, k)] = f"{full}.{enum.name}"

    messages(proto.message_type, (_MESSAGE,), prefix)
    for i, enum in enumerate(proto.enum_type):
        names[(_ENUM, i)] = f"{prefix}{enum.name}"
    for i, service in enumerate(proto.service):
        names[(_SERVICE, i)] = f"{prefix}{service.name}"
        for j, method in enumerate(service.method):
            names[(_SERVICE, i, _METHOD, j)] = f"{prefix}{service.name}.{method.name}"
    for location in proto.source_code_info.location:
        name = names.get(tuple(location.path))
        text = (location.leading_comments or location.trailing_comments).strip()
        if name is not None and text:
            out.setdefault(name, " ".join(line.strip() for line in text.splitlines()))
