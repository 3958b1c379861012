"""A malformed request's DATA frame gives its bytes back to the connection window once.

h2 returns the bytes of DATA on a stream it has closed (a malformed request's
stream is closed by its reset) to the connection window itself; the bridge
giving them back again credited the client twice, and a client that makes its
DATA malformed (a ``content-length`` it then exceeds) could make the bridge
hold more unread body bytes than the connection window it advertises.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2

from grpc_bridge.edge import h2c, h2c_flow
from grpc_bridge.edge.aiohttp_compat import unread_bytes
from grpc_bridge.edge.sites import FastSite, SniffSite
from tests.helpers.h2c_client import (
    H2cClient,
    StreamState,
    envelope,
    fill_windows,
    h2c_connection,
)
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.servers import start_server

pytestmark = pytest.mark.both_edges

TEST = "/bridgetest.v1.TestService"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
CONNECT_STREAM = [("content-type", "application/connect+proto"), ("connect-protocol-version", "1")]
FRAME = 16384


def h2c_connection_of(bridge: RunningBridge) -> h2c.H2cConnection:
    (site,) = bridge.server.proxy_runner.sites
    assert isinstance(site, FastSite | SniffSite)
    (conn,) = (site.fast.h2c if isinstance(site, FastSite) else site.h2c).connections
    return conn


def held(bridge: RunningBridge) -> int:
    return sum(unread_bytes(s.reader) for s in h2c_connection_of(bridge).streams.values())


def malformed_data(client: H2cClient) -> None:
    """A request that says one byte comes and sends a frame's worth, in one write (the
    bridge cannot answer it first): a stream error on its DATA frame."""
    stream = client.conn.get_next_available_stream_id()
    client.streams[stream] = StreamState()
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "127.0.0.1"),
        (":path", f"{TEST}/Echo"),
        *CONNECT_JSON,
        ("content-length", "1"),
    ]
    client.conn.send_headers(stream, fields)
    client.conn.send_data(stream, b"x" * FRAME)
    client.flush()


async def test_malformed_data_frames_do_not_widen_the_connection_window(
    make_bridge: MakeBridge,
) -> None:
    """Calls whose handlers read nothing hold half the window; 32 malformed DATA frames
    (512 KiB) after them: what the bridge holds plus what the client may still send
    stays within the connection window (it was 1.5 MiB)."""
    upstream = await start_server(options=[("grpc.max_concurrent_streams", 1)])
    try:
        bridge = await make_bridge(upstream.target)
        async with h2c_connection(bridge.server.proxy_port) as client:
            busy = orjson.dumps({"duration": "30s", "tag": "busy"})
            client.request(f"{TEST}/Sleep", CONNECT_JSON, busy)
            await asyncio.sleep(0.5)
            message = envelope(kitchen_pb2.StreamReply(text="b" * 4000).SerializeToString())
            holders = [
                client.request(f"{TEST}/ClientStream", CONNECT_STREAM, b"", end=False)
                for _ in range(8)
            ]
            await fill_windows(client, holders, message, wait=0.5)
            assert held(bridge) > 0
            for _ in range(32):
                if client.conn.outbound_flow_control_window < FRAME:
                    break
                malformed_data(client)
                await client.writer.drain()
                await client.pump(0.2)
            await client.pump(0.5)
            # All the client may still send, on streams whose handlers read nothing.
            more = [
                client.request(f"{TEST}/ClientStream", CONNECT_STREAM, b"", end=False)
                for _ in range(30)
            ]
            await fill_windows(client, holders + more, message, wait=0.5)
            granted = held(bridge) + client.conn.outbound_flow_control_window
            assert granted <= h2c_flow.CONNECTION_WINDOW, granted
            assert client.terminated is None
    finally:
        await upstream.stop()


async def test_malformed_data_frames_beyond_the_connection_window_do_not_stall_it(
    bridge: RunningBridge,
) -> None:
    """80 malformed DATA frames, 1.25 MiB in all (more than the window): their bytes go
    back, and a call on the same connection is answered."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "first"}')
        for _ in range(80):
            while client.conn.outbound_flow_control_window < FRAME:
                assert await client.pump(5), client.terminated
            malformed_data(client)
            await client.writer.drain()
        stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "ok"}')
        assert orjson.loads((await client.answer(stream)).body)["fString"] == "ok"
        assert client.terminated is None
