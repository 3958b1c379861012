"""PRIORITY frames and frames of unknown types are counted as PINGs are.

Neither is answered, but each costs the bridge a frame parsed and an event
handled (RFC 9113 §5.5: a frame of an unknown type must be ignored, so h2
reports it and moves on), and a client can send them as fast as its link
allows. Envoy bounds PRIORITY frames by the streams opened
(``max_inbound_priority_frames_per_stream``, 100, then GOAWAY
ENHANCE_YOUR_CALM); the bridge counts those beyond that, and every frame of an
unknown type beyond the same allowance, as PINGs are (``MAX_CONTROL_FRAMES``
in 10 s). A client that sends a few, as browsers do, is served as ever.
"""

from __future__ import annotations

import struct

import orjson
import pytest

from grpc_bridge.edge import h2c
from tests.helpers.h2c_client import H2cClient, flooded, h2c_connection
from tests.helpers.h2peer import PRIORITY, frame
from tests.helpers.harness import RunningBridge

pytestmark = pytest.mark.both_edges

ECHO = "/bridgetest.v1.TestService/Echo"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
#: A type RFC 9113 does not define (h2 reads it as an extension frame).
UNKNOWN_TYPE = 0xFA


def priority(stream_id: int) -> bytes:
    """PRIORITY (type 0x2): stream ``stream_id`` depends on stream 0, weight 16."""
    return frame(PRIORITY, 0, stream_id, struct.pack(">IB", 0, 15))


def unknown(stream_id: int) -> bytes:
    return frame(UNKNOWN_TYPE, 0, stream_id, b"ext")


async def echo(client: H2cClient, text: str) -> None:
    stream = client.request(ECHO, CONNECT_JSON, orjson.dumps({"fString": text}))
    state = await client.answer(stream)
    assert state.headers.get(":status") == "200", (state, client.terminated)
    assert orjson.loads(state.body)["fString"] == text


@pytest.mark.parametrize(
    ("make", "what"),
    [(priority, b"PRIORITY frames"), (unknown, b"frames of unknown types")],
    ids=["priority", "unknown-type"],
)
async def test_a_flood_is_a_goaway(bridge: RunningBridge, make: object, what: bytes) -> None:
    assert callable(make)
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()
        await echo(client, "before")  # one stream opened: its allowance, then the flood
        batch = b"".join(make(1 + 2 * (i % 50)) for i in range(100))
        terminated = await flooded(client, batch, h2c.MAX_CONTROL_FRAMES // 100 + 5)
        assert what in (terminated.additional_data or b"")
    async with h2c_connection(bridge.server.proxy_port) as other:
        await echo(other, "another connection")


async def test_a_client_sending_some_is_served_as_ever(bridge: RunningBridge) -> None:
    """A browser's worth: HEADERS with a priority and PRIORITY frames for each of 200
    streams, and a few frames of a type the bridge does not know."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()
        for i in range(200):
            stream = client.conn.get_next_available_stream_id()
            client.writer.write(priority(stream) + unknown(0))
            client.conn.prioritize(stream, weight=32)
            await echo(client, f"call {i}")
            client.writer.write(priority(stream) * 3)
        await echo(client, "last")
        assert client.terminated is None and not client.closed
