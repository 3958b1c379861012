"""What one h2c connection whose client stopped reading makes the bridge hold, in all.

Each call's upstream stream may hold its budget (``stream_buffer_bytes``:
messages waiting for the client plus the window the upstream may still use);
over HTTP/1.1 a connection carries one call at a time, but an HTTP/2 client
opens up to 100 on one connection and reads none of them. The calls of one
connection now share one budget: once they hold it together, their upstreams
are paused by flow control (each call keeps a small window so that it can
always finish the message its reader waits for), and other connections are
not held back. What the upstream could send is what the bridge holds: the
client read at most its connection window (64 KiB) of it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2

from tests.helpers.h2c_client import envelope, h2c_connection
from tests.helpers.h2c_held_bodies import h2c_connections
from tests.helpers.h2peer import Exchange, HostilePeer, descriptor_set
from tests.helpers.harness import MakeBridge
from tests.helpers.load import wait_until
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.both_edges

TEST = "/bridgetest.v1.TestService"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
CONNECT_STREAM = [("content-type", "application/connect+proto"), ("connect-protocol-version", "1")]
STREAMS = 20
MESSAGE = 16 * 1024
BUFFER = 4 * 1024 * 1024  # stream_buffer_bytes (the default)
#: What each stalled call may hold beyond the shared budget: its small window, the
#: message being assembled, the batch its writer waits to send, socket buffers.
PER_STREAM = 256 * 1024


async def settled(read: object, *, quiet: float = 1.5, within: float = 60.0) -> int:
    """``read()`` once it stopped changing for ``quiet`` seconds."""
    assert callable(read)
    loop = asyncio.get_running_loop()
    last, since = read(), loop.time()
    async with asyncio.timeout(within):
        while loop.time() - since < quiet:
            await asyncio.sleep(0.1)
            now = read()
            if now != last:
                last, since = now, loop.time()
    return int(last)


async def test_stalled_streams_of_one_connection_hold_one_budget_between_them(
    upstream: RunningServer, make_bridge: MakeBridge
) -> None:
    bridge = await make_bridge(upstream.target)
    tags = [f"stalled-{n}-" + "x" * (MESSAGE - 100) for n in range(STREAMS)]
    async with h2c_connection(bridge.server.proxy_port, auto_window=False) as client:
        await client.pump()  # the bridge's SETTINGS and connection window
        for tag in tags:
            request = kitchen_pb2.StreamRequest(count=100_000, tag=tag)
            client.request(
                f"{TEST}/ServerStream", CONNECT_STREAM, envelope(request.SerializeToString())
            )
        sent = upstream.test.sent

        def total() -> int:
            return sum(sent.get(tag, 0) for tag in tags)

        messages = await settled(total)
        (conn,) = h2c_connections(bridge)
        assert all(sent.get(tag, 0) > 0 for tag in tags), [sent.get(t) for t in tags]
        held = messages * MESSAGE
        # Before: each stream's own budget, 20 x 4 MiB = 80 MiB.
        assert held < BUFFER + STREAMS * PER_STREAM, (held, [sent.get(t) for t in tags])
        # Another connection is served at once, on the same upstream.
        async with h2c_connection(bridge.server.proxy_port) as other:
            stream = other.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "other"}')
            async with asyncio.timeout(5):
                state = await other.answer(stream)
            assert orjson.loads(state.body)["fString"] == "other"
            # ... and a server stream on it is not held back by the stalled one.
            request = kitchen_pb2.StreamRequest(count=200, tag="reading-" + "y" * (MESSAGE - 100))
            stream = other.request(
                f"{TEST}/ServerStream", CONNECT_STREAM, envelope(request.SerializeToString())
            )
            async with asyncio.timeout(30):
                state = await other.answer(stream)
            assert state.ended and len(state.body) > 200 * (MESSAGE - 100)
        assert total() == messages  # the stalled ones were not read meanwhile
        assert client.terminated is None
        # Reset, the calls are cancelled and what they held is counted no more.
        for stream in list(client.streams):
            client.reset(stream)
        await wait_until(lambda: conn.answers.held == 0, 10, "the budget emptied")


BIG = "y" * 9000


def stream_request(tag: str, count: int, **fields: int) -> bytes:
    request = kitchen_pb2.StreamRequest(count=count, tag=tag, **fields)
    return envelope(request.SerializeToString())


async def test_what_finished_calls_held_is_counted_no_more(
    upstream: RunningServer, make_bridge: MakeBridge
) -> None:
    """Unary calls, server streams read to their end, failed ones: once each is over the
    connection's budget is empty again, else it would fill up call by call."""
    bridge = await make_bridge(upstream.target)
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()
        (conn,) = h2c_connections(bridge)
        for round_ in range(3):
            streams = [
                client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "x"}'),
                client.request(
                    f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "' + b"y" * 9000 + b'"}'
                ),
                client.request(f"{TEST}/ServerStream", CONNECT_STREAM, stream_request("s", 300)),
                client.request(
                    f"{TEST}/ServerStream",
                    CONNECT_STREAM,
                    stream_request("f" * 12000, 50, fail_code=9, fail_after=40),
                ),
            ]
            for stream in streams:
                state = await client.answer(stream)
                assert state.headers.get(":status") == "200", (round_, state)
            await wait_until(lambda: conn.answers.held == 0, 10, "the budget emptied")
        assert client.terminated is None and not client.closed


