"""Server reflection's methods, routed to the bridge's own answers.

Discovery drops the reflection services (discovery/filters.py): they are how
the bridge learns an API, not part of it. Clients that learn the API the same
way (``buf curl --reflect``, grpcurl through a gRPC-Web or Connect hop) need
them through the bridge, so the route table also carries
``grpc.reflection.v1.ServerReflection/ServerReflectionInfo`` and its
``v1alpha`` twin, listed nowhere (``/v1/services``, OpenAPI), on the local
upstream :data:`~grpc_bridge.upstream.local_reflection.LOCAL_UPSTREAM`: the
bridge answers them from what it exposes, every upstream merged and filtered
(:func:`exposed_index`), whatever each upstream's own reflection would say.
The binary protocols hand the local upstream bytes (codec/raw.py); the JSON
ones use these messages.

The messages are grpcio-reflection's v1alpha classes, with a v1 twin of the
same file built here (the two are wire-identical; only the package differs),
in a pool of their own, so that logs and metrics name the version called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2

from grpc_bridge.codec.json_codec import JsonOptions, MessageCodec
from grpc_bridge.discovery.reflection_index import ReflectionIndex
from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.routing.plan import MethodPlan, UpstreamLimits
from grpc_bridge.routing.table import RouteTable
from grpc_bridge.upstream.local_reflection import LOCAL_UPSTREAM

_VERSIONS = ("v1", "v1alpha")


def _methods() -> tuple[descriptor_pool.DescriptorPool, list[MethodInfo]]:
    pool = descriptor_pool.DescriptorPool()
    source = descriptor_pb2.FileDescriptorProto.FromString(reflection_pb2.DESCRIPTOR.serialized_pb)
    methods = []
    for version in _VERSIONS:
        package = f"grpc.reflection.{version}"
        file = descriptor_pb2.FileDescriptorProto()
        file.CopyFrom(source)
        file.name = f"grpc/reflection/{version}/reflection.proto"
        file.package = package
        for message in file.message_type:
            for field in message.field:
                if field.type_name.startswith(".grpc.reflection.v1alpha."):
                    field.type_name = field.type_name.replace(".v1alpha.", f".{version}.")
        for method in file.service[0].method:
            method.input_type = method.input_type.replace(".v1alpha.", f".{version}.")
            method.output_type = method.output_type.replace(".v1alpha.", f".{version}.")
        pool.AddSerializedFile(file.SerializeToString())
        service = pool.FindServiceByName(f"{package}.ServerReflection")
        descriptor = service.methods_by_name["ServerReflectionInfo"]
        methods.append(
            MethodInfo(
                upstream="",
                descriptor=descriptor,
                kind=MethodKind.BIDI_STREAM,
                path=f"/{package}.ServerReflection/ServerReflectionInfo",
                input_class=message_factory.GetMessageClass(descriptor.input_type),
                output_class=message_factory.GetMessageClass(descriptor.output_type),
                no_side_effects=False,
            )
        )
    return pool, methods


_POOL, _METHODS = _methods()


def reflection_plans(options: JsonOptions, limits: UpstreamLimits) -> list[MethodPlan]:
    """The reflection methods' plans, on the local upstream."""
    plans = []
    for method in _METHODS:
        info = dataclasses.replace(method, upstream=LOCAL_UPSTREAM)
        request = MessageCodec(info.input_class, _POOL, options)
        response = MessageCodec(info.output_class, _POOL, options)
        plans.append(MethodPlan(info, request, response, _POOL, limits))
    return plans


async def exposed_index(
    table: RouteTable, received: Mapping[DescriptorPool, Mapping[str, bytes]]
) -> ReflectionIndex:
    """What reflection answers for ``table``: the services it lists, the first upstream's
    copy of each (the one whose methods it routes); ``received``: each upstream pool's
    files as sent (``Schema.files``). Built in slices, other calls served between them."""
    services = [plan.info.descriptor.containing_service for plan in table.plans]
    return await ReflectionIndex.build_in_slices(services, received)
