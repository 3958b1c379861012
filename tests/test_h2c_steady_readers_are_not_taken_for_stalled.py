"""The h2c stall bound (``streams.idle_timeout_s``) ends sends that make no progress, not
long ones: an answer a client reads steadily, however long it takes in all, is sent whole,
while one it opens its window for a byte at a time is reset as a shut window is.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from h2.errors import ErrorCodes

from tests.helpers.h2c_client import H2cClient, h2c_connection, send_body
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.both_edges

ECHO = "/bridgetest.v1.TestService/Echo"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
STALL_S = 2


@pytest.fixture
async def stalling_bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(upstream.target, streams={"idle_timeout_s": STALL_S})


async def read_paced(client: H2cClient, stream: int, step: int, every: float) -> None:
    """Opens ``stream``'s window (and the connection's) by ``step`` bytes every ``every``
    seconds until the answer ends or is reset."""
    state = client.streams[stream]

    def over() -> bool:
        return state.ended or state.reset is not None or client.closed

    while not over():
        await client.pump(every)
        if over():
            return
        client.conn.increment_flow_control_window(step, stream_id=stream)
        client.conn.increment_flow_control_window(step)
        client.flush()
        await asyncio.sleep(every)


async def test_an_answer_read_steadily_for_longer_than_the_stall_bound_is_sent_whole(
    stalling_bridge: RunningBridge,
) -> None:
    """A 900 kB unary answer, its window opened 32 KiB at a time every 0.1 s: ~3 s in all,
    past the 2 s bound, each wait a tenth of it (it was reset with CANCEL after 2 s)."""
    body = orjson.dumps({"fString": "s" * 900_000})
    async with h2c_connection(stalling_bridge.server.proxy_port, auto_window=False) as client:
        stream = client.request(ECHO, CONNECT_JSON, b"", end=False)
        await send_body(client, stream, body, wait=0.2)
        await asyncio.wait_for(read_paced(client, stream, 32 * 1024, 0.1), 60)
        state = client.streams[stream]
        assert state.reset is None and state.ended, (state.reset, len(state.body))
        assert orjson.loads(state.body)["fString"] == "s" * 900_000


async def test_an_answer_whose_window_opens_a_byte_at_a_time_is_reset_after_the_bound(
    stalling_bridge: RunningBridge,
) -> None:
    """A slow read: one byte of window every 0.2 s keeps a send from ever waiting the
    whole bound at once, and is still a stall."""
    body = orjson.dumps({"fString": "s" * 100_000})
    async with h2c_connection(stalling_bridge.server.proxy_port, auto_window=False) as client:
        stream = client.request(ECHO, CONNECT_JSON, b"", end=False)
        await send_body(client, stream, body, wait=0.2)
        await asyncio.wait_for(read_paced(client, stream, 1, 0.2), 30)
        assert client.streams[stream].reset == ErrorCodes.CANCEL
