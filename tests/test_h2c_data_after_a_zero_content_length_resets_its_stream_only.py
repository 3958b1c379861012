"""DATA on a request that said ``content-length: 0`` ends that stream alone.

RFC 9113 §8.1.1: a request whose DATA frames do not add up to its
``content-length`` is malformed, a stream error (RST_STREAM PROTOCOL_ERROR),
which h2 would make a connection error (GOAWAY, every call on the connection
gone). A ``content-length: 0`` request has no body for the handler (as over
HTTP/1.1), so the bridge may have answered it before its DATA comes: then the
stream is closed already (RST_STREAM NO_ERROR after the answer, RFC 9113
§8.1) and the DATA is dropped. Either way the call beside it completes and the
connection serves on.
"""

from __future__ import annotations

import struct

import orjson
import pytest
from h2.errors import ErrorCodes

from tests.helpers.h2c_client import H2cClient, h2c_connection
from tests.helpers.harness import RunningBridge

pytestmark = pytest.mark.both_edges

TEST = "/bridgetest.v1.TestService"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
ZERO = [*CONNECT_JSON, ("content-length", "0")]
BODY = b'{"fString": "x"}'


def slow_call(client: H2cClient) -> int:
    sleep = orjson.dumps({"duration": "1s", "tag": "in-flight"})
    return client.request(f"{TEST}/Sleep", CONNECT_JSON, sleep)


def data_frame(stream_id: int, payload: bytes, *, end: bool) -> bytes:
    """A DATA frame made by hand: h2 sends none on a stream the bridge has closed."""
    head = struct.pack(">I", len(payload))[1:] + bytes([0x0, 0x1 if end else 0x0])
    return head + struct.pack(">I", stream_id) + payload


async def serves_on(client: H2cClient, in_flight: int) -> None:
    done = await client.answer(in_flight)
    assert done.headers[":status"] == "200", bytes(done.body)
    assert orjson.loads(done.body)["completed"] is True
    again = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "ok"}')
    assert orjson.loads((await client.answer(again)).body)["fString"] == "ok"
    assert client.terminated is None and not client.closed


@pytest.mark.parametrize("end", [True, False], ids=["data-ends-it", "more-to-come"])
async def test_data_with_the_head_resets_its_stream_only(bridge: RunningBridge, end: bool) -> None:
    async with h2c_connection(bridge.server.proxy_port, validate=False) as client:
        in_flight = slow_call(client)
        bad = client.request(f"{TEST}/Echo", ZERO, BODY, end=end)
        state = await client.answer(bad)
        assert state.reset == ErrorCodes.PROTOCOL_ERROR, (state, client.terminated)
        assert ":status" not in state.headers
        await serves_on(client, in_flight)


async def test_data_after_the_answer_is_dropped_and_the_connection_serves_on(
    bridge: RunningBridge,
) -> None:
    async with h2c_connection(bridge.server.proxy_port, validate=False) as client:
        in_flight = slow_call(client)
        bad = client.request(f"{TEST}/Echo", ZERO, None, end=False)
        state = await client.answer(bad)
        assert state.headers[":status"] == "200"  # a body-less request, answered
        client.writer.write(data_frame(bad, BODY, end=True))
        await serves_on(client, in_flight)
