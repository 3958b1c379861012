"""Immutable snapshots of what an upstream serves.

A :class:`Schema` is built once per discovery (or refresh) of one upstream and
never mutated: a refresh builds a new one off to the side and the app swaps the
reference, so a request always sees one consistent view.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message


class MethodKind(enum.Enum):
    # Values are go-grpc-prometheus' grpc_type label values.
    UNARY = "unary"
    CLIENT_STREAM = "client_stream"
    SERVER_STREAM = "server_stream"
    BIDI_STREAM = "bidi_stream"

    @classmethod
    def of(cls, method: MethodDescriptor) -> MethodKind:
        client, server = method.client_streaming, method.server_streaming
        if client and server:
            return cls.BIDI_STREAM
        if client:
            return cls.CLIENT_STREAM
        if server:
            return cls.SERVER_STREAM
        return cls.UNARY

    @property
    def client_streams(self) -> bool:
        return self in (MethodKind.CLIENT_STREAM, MethodKind.BIDI_STREAM)

    @property
    def server_streams(self) -> bool:
        return self in (MethodKind.SERVER_STREAM, MethodKind.BIDI_STREAM)


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """One RPC method, resolved against its upstream's private descriptor pool."""

    upstream: str
    descriptor: MethodDescriptor
    kind: MethodKind
    #: The gRPC path, ``/package.Service/Method``; also the generic HTTP route.
    path: str
    input_class: type[Message]
    output_class: type[Message]
    #: ``idempotency_level = NO_SIDE_EFFECTS``: GET is allowed on the generic route.
    no_side_effects: bool

    @property
    def service(self) -> str:
        return self.descriptor.containing_service.full_name

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def full_name(self) -> str:
        """``package.Service/Method``, the form routes and metrics use."""
        return f"{self.service}/{self.name}"

    @property
    def input_type(self) -> Descriptor:
        return self.descriptor.input_type

    @property
    def output_type(self) -> Descriptor:
        return self.descriptor.output_type


@dataclass(frozen=True, slots=True)
class Schema:
    """What one upstream serves, as found by one discovery run."""

    upstream: str
    #: Private to this upstream: never the process-wide default pool.
    pool: DescriptorPool
    services: tuple[ServiceDescriptor, ...]
    #: By gRPC path.
    methods: Mapping[str, MethodInfo]
    #: Where the descriptors came from, e.g. ``reflection v1`` or a file name.
    source: str
    #: Files as received (name → serialized FileDescriptorProto), for REST
    #: annotation lookups and introspection.
    files: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(s.full_name for s in self.services)
