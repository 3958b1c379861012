"""An h2c request is held to what the same request over HTTP/1.1 is held to.

- a header block (a request's head) must be in whole within
  ``limits.body_read_timeout_s`` of its first byte, as an HTTP/1.1 head must,
  also while other streams keep the connection busy (the idle timer does not
  run then): GOAWAY naming the setting;
- a body trickled must be in whole within the same, as over HTTP/1.1 (408);
- a ``#fragment`` in the target is split off on both, as aiohttp's HTTP/1.1
  parser splits it: the same target is the same request.
"""

from __future__ import annotations

import asyncio
import struct

import orjson
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame

from tests.helpers.h2c_client import H2cClient, h2c_connection, trickle
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.raw_http import exchange, raw_request
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.both_edges

TEST = "/bridgetest.v1.TestService"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
#: ``:method: GET`` from HPACK's static table: a block begun without touching the
#: dynamic table.
GET = b"\x82"


@pytest.fixture
async def quick_bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(upstream.target, limits={"body_read_timeout_s": 1})


def busy(client: H2cClient) -> int:
    """A stream kept open meanwhile (so the connection is never idle)."""
    sleep = orjson.dumps({"duration": "30s", "tag": "busy"})
    return client.request(f"{TEST}/Sleep", CONNECT_JSON, sleep)


async def goaway_for_a_late_head(client: H2cClient) -> None:
    began = asyncio.get_running_loop().time()
    await client.until(lambda: client.closed, 30)
    held = asyncio.get_running_loop().time() - began
    assert client.terminated is not None
    assert client.terminated.error_code == ErrorCodes.PROTOCOL_ERROR
    assert b"limits.body_read_timeout_s" in (client.terminated.additional_data or b"")
    assert held < 15, f"an unfinished header block held the connection {held:.1f} s"


async def test_a_header_block_never_ended_is_due_as_a_head_is(quick_bridge: RunningBridge) -> None:
    """HEADERS without END_HEADERS, a CONTINUATION, then nothing more of the block."""
    async with h2c_connection(quick_bridge.server.proxy_port) as client:
        busy(client)
        await client.pump(0.5)
        client.writer.write(HeadersFrame(3, data=GET).serialize())
        client.writer.write(ContinuationFrame(3, data=b"").serialize())
        await goaway_for_a_late_head(client)


async def test_a_headers_frame_sent_in_part_is_due_as_a_head_is(
    quick_bridge: RunningBridge,
) -> None:
    """A HEADERS frame whose header announces 100 bytes, of which 10 come."""
    async with h2c_connection(quick_bridge.server.proxy_port) as client:
        busy(client)
        await client.pump(0.5)
        frame_head = struct.pack(">I", 100)[1:] + bytes([0x1, 0x4]) + struct.pack(">I", 3)
        client.writer.write(frame_head + GET * 10)
        await goaway_for_a_late_head(client)


async def test_a_header_block_in_time_is_served(quick_bridge: RunningBridge) -> None:
    """The deadline ends with the block: a connection that goes on is not cut later."""
    async with h2c_connection(quick_bridge.server.proxy_port) as client:
        for _ in range(3):
            stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "x"}')
            assert (await client.answer(stream)).headers[":status"] == "200"
            await asyncio.sleep(0.7)
        assert client.terminated is None


async def test_a_body_trickled_is_due_as_over_http11(
    upstream: RunningServer, make_bridge: MakeBridge
) -> None:
    """Each byte comes well within the timeout, the body as a whole does not: 408 with the
    message HTTP/1.1 gets, and only that stream ends."""
    bridge = await make_bridge(upstream.target, limits={"body_read_timeout_s": 1.5})
    body = b'{"fString": "trickled"}'
    async with h2c_connection(bridge.server.proxy_port) as client:
        stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b"", end=False)
        state = client.streams[stream]
        await trickle(client, stream, body)  # ~5.75 s in all, one byte every 0.25 s
        await client.answer(stream)
        assert state.headers[":status"] == "408", bytes(state.body)
        message = orjson.loads(state.body)["message"]
        assert message == "request body not received within 1.5 s (limits.body_read_timeout_s)"
        again = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "after"}')
        assert orjson.loads((await client.answer(again)).body)["fString"] == "after"


@pytest.mark.parametrize("target", [f"{TEST}/Echo#top", f"{TEST}/Echo?a=1#x?y"])
async def test_a_fragment_in_the_target_is_split_off_on_both(
    bridge: RunningBridge, target: str
) -> None:
    body = b'{"fString": "fragment"}'
    http11 = await exchange(
        bridge.server.proxy_port, raw_request(target, body, "Connect-Protocol-Version: 1")
    )
    assert not isinstance(http11, str), http11
    status, _, answer = http11
    async with h2c_connection(bridge.server.proxy_port) as client:
        state = await client.answer(client.request(target, CONNECT_JSON, body))
    assert (int(state.headers[":status"]), orjson.loads(state.body)) == (
        status,
        orjson.loads(answer),
    )
    assert status == 200
