"""Frames that change nothing are counted: a flood of them is a GOAWAY ENHANCE_YOUR_CALM.

Each kind here makes h2 report no event, or one the bridge does nothing with,
yet each is parsed and handled at the bridge's cost: an ALTSVC frame (a server
ignores it), an unsolicited SETTINGS or PING ACK, a GOAWAY after the first, a
WINDOW_UPDATE on a finished stream, and an empty DATA frame without END_STREAM
on an open stream (CVE-2019-9518, "empty frames flood"; Envoy's
``max_consecutive_inbound_frames_with_empty_payload``: a second in a row is a
flood). A client sending up to 20,000 of any kind is answered with GOAWAY
ENHANCE_YOUR_CALM naming it. A client doing ordinary things (requests with
bodies in chunks, an empty DATA frame now and then, SETTINGS changes and their
ACKs, a late WINDOW_UPDATE for a finished stream) is served as ever.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import orjson
import pytest

from tests.helpers.h2c_client import H2cClient, flooded, h2c_connection
from tests.helpers.h2peer import ACK, DATA, GOAWAY, PING, SETTINGS, WINDOW_UPDATE, frame
from tests.helpers.harness import RunningBridge

pytestmark = pytest.mark.both_edges

ECHO = "/bridgetest.v1.TestService/Echo"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
ALTSVC = 0xA
FLOOD = 20_000
BATCH = 100


async def echo(client: H2cClient, text: str) -> int:
    stream = client.request(ECHO, CONNECT_JSON, orjson.dumps({"fString": text}))
    state = await client.answer(stream)
    assert state.headers.get(":status") == "200", (state, client.terminated)
    assert orjson.loads(state.body)["fString"] == text
    return stream


def altsvc(client: H2cClient) -> bytes:
    """ALTSVC (RFC 7838) on stream 0: an empty origin, then a field value."""
    return frame(ALTSVC, 0, 0, b"\x00\x00" + b'h2=":8443"')


def settings_ack(client: H2cClient) -> bytes:
    return frame(SETTINGS, ACK, 0)


def ping_ack(client: H2cClient) -> bytes:
    return frame(PING, ACK, 0, b"\x00" * 8)


def empty_data(client: H2cClient) -> bytes:
    """An empty DATA frame without END_STREAM, on a stream whose request is still coming."""
    stream = client.request(ECHO, CONNECT_JSON, None, end=False)
    return frame(DATA, 0, stream)


def goaway(client: H2cClient) -> bytes:
    """A GOAWAY (NO_ERROR), again and again, while a request is still coming."""
    client.request(ECHO, CONNECT_JSON, None, end=False)
    return frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0))


def window_update_on_a_finished_stream(client: H2cClient) -> bytes:
    return frame(WINDOW_UPDATE, 0, client.conn.highest_outbound_stream_id, struct.pack(">I", 1))


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (altsvc, b"too many ALTSVC frames"),
        (settings_ack, b"too many SETTINGS ACK frames"),
        (empty_data, b"too many empty DATA frames"),
        (ping_ack, b"too many PING ACK frames"),
        (goaway, b"too many GOAWAY frames"),
        (window_update_on_a_finished_stream, b"too many WINDOW_UPDATE frames"),
    ],
    ids=["altsvc", "settings-ack", "empty-data", "ping-ack", "goaway", "window-update-closed"],
)
async def test_a_flood_is_a_goaway_naming_its_frames(
    bridge: RunningBridge, make: Callable[[H2cClient], bytes], what: bytes
) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()
        await echo(client, "before")  # one stream opened, and finished
        batch = make(client) * BATCH
        await client.writer.drain()
        terminated = await flooded(client, batch, FLOOD // BATCH)
        assert what in (terminated.additional_data or b""), terminated
    async with h2c_connection(bridge.server.proxy_port) as other:
        await echo(other, "another connection")


async def test_an_ordinary_client_is_served(bridge: RunningBridge) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()
        for i in range(60):
            if i % 10 == 0:  # the bridge ACKs it; its own SETTINGS h2 ACKs for the client
                client.conn.update_settings({0x4: 65535 + i})  # SETTINGS_INITIAL_WINDOW_SIZE
                client.flush()
            body = orjson.dumps({"fString": f"call {i}"})
            stream = client.request(ECHO, CONNECT_JSON, None, end=False)
            client.send(stream, b"")  # one empty DATA frame, then the body in chunks
            client.send(stream, body[:5])
            client.send(stream, body[5:])
            client.send(stream, b"", end=True)  # the end in an empty DATA frame of its own
            state = await client.answer(stream)
            assert orjson.loads(state.body)["fString"] == f"call {i}", (state, client.terminated)
            client.writer.write(frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", 100)) * 3)
            await echo(client, f"after {i}")
        await client.pump(0.3)
        await echo(client, "last")
        assert client.terminated is None and not client.closed


async def test_streams_that_each_end_a_body_with_one_empty_frame_are_served(
    bridge: RunningBridge,
) -> None:
    """Some clients end a body with DATA(data), DATA(empty), DATA(empty, END_STREAM) (Bun's
    http2 did); two calls ending together put two flagless empty frames in a row."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()
        streams = [client.request(ECHO, CONNECT_JSON, None, end=False) for _ in range(4)]
        for n, stream in enumerate(streams):
            client.send(stream, orjson.dumps({"fString": f"call {n}"}))
        for stream in streams:
            client.send(stream, b"")
        for stream in streams:
            client.send(stream, b"", end=True)
        for n, stream in enumerate(streams):
            state = await client.answer(stream)
            assert orjson.loads(state.body)["fString"] == f"call {n}", state
        assert client.terminated is None
