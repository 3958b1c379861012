"""A malformed request's DATA frame gives its bytes back to the connection window once.

h2 returns the bytes of DATA on a stream it has closed (a malformed request's
stream is closed by its reset) to the connection window itself; the bridge
giving them back again credited the client twice, and a client that makes its
DATA malformed (a ``content-length`` it then exceeds) could make the bridge
hold more unread body bytes than the connection window it advertises.
"""

from __future__ import annotations

import orjson
import pytest

from grpc_bridge.edge import h2c_flow
from tests.helpers.h2c_client import (
    H2cClient,
    StreamState,
    fill_windows,
    h2c_connection,
)
from tests.helpers.h2c_held_bodies import (
    CONNECT_JSON,
    MESSAGE,
    ONE_CALL_AT_A_TIME,
    TEST,
    held,
    keep_upstream_busy,
    waiting_calls,
)
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.servers import start_server

pytestmark = pytest.mark.both_edges

FRAME = 16384


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
    upstream = await start_server(options=ONE_CALL_AT_A_TIME)
    try:
        bridge = await make_bridge(upstream.target)
        async with h2c_connection(bridge.server.proxy_port) as client:
            await keep_upstream_busy(client)
            holders = waiting_calls(client, 8)
            await fill_windows(client, holders, MESSAGE, wait=0.5)
            assert held(bridge) > 0
            for _ in range(32):
                if client.conn.outbound_flow_control_window < FRAME:
                    break
                malformed_data(client)
                await client.writer.drain()
                await client.pump(0.2)
            await client.pump(0.5)
            # All the client may still send, on streams whose handlers read nothing.
            await fill_windows(client, holders + waiting_calls(client, 30), MESSAGE, wait=0.5)
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
