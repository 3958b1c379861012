"""Request bodies an h2c connection makes the bridge hold unread: calls that wait for a busy
upstream (one that takes one call at a time, busy with a 30 s Sleep) read nothing."""

from __future__ import annotations

import asyncio

import orjson
from bridgetest.v1 import kitchen_pb2

from grpc_bridge.edge import h2c
from grpc_bridge.edge.aiohttp_compat import unread_bytes
from grpc_bridge.edge.sites import FastSite, SniffSite
from tests.helpers.h2c_client import H2cClient, envelope
from tests.helpers.harness import RunningBridge

TEST = "/bridgetest.v1.TestService"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
CONNECT_STREAM = [("content-type", "application/connect+proto"), ("connect-protocol-version", "1")]
#: Give to ``start_server(options=...)``: the upstream takes one call at a time.
ONE_CALL_AT_A_TIME = [("grpc.max_concurrent_streams", 1)]
#: A client-stream message (a Connect envelope of ~4 kB).
MESSAGE = envelope(kitchen_pb2.StreamReply(text="b" * 4000).SerializeToString())


def h2c_connections(bridge: RunningBridge) -> set[h2c.H2cConnection]:
    (site,) = bridge.server.proxy_runner.sites
    assert isinstance(site, FastSite | SniffSite)
    return (site.fast.h2c if isinstance(site, FastSite) else site.h2c).connections


def held(bridge: RunningBridge) -> int:
    """Body bytes the streams of the bridge's one h2c connection hold unread."""
    (conn,) = h2c_connections(bridge)
    return sum(unread_bytes(s.reader) for s in conn.streams.values())


async def keep_upstream_busy(client: H2cClient) -> None:
    """The one call the upstream takes, for 30 s: the calls after it wait, reading nothing."""
    client.request(f"{TEST}/Sleep", CONNECT_JSON, orjson.dumps({"duration": "30s", "tag": "busy"}))
    await asyncio.sleep(0.5)


def waiting_calls(client: H2cClient, count: int) -> list[int]:
    """``count`` client-stream calls, their bodies open (send :data:`MESSAGE` on them)."""
    return [
        client.request(f"{TEST}/ClientStream", CONNECT_STREAM, b"", end=False) for _ in range(count)
    ]
