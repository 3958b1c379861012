"""The standard gRPC health check (``grpc.health.v1.Health/Check``), one call, errors translated."""

from __future__ import annotations

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2

_CHECK = "/grpc.health.v1.Health/Check"


class HealthCheckError(Exception):
    """The check itself failed (unreachable, not implemented, timed out); names the cause."""


async def check_health(channel: grpc.aio.Channel, service: str, timeout: float) -> str:
    """The serving status name (``SERVING``, ``NOT_SERVING``, ...) the upstream reports."""
    call = channel.unary_unary(
        _CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    try:
        reply = await call(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout, wait_for_ready=False
        )
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            raise HealthCheckError(
                "the upstream does not serve grpc.health.v1.Health (turn health_check off)"
            ) from exc
        if code == grpc.StatusCode.NOT_FOUND:
            raise HealthCheckError(f"the upstream knows no health service {service!r}") from exc
        raise HealthCheckError(f"{code.name}: {exc.details() or 'no details'}") from exc
    status = reply.status
    names = health_pb2.HealthCheckResponse.ServingStatus
    # An open enum: a newer server may answer a number this client has no name for.
    return str(names.Name(status)) if status in names.values() else f"STATUS_{status}"