@pytest.mark.parametrize(
    "ending",
    [
        pytest.param({"fail_code": 9, "fail_after": 200}, id="failed-by-the-upstream"),
        pytest.param({"timeout_ms": 1500}, id="past-its-deadline"),
    ],
)
async def test_stalled_calls_that_end_in_an_error_still_count_what_they_hold(
    upstream: RunningServer, make_bridge: MakeBridge, ending: dict[str, int]
) -> None:
    """A failed call's messages are handed to its reader before its status, so they stay
    held (and counted) until the reader goes; one such call after another must not get a
    fresh window each."""
    bridge = await make_bridge(upstream.target)
    sent = upstream.test.sent
    timeout_ms = ending.pop("timeout_ms", None)
    headers = [*CONNECT_STREAM, *([("connect-timeout-ms", str(timeout_ms))] if timeout_ms else [])]
    tags = [f"ending-{n}-" + "x" * (MESSAGE - 100) for n in range(4)]
    async with h2c_connection(bridge.server.proxy_port, auto_window=False) as client:
        await client.pump()
        for tag in tags:
            client.request(f"{TEST}/ServerStream", headers, stream_request(tag, 200, **ending))
            # One after another: each call ends (or stalls) before the next opens.
            await settled(lambda t=tag: sent.get(t, 0), quiet=0.5)
        held = sum(sent.get(tag, 0) for tag in tags) * MESSAGE
        # Uncounted, each got ~4 MiB of window: ~13 MB for 4 failed calls.
        assert held < BUFFER + len(tags) * PER_STREAM, (held, [sent.get(t) for t in tags])


async def fail_with_a_message(ex: Exchange) -> None:
    ex.respond(kitchen_pb2.Kitchen(f_string="y" * 30000), status=13)


async def test_unary_calls_failed_after_a_message_leave_nothing_in_the_budget(
    tmp_path: Path, make_bridge: MakeBridge
) -> None:
    """A unary call whose upstream sent a message and then an error (or a retried, or a
    cancelled, attempt) drops that message: nothing of it may stay counted."""
    async with HostilePeer({"": fail_with_a_message}) as peer:
        up = {
            "name": "h",
            "targets": [peer.target],
            "reflection": False,
            "descriptor_sets": [str(descriptor_set(tmp_path))],
        }
        bridge = await make_bridge(None, upstreams=[up])
        async with h2c_connection(bridge.server.proxy_port) as client:
            await client.pump()
            (conn,) = h2c_connections(bridge)
            for _ in range(5):
                stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "a"}')
                state = await client.answer(stream)
                assert b"internal" in bytes(state.body), state
            assert conn.answers.held == 0
