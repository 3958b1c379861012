"""An h2c header block is due within ``limits.body_read_timeout_s`` of its own first byte,
not of the first byte of an earlier block that was still unfinished when a read ended.

A client that sends request after request (HEADERS only: GETs) in writes that do
not fall on frame boundaries has a header block unfinished at the end of nearly
every read; each ends within milliseconds, yet the deadline armed for the first
one was never re-armed, and the connection got GOAWAY "header block not complete"
once the timeout had passed since that first block.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers.h2c_client import StreamState, h2c_connection
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.both_edges

#: Headers only, END_STREAM on them (answered 404: the answer is not the point).
GET_PATH = "/v1/nothing/here"


@pytest.fixture
async def quick_bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(upstream.target, limits={"body_read_timeout_s": 1})


async def test_requests_whose_writes_end_mid_header_block_are_each_due_from_their_start(
    quick_bridge: RunningBridge,
) -> None:
    """12 GETs over ~2.4 s, the client's writes each ending in the middle of the next
    request's HEADERS frame (each finished 0.2 s later): all answered, no GOAWAY."""
    async with h2c_connection(quick_bridge.server.proxy_port) as client:
        await client.pump(0.2)
        pending = b""
        streams = []
        for _ in range(12):
            if client.terminated is not None:
                break
            stream = client.conn.get_next_available_stream_id()
            client.streams[stream] = StreamState()
            fields = [
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "127.0.0.1"),
                (":path", GET_PATH),
            ]
            client.conn.send_headers(stream, fields, end_stream=True)
            frame = client.conn.data_to_send()
            half = len(frame) // 2
            client.writer.write(pending + frame[:half])  # ends inside this HEADERS frame
            pending = frame[half:]
            streams.append(stream)
            await client.writer.drain()
            await asyncio.sleep(0.2)
            await client.pump(0.01)
        assert client.terminated is None, client.terminated.additional_data
        client.writer.write(pending)
        for stream in streams:
            state = await client.answer(stream, 10)
            assert client.terminated is None, client.terminated.additional_data
            assert state.headers.get(":status") == "404", (stream, state.headers)
        assert client.terminated is None
