"""Descriptor-set files and FileDescriptorProtos made from the generated test protos."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor


def fdp(file: FileDescriptor) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    return proto


def with_imports(*files: FileDescriptor) -> list[FileDescriptor]:
    """The files and everything they import, each once, imports first."""
    seen: dict[str, FileDescriptor] = {}

    def visit(file: FileDescriptor) -> None:
        if file.name not in seen:
            for dependency in file.dependencies:
                visit(dependency)
            seen[file.name] = file

    for file in files:
        visit(file)
    return list(seen.values())


def write_set(path: Path, *files: FileDescriptor) -> Path:
    path.write_bytes(
        descriptor_pb2.FileDescriptorSet(file=[fdp(f) for f in files]).SerializeToString()
    )
    return path
