"""DATA and HEADERS frames on a stream closed by a reset are counted as PINGs are.

h2 answers each with RST_STREAM: a client that reset a stream and sent empty
DATA frames on it (9 bytes each) got 13 bytes back for each, without end (10,000
RST_STREAMs for 10,000 frames, no GOAWAY), where a PING flood is a GOAWAY after
``MAX_CONTROL_FRAMES``. A few frames in flight when a stream is reset are not.
"""

from __future__ import annotations

import struct

import orjson
import pytest

from grpc_bridge.edge import h2c
from tests.helpers.h2c_client import calmed, h2c_connection
from tests.helpers.harness import RunningBridge

pytestmark = pytest.mark.both_edges

ECHO = "/bridgetest.v1.TestService/Echo"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]


def empty_data(stream_id: int) -> bytes:
    """A DATA frame with no payload (h2 will not make one on a closed stream)."""
    return b"\x00\x00\x00\x00\x00" + struct.pack(">I", stream_id)


async def test_a_flood_of_frames_on_a_reset_stream_is_a_goaway(bridge: RunningBridge) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        stream = client.request(ECHO, CONNECT_JSON, b"", end=False)
        client.reset(stream)
        await client.pump(0.3)
        for _ in range(h2c.MAX_CONTROL_FRAMES // 100 + 5):
            if client.closed:
                break
            client.writer.write(empty_data(stream) * 100)
            await client.writer.drain()
            await client.pump(0.01)
        terminated = await calmed(client)
        assert b"frames on reset streams" in (terminated.additional_data or b"")


async def test_frames_in_flight_when_streams_are_reset_are_not_a_flood(
    bridge: RunningBridge,
) -> None:
    """100 streams reset each with 4 frames after the reset: the connection serves on."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        for _ in range(100):
            stream = client.request(ECHO, CONNECT_JSON, b"", end=False)
            client.reset(stream)
            client.writer.write(empty_data(stream) * 4)
        await client.writer.drain()
        await client.pump(0.3)
        stream = client.request(ECHO, CONNECT_JSON, b'{"fString": "ok"}')
        assert orjson.loads((await client.answer(stream)).body)["fString"] == "ok"
        assert client.terminated is None
