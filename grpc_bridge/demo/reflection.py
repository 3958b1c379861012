"""Server reflection, v1 and v1alpha, for a grpc.aio server.

grpcio-reflection ships only the v1alpha proto and servicer, while current
clients (grpcurl, Postman, the bridge itself) ask for v1 first. The two
protocols are wire-identical (same messages, same field numbers), so v1 is
served by routing ``/grpc.reflection.v1.ServerReflection/ServerReflectionInfo``
to the same async servicer with the v1alpha message classes.

The default descriptor pool has no ``grpc/reflection/v1/reflection.proto``, so
a client that lists ``grpc.reflection.v1.ServerReflection`` and then asks to
describe it would get NOT_FOUND. Those requests are answered here with a v1
file derived from the v1alpha one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection as _v1alpha
from grpc_reflection.v1alpha import reflection_pb2

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1ALPHA_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
_SERVICES = {"v1": V1_SERVICE, "v1alpha": V1ALPHA_SERVICE}
_METHOD = "ServerReflectionInfo"

_V1_PACKAGE = "grpc.reflection.v1"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable_reflection(
    server: grpc.aio.Server,
    service_names: Sequence[str],
    versions: Sequence[str] = ("v1", "v1alpha"),
    *,
    pool: descriptor_pool.DescriptorPool | None = None,
) -> None:
    """Serve server reflection on ``server`` for ``service_names``.

    ``versions`` picks the protocols (``"v1"``, ``"v1alpha"``); the listed
    names gain the reflection services served. ``pool`` is where described
    files are looked up (the default pool, where generated code registers
    itself, when None). Call before ``server.start()``.
    """
    unknown = [v for v in versions if v not in _SERVICES]
    if unknown:
        raise ValueError(f"unknown reflection version(s) {unknown}; expected v1 and/or v1alpha")
    served = [_SERVICES[v] for v in dict.fromkeys(versions)]
    if not served:
        return
    names = list(dict.fromkeys([*service_names, *served]))
    servicer = _Servicer(_v1alpha.aio.ReflectionServicer(names, pool=pool), pool)
    for service in served:
        handlers = {
            _METHOD: grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        server.add_registered_method_handlers(service, handlers)


class _Servicer:
    """grpcio-reflection's async servicer, plus answers about the v1 file."""

    def __init__(self, delegate: Any, pool: descriptor_pool.DescriptorPool | None) -> None:
        self._delegate = delegate
        self._v1_file = None if _pool_has_v1(pool) else _v1_file_descriptor().SerializeToString()

    async def ServerReflectionInfo(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        async for request in request_iterator:
            if self._v1_file is not None and _asks_for_v1_file(request):
                yield reflection_pb2.ServerReflectionResponse(
                    original_request=request,
                    file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                        file_descriptor_proto=[self._v1_file]
                    ),
                )
                continue
            # One request at a time, so replies stay in request order.
            async for reply in self._delegate.ServerReflectionInfo(_once(request), context):
                yield reply


async def _once(request: Any) -> AsyncIterator[Any]:
    yield request


def _asks_for_v1_file(request: Any) -> bool:
    which = request.WhichOneof("message_request")
    if which == "file_by_filename":
        return bool(request.file_by_filename == _V1_FILE)
    if which == "file_containing_symbol":
        symbol: str = request.file_containing_symbol
        return symbol.startswith(_V1_PACKAGE + ".")
    return False


def _pool_has_v1(pool: descriptor_pool.DescriptorPool | None) -> bool:
    try:
        (pool or descriptor_pool.Default()).FindFileByName(_V1_FILE)
    except KeyError:
        return False
    return True


def _v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, rebuilt from the v1alpha file."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", f".{_V1_PACKAGE}."
    proto.name, proto.package = _V1_FILE, _V1_PACKAGE
    proto.options.Clear()
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_multiple_files = True
    proto.options.java_outer_classname = "ServerReflectionProto"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    messages = list(proto.message_type)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    return proto
