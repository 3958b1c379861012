"""The invoker's per-method cache never hands out a response class from an older schema."""

from __future__ import annotations

from grpc_bridge.discovery.loader import discover
from grpc_bridge.discovery.registry import Schema
from grpc_bridge.upstream.reflection import ReflectionClient
from tests.helpers.native_tools import native
from tests.helpers.servers import RunningServer

ECHO = "/bridgetest.v1.TestService/Echo"


async def _schema(server: RunningServer) -> Schema:
    async with native(server.target) as invoker:
        client = await ReflectionClient.connect(invoker, upstream=server.name)
        return await discover(server.name, client)


async def test_a_refresh_is_not_undone_by_a_request_routed_before_it(
    upstream: RunningServer,
) -> None:
    old, new = (await _schema(upstream)).methods[ECHO], (await _schema(upstream)).methods[ECHO]
    assert old.output_class is not new.output_class  # two discoveries, two private pools
    async with native(upstream.target, pool_size=1) as invoker:
        invoker.forget()  # the refresh
        # A request that matched the old route table reaches the invoker late...
        stale = await invoker.unary(old, old.input_class(), metadata=[], timeout=5)
        # ...and later requests still get the new schema's class.
        fresh = await invoker.unary(new, new.input_class(), metadata=[], timeout=5)
    assert type(stale.response) is old.output_class
    assert type(fresh.response) is new.output_class
