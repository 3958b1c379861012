"""What an h2c client can make the bridge hold through flow control, and for how long.

- a client that keeps its receive window shut has the stream it stalls reset
  (CANCEL) after ``streams.idle_timeout_s``, its call cancelled; one that reads
  nothing from the socket at all is cut off after as long;
- WINDOW_UPDATEs beyond what the DATA sent earns are a flood (GOAWAY
  ENHANCE_YOUR_CALM), while a client that updates both windows for every DATA
  frame it reads is never cut off;
- the request bodies one connection's handlers have not read are bounded by
  the connection window, however many streams carry them.
"""

from __future__ import annotations

import asyncio

import h2.events
import h2.settings
import orjson
import pytest
from bridgetest.v1 import kitchen_pb2
from h2.errors import ErrorCodes

from grpc_bridge.edge import h2c, h2c_flow
from tests.helpers.h2c_client import (
    H2cClient,
    calmed,
    envelope,
    fill_windows,
    h2c_connection,
    send_body,
)
from tests.helpers.h2c_held_bodies import (
    MESSAGE,
    ONE_CALL_AT_A_TIME,
    h2c_connections,
    held,
    keep_upstream_busy,
    waiting_calls,
)
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.load import wait_until
from tests.helpers.servers import RunningServer, start_server

pytestmark = pytest.mark.both_edges

TEST = "/bridgetest.v1.TestService"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
CONNECT_STREAM = [("content-type", "application/connect+proto"), ("connect-protocol-version", "1")]
LARGEST_WINDOW = 2**31 - 1


def server_stream(tag: str, count: int) -> bytes:
    return envelope(kitchen_pb2.StreamRequest(count=count, tag=tag).SerializeToString())


async def echo_works(bridge: RunningBridge) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "ok"}')
        assert orjson.loads((await client.answer(stream)).body)["fString"] == "ok"


@pytest.fixture
async def stalling_bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(upstream.target, streams={"idle_timeout_s": 1})


async def test_an_answer_the_client_never_opens_its_window_for_is_reset_after_the_stall_bound(
    stalling_bridge: RunningBridge,
) -> None:
    """A unary answer larger than the window: its first 65,535 bytes go, then nothing
    can; after ``streams.idle_timeout_s`` the stream is reset and the bridge holds
    nothing of it (before, it held the stream until the connection closed)."""
    bridge = stalling_bridge
    async with h2c_connection(bridge.server.proxy_port, auto_window=False) as client:
        stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b"", end=False)
        await send_body(client, stream, orjson.dumps({"fString": "s" * 200_000}))
        state = await client.answer(stream, 30)
        assert state.reset == ErrorCodes.CANCEL, (state.headers, len(state.body))
        assert len(state.body) == h2c_flow.STREAM_WINDOW
        (conn,) = h2c_connections(bridge)
        await wait_until(lambda: not conn.streams, 10, "the stalled stream's end")
        assert client.terminated is None
    await echo_works(bridge)


async def test_a_stream_stalled_by_a_shut_window_cancels_its_upstream_call(
    stalling_bridge: RunningBridge, upstream: RunningServer
) -> None:
    async with h2c_connection(stalling_bridge.server.proxy_port, auto_window=False) as client:
        stream = client.request(
            f"{TEST}/ServerStream", CONNECT_STREAM, server_stream("shut-window", 1_000_000)
        )
        state = await client.answer(stream, 30)
        assert state.reset == ErrorCodes.CANCEL
        await upstream.test.wait_for("cancelled", "shut-window", within=20)


async def test_a_client_that_reads_nothing_from_its_socket_is_cut_off_after_the_stall_bound(
    stalling_bridge: RunningBridge,
) -> None:
    """Windows opened wide, then not a byte read: the bridge's socket backs up, and after
    ``streams.idle_timeout_s`` the connection is aborted (no GOAWAY could reach it)."""
    bridge = stalling_bridge
    client = await H2cClient.open(bridge.server.proxy_port, preface=False)
    try:
        client.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: LARGEST_WINDOW},
        )
        client.conn.initiate_connection()
        client.conn.increment_flow_control_window(LARGEST_WINDOW - h2c_flow.STREAM_WINDOW)
        request = kitchen_pb2.StreamRequest(count=5000, tag="deaf-" + "t" * 8000)
        client.request(
            f"{TEST}/ServerStream", CONNECT_STREAM, envelope(request.SerializeToString())
        )
        await wait_until(lambda: bool(h2c_connections(bridge)), 10, "the connection")
        await wait_until(lambda: not h2c_connections(bridge), 60, "the deaf client cut off")
    finally:
        client.writer.transport.abort()
    await echo_works(bridge)


async def test_a_flood_of_window_updates_is_a_goaway(bridge: RunningBridge) -> None:
    """Each connection WINDOW_UPDATE wakes every stream waiting to send; those the DATA
    sent has not earned count as PINGs do."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()
        for i in range(h2c.MAX_CONTROL_FRAMES + 100):
            if client.terminated is not None:
                break
            client.conn.increment_flow_control_window(1)
            client.flush()
            if i % 100 == 0:
                await client.writer.drain()
                await client.pump(0.01)
        terminated = await calmed(client)
        assert b"WINDOW_UPDATE" in (terminated.additional_data or b"")
    await echo_works(bridge)


async def test_a_client_updating_both_windows_for_every_frame_it_reads_is_never_cut_off(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    """The most WINDOW_UPDATEs a reading client sends: one for the stream and one for the
    connection per DATA frame, ~12 MB of answer (Envoy's ratio allows 20 a frame)."""
    async with h2c_connection(bridge.server.proxy_port, auto_window=False) as client:
        stream = client.request(
            f"{TEST}/ServerStream", CONNECT_STREAM, server_stream("r" * 4000, 3000)
        )
        state = client.streams[stream]
        seen = 0
        async with asyncio.timeout(120):
            while not (state.ended or state.reset is not None or client.closed):
                await client.pump(10)
                for event in client.events[seen:]:
                    if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                        size = event.flow_controlled_length
                        client.conn.increment_flow_control_window(size, stream_id=stream)
                        client.conn.increment_flow_control_window(size)
                seen = len(client.events)
                client.flush()
        assert client.terminated is None and state.reset is None
        assert state.ended and len(state.body) > 12_000_000


async def test_bodies_a_connections_handlers_have_not_read_are_held_within_its_window(
    make_bridge: MakeBridge,
) -> None:
    """An upstream that takes one call at a time, busy: 30 client streams wait for it, their
    handlers reading nothing, and the client sends what the bridge lets it. A stream's
    window each (30 x 64 KiB and a body buffer, ~3.8 MiB) was the bound; now the
    connection's window is."""
    upstream = await start_server(options=ONE_CALL_AT_A_TIME)
    try:
        bridge = await make_bridge(upstream.target)
        async with h2c_connection(bridge.server.proxy_port) as client:
            await keep_upstream_busy(client)
            await fill_windows(client, waiting_calls(client, 30), MESSAGE)
            unread = held(bridge)
            assert h2c_flow.CONNECTION_WINDOW // 2 < unread <= h2c_flow.CONNECTION_WINDOW, unread
            assert client.terminated is None
    finally:
        await upstream.stop()
