"""A malformed h2c request resets its own stream (RFC 9113 §8.1.1), never the connection.

h2 checks every request's fields (§8.2, §8.3) and its ``content-length``, and
would end the whole connection with GOAWAY on any of them: every other call
on it would go too. Here a call in flight on the same connection completes
while the malformed one gets RST_STREAM PROTOCOL_ERROR.
"""

from __future__ import annotations

import h2.connection
import h2.stream
import orjson
import pytest
from h2.errors import ErrorCodes

from grpc_bridge.edge import h2c
from tests.helpers.h2c_client import H2cClient, calmed, h2c_connection
from tests.helpers.harness import RunningBridge

pytestmark = pytest.mark.both_edges

TEST = "/bridgetest.v1.TestService"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
BODY = b'{"fString": "x"}'


def slow_call(client: H2cClient) -> int:
    """A call that takes a second, begun before the malformed one."""
    sleep = orjson.dumps({"duration": "1s", "tag": "in-flight"})
    return client.request(f"{TEST}/Sleep", CONNECT_JSON, sleep)


async def in_flight_completes(client: H2cClient, stream: int) -> None:
    state = await client.answer(stream)
    assert state.headers[":status"] == "200", bytes(state.body)
    assert orjson.loads(state.body)["completed"] is True
    assert client.terminated is None and not client.closed


@pytest.mark.parametrize(
    "fields",
    [
        [("X-Upper-Case", "1")],  # §8.2: field names are lower case
        [("connection", "keep-alive")],  # §8.2.2: connection-specific
        [("te", "gzip")],  # §8.2.2: te is "trailers" or nothing
        [("x-space", " padded ")],  # §8.2.1: no surrounding whitespace
        [("content-length", "abc")],  # RFC 9110 §8.6: 1*DIGIT
        [("content-length", "5"), ("content-length", "6")],  # two lengths
    ],
    ids=["upper-case", "connection", "te", "whitespace", "length-not-a-number", "two-lengths"],
)
async def test_a_malformed_header_resets_its_stream_and_the_call_beside_it_completes(
    bridge: RunningBridge, fields: list[tuple[str, str]]
) -> None:
    async with h2c_connection(bridge.server.proxy_port, validate=False) as client:
        in_flight = slow_call(client)
        bad = client.request(f"{TEST}/Echo", [*CONNECT_JSON, *fields], BODY)
        state = await client.answer(bad)
        assert state.reset == ErrorCodes.PROTOCOL_ERROR
        assert ":status" not in state.headers
        await in_flight_completes(client, in_flight)
        # ... and the connection serves new calls.
        again = client.request(f"{TEST}/Echo", CONNECT_JSON, BODY)
        assert (await client.answer(again)).headers[":status"] == "200"


@pytest.mark.parametrize("sent", [BODY + b" ", BODY[:-1]], ids=["longer", "shorter"])
async def test_a_body_that_is_not_its_content_length_resets_its_stream_only(
    bridge: RunningBridge, sent: bytes
) -> None:
    """§8.1.1: DATA that do not add up to ``content-length`` make the request malformed
    (the bridge has begun serving it: its call is cancelled with the stream)."""
    async with h2c_connection(bridge.server.proxy_port, validate=False) as client:
        in_flight = slow_call(client)
        length = [("content-length", str(len(BODY)))]
        bad = client.request(f"{TEST}/Echo", [*CONNECT_JSON, *length], sent)
        state = await client.answer(bad)
        assert state.reset == ErrorCodes.PROTOCOL_ERROR, (state.headers, bytes(state.body))
        await in_flight_completes(client, in_flight)


async def test_a_flood_of_malformed_requests_is_a_goaway(bridge: RunningBridge) -> None:
    """Each is decoded, checked and reset, as a reset stream is set up and torn down: they
    count with resets (500 in 10 s), or a connection could send them without end."""
    async with h2c_connection(bridge.server.proxy_port, validate=False) as client:
        await client.pump()
        for i in range(h2c.MAX_RESETS + 50):
            if client.terminated is not None:
                break
            client.request(f"{TEST}/Echo", [*CONNECT_JSON, ("Bad-Name", "x")], None)
            if i % 50 == 0:
                await client.writer.drain()
                await client.pump(0.01)
        await calmed(client)


async def test_the_hook_that_makes_them_stream_errors_is_still_there() -> None:
    """h2c_malformed.py wraps each stream h2 makes in ``_begin_new_stream``: if h2 renames
    it, malformed requests would silently be connection errors again."""
    assert callable(getattr(h2.connection.H2Connection, "_begin_new_stream", None))
    assert callable(getattr(h2.stream.H2Stream, "receive_headers", None))
    assert callable(getattr(h2.stream.H2Stream, "receive_data", None))
