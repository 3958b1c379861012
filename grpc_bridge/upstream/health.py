"""The standard gRPC health check (``grpc.health.v1.Health/Check``), one call, errors translated.

Asked through the upstream's :class:`~grpc_bridge.upstream.api.CallInvoker`,
on the connections the traffic uses: the answer is about them.
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2

from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.api import CallInvoker

_CHECK = MethodInfo(
    upstream="",
    descriptor=health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"],
    kind=MethodKind.UNARY,
    path="/grpc.health.v1.Health/Check",
    input_class=health_pb2.HealthCheckRequest,
    output_class=health_pb2.HealthCheckResponse,
    no_side_effects=True,
)


class HealthCheckError(Exception):
    """The check itself failed (unreachable, not implemented, timed out); names the cause."""


async def check_health(invoker: CallInvoker, service: str, timeout: float) -> str:
    """The serving status name (``SERVING``, ``NOT_SERVING``, ...) the upstream reports."""
    try:
        result = await invoker.unary(
            _CHECK, health_pb2.HealthCheckRequest(service=service), metadata=[], timeout=timeout
        )
    except UpstreamError as exc:
        if exc.code == Code.UNIMPLEMENTED:
            raise HealthCheckError(
                "the upstream does not serve grpc.health.v1.Health (turn health_check off)"
            ) from exc
        if exc.code == Code.NOT_FOUND:
            raise HealthCheckError(f"the upstream knows no health service {service!r}") from exc
        raise HealthCheckError(f"{code_name(exc.code)}: {exc.message or 'no details'}") from exc
    reply = result.response
    assert isinstance(reply, health_pb2.HealthCheckResponse)
    status = reply.status
    names = health_pb2.HealthCheckResponse.ServingStatus
    # An open enum: a newer server may answer a number this client has no name for.
    return str(names.Name(status)) if status in names.values() else f"STATUS_{status}"
