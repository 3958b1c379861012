"""Helpers of the native HTTP/2 client's tests: methods of the test service, a pool, messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from bridgetest.v1 import kitchen_pb2
from google.protobuf import duration_pb2
from google.protobuf.message import Message

from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.dial import ConnectionPlan
from grpc_bridge.upstream.invoker import Invoker
from grpc_bridge.upstream.pool import ConnectionPool
from grpc_bridge.upstream.resolver import parse_target, unresolved

SERVICE = kitchen_pb2.DESCRIPTOR.services_by_name["TestService"]


def method(name: str, output: type[Message]) -> MethodInfo:
    """``bridgetest.v1.TestService/<name>`` as discovery would describe it."""
    descriptor = SERVICE.methods_by_name[name]
    return MethodInfo(
        upstream="u",
        descriptor=descriptor,
        kind=MethodKind.of(descriptor),
        path=f"/{SERVICE.full_name}/{name}",
        input_class=Message,
        output_class=output,
        no_side_effects=False,
    )


@asynccontextmanager
async def native(target: str, **settings: Any) -> AsyncIterator[Invoker]:
    """An invoker on its own pool of native connections to ``target``."""
    upstream = Upstream(targets=[target], **settings)
    pool = ConnectionPool(upstream, retire_grace=1)
    pool.open(ConnectionPlan(unresolved([parse_target(target)])))
    try:
        yield Invoker(pool)
    finally:
        await pool.close()


def sleep_request(seconds: float, tag: str) -> kitchen_pb2.SleepRequest:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=seconds))
    return kitchen_pb2.SleepRequest(duration=duration, tag=tag)


def grpc_message(message: Message) -> bytes:
    """One length-prefixed, uncompressed gRPC message, as a server writes it."""
    payload = message.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload
