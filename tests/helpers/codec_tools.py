"""Private descriptor pools for codec tests: generated test protos that no other pool sees."""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message

SECRET_TYPE = "bridgetest.private.v1.Secret"


def _secret_file() -> descriptor_pb2.FileDescriptorProto:
    """A file no generated module registers anywhere: it lives only in the private pool."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="bridgetest/private/v1/secret.proto", package="bridgetest.private.v1", syntax="proto3"
    )
    message = proto.message_type.add(name="Secret")
    label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    message.field.add(
        name="code_name",
        number=1,
        label=label,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        json_name="codeName",
    )
    message.field.add(
        name="level",
        number=2,
        label=label,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        json_name="level",
    )
    return proto


def build_private_pool(*roots: FileDescriptor) -> DescriptorPool:
    """A fresh pool holding ``roots`` and their dependencies, plus the Secret file."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.AddSerializedFile(proto.SerializeToString())
        added.add(file.name)

    for root in roots:
        add(root)
    pool.AddSerializedFile(_secret_file().SerializeToString())
    return pool


def message_class(pool: DescriptorPool, full_name: str) -> type[Message]:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def serialized(message: Message) -> bytes:
    # Compared serialized: NaN != NaN would make message equality useless.
    return message.SerializeToString(deterministic=True)
