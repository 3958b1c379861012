"""Edge cases of the native HTTP/2 client: misbehaving upstreams, races of its own state.

The peers are real: a grpc.aio server (tests/helpers/servers.py) or a hand-made HTTP/2
server on loopback (``h2_peer``, tests/helpers/frame_peer.py) when a misbehaving upstream is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from typing import Any

import pytest
from bridgetest.v1 import kitchen_pb2

from grpc_bridge.errors import UpstreamError
from grpc_bridge.settings import Upstream
from grpc_bridge.status import Code
from grpc_bridge.upstream.dial import ConnectionPlan
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.connection import STREAM_WINDOW, Connection
from grpc_bridge.upstream.invoker import Invoker
from grpc_bridge.upstream.pool import ConnectionPool
from grpc_bridge.upstream.resolver import parse_target, unresolved
from tests.helpers.frame_peer import Request, echo_handler, eventually, h2_peer, loop_errors
from tests.helpers.native_tools import grpc_message, method, native, sleep_request
from tests.helpers.servers import RunningServer, StartServer

ECHO = method("Echo", kitchen_pb2.Kitchen)
SLEEP = method("Sleep", kitchen_pb2.SleepResponse)
CLIENT_STREAM = method("ClientStream", kitchen_pb2.StreamReply)


# -- 1. pool: a connection that ends before the slot stores it -------------------------


async def test_goaway_with_the_first_settings_does_not_wedge_the_slot() -> None:
    """The server's SETTINGS and a GOAWAY arrive in one segment on the first connection.

    The connection's on_close runs inside that data_received, before the connect
    task resumes, so Slot._lost ignores it (``connection is not self.connection``);
    then the task stores the dead connection and marks the slot READY. connect()
    refuses to run for a READY slot, so nothing ever reconnects and every call
    waits for its deadline.
    """

    def first(index: int) -> bytes:
        settings = frames.settings({})
        return settings + frames.goaway(0, frames.NO_ERROR) if index == 0 else settings

    async with (
        h2_peer(echo_handler, first_bytes=first) as peer,
        native(peer.target, pool_size=1) as invoker,
    ):
        await eventually(lambda: bool(peer.connections))
        await asyncio.sleep(0.3)  # the first connection is over; the slot should reconnect
        result = await invoker.unary(ECHO, kitchen_pb2.Kitchen(f_int32=5), metadata=[], timeout=2)
        assert isinstance(result.response, kitchen_pb2.Kitchen)
        assert result.response.f_int32 == 5


# -- 2. max_receive_message_bytes is not applied to decompressed messages ---------------


async def test_decompressed_size_is_limited(upstream_factory: StartServer) -> None:
    server = await upstream_factory(options=[("grpc.default_compression_algorithm", 2)])
    request = kitchen_pb2.Kitchen(f_string="a" * 200_000)  # ~200 KB, gzips to well under 1 KB
    async with native(server.target, max_receive_message_bytes=10_000) as invoker:
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(ECHO, request, metadata=[], timeout=5)
    # grpc (core, go, java) checks the decompressed size: RESOURCE_EXHAUSTED.
    assert caught.value.code == Code.RESOURCE_EXHAUSTED


# -- 3. a truncated gzip message escapes data_received ----------------------------------


async def test_truncated_gzip_message_fails_only_its_call() -> None:
    async def truncated(request: Request) -> None:
        packed = gzip.compress(kitchen_pb2.Kitchen(f_string="z" * 100).SerializeToString())
        cut = packed[: len(packed) // 2]
        request.send_headers(
            [(":status", "200"), ("content-type", "application/grpc"), ("grpc-encoding", "gzip")]
        )
        request.send_data(b"\x01" + len(cut).to_bytes(4, "big") + cut)
        request.send_headers([("grpc-status", "0")], end_stream=True)

    async with h2_peer(truncated) as peer, native(peer.target, pool_size=1) as invoker:
        with loop_errors() as escaped, pytest.raises(UpstreamError) as caught:
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=3)
        await asyncio.sleep(0.05)
    # Like the other decompression failures (stream.py _parse): INTERNAL, this call only.
    assert caught.value.code == Code.INTERNAL, caught.value
    assert not escaped, escaped


# -- 4. A6 server pushback ---------------------------------------------------------------


async def test_negative_pushback_stops_retries() -> None:
    async def unavailable(request: Request) -> None:
        request.send_headers(
            [
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "14"),
                ("grpc-message", "overloaded"),
                ("grpc-retry-pushback-ms", "-1"),
            ],
            end_stream=True,
        )

    async with h2_peer(unavailable) as peer, native(peer.target, pool_size=1) as invoker:
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=5)
    assert caught.value.code == Code.UNAVAILABLE
    # A6: "If the value for pushback is negative or unparseable, then it will be seen
    # as the server asking the client not to retry at all."
    assert len(peer.requests) == 1, f"{len(peer.requests)} attempts"


# -- 5. one stream's bad header block kills every call on the connection ----------------


@pytest.mark.parametrize(
    "bad_trailers",
    [
        pytest.param([("grpc-status", "0"), (b"x-name", b"caf\xe9")], id="latin1-value"),
        pytest.param([("grpc-status", "13"), ("grpc-message", "m" * (70 * 1024))], id="over-64KiB"),
    ],
)
async def test_one_streams_header_block_does_not_fail_the_others(
    bad_trailers: list[tuple[Any, Any]],
) -> None:
    """grpc-core takes any bytes in a value and fails only the stream over its size limit.

    Here hpack's UTF-8 decoding error / OversizedHeaderListError become a connection
    error: the GOAWAY(COMPRESSION_ERROR) fails a committed call on the same connection.
    """
    first_headers_sent = asyncio.Event()
    good_ready: asyncio.Future[Request] = asyncio.get_running_loop().create_future()

    async def handler(request: Request) -> None:
        message = kitchen_pb2.Kitchen.FromString(request.body[5:])
        if message.f_string == "good":
            request.send_headers([(":status", "200"), ("content-type", "application/grpc")])
            first_headers_sent.set()
            good_ready.set_result(request)
            return
        await first_headers_sent.wait()
        request.send_headers([(":status", "200"), ("content-type", "application/grpc")])
        request.send_data(grpc_message(message))
        request.send_headers(bad_trailers, end_stream=True)
        await asyncio.sleep(0.1)
        good = await good_ready
        good.send_data(grpc_message(kitchen_pb2.Kitchen(f_string="good")))
        good.send_headers([("grpc-status", "0")], end_stream=True)

    async with (
        h2_peer(handler) as peer,
        native(peer.target, pool_size=1, retries={"max_attempts": 1}) as invoker,
    ):
        # The deadlines only guard against a hang: the peer's pure-Python HPACK encoding
        # of 70 KiB takes ~0.5 s of CPU before either call can end, many seconds on a
        # loaded machine, and the bad call ending at its deadline would prove nothing.
        good = asyncio.create_task(
            invoker.unary(ECHO, kitchen_pb2.Kitchen(f_string="good"), metadata=[], timeout=60)
        )
        await first_headers_sent.wait()
        with contextlib.suppress(UpstreamError):
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(f_string="bad"), metadata=[], timeout=60)
        result = await good
    assert isinstance(result.response, kitchen_pb2.Kitchen)
    assert result.response.f_string == "good"


# -- 6. pool.close() leaves retiring connections open ------------------------------------


async def test_close_ends_connections_still_retiring(upstream: RunningServer) -> None:
    port = upstream.target.rpartition(":")[2]
    first, second = f"127.0.0.1:{port}", f"localhost:{port}"
    pool = ConnectionPool(Upstream(targets=[first], pool_size=1), retire_grace=30)
    pool.open(ConnectionPlan(unresolved([parse_target(first)])))
    invoker = Invoker(pool)
    try:
        call = asyncio.create_task(
            invoker.unary(SLEEP, sleep_request(10, "retiring"), metadata=[], timeout=20)
        )
        await asyncio.sleep(0.3)
        assert pool.rebuild(ConnectionPlan(unresolved([parse_target(second)])))
        assert pool.retiring == 1
    finally:
        await pool.close()
    # The bridge is shutting down: the call on the retiring connection must end with it.
    done, _ = await asyncio.wait([call], timeout=2)
    call.cancel()
    with contextlib.suppress(BaseException):
        await call
    assert done, "the retiring connection outlived pool.close()"


# -- 7. keepalive timer polls every 50 ms on an idle connection --------------------------


async def test_idle_connection_keepalive_timer_does_not_spin() -> None:
    async with h2_peer(echo_handler) as peer:
        host, _, port = peer.target.rpartition(":")
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: Connection(
                max_receive_message_bytes=4 << 20,
                keepalive_time_s=0.3,
                keepalive_timeout_s=5,
                keepalive_without_calls=False,
            ),
            host,
            int(port),
        )
        try:
            await conn.ready
            await asyncio.sleep(0.5)  # idle past keepalive time_s, and no calls
            handles: list[object] = []  # kept alive, so identity is meaningful
            started = time.monotonic()
            while time.monotonic() - started < 1.0:
                timer = conn._timer
                if timer is not None and all(timer is not h for h in handles):
                    handles.append(timer)
                await asyncio.sleep(0.005)
        finally:
            conn.abort("test over")
    # Nothing can change before a call starts: at most a re-arm per time_s (0.3 s).
    assert len(handles) <= 5, f"{len(handles)} keepalive timers in 1 s"


# -- 8. a writer blocked on a paused transport is never woken when the connection dies ---


async def test_write_returns_when_the_connection_dies_while_paused() -> None:
    """A peer that grants huge windows but stops reading, then resets the connection.

    The transport is paused (its buffer is full), so send() waits for
    resume_writing. connection_lost -> _shutdown -> _wake_writers returns early
    because ``_paused`` is still True, and nothing else ever wakes the writer:
    StreamCall.write must answer False once the call is over.
    """

    def first(index: int) -> bytes:
        return frames.settings(
            {frames.SETTINGS_INITIAL_WINDOW_SIZE: frames.MAX_WINDOW}
        ) + frames.window_update(0, frames.MAX_WINDOW - frames.DEFAULT_WINDOW)

    big = kitchen_pb2.StreamReply(text="p" * (4 << 20))
    settings = {"max_send_message_bytes": 8 << 20}
    async with (
        h2_peer(echo_handler, first_bytes=first, read=lambda index: False) as peer,
        native(peer.target, pool_size=1, **settings) as invoker,
        invoker.request_stream(CLIENT_STREAM, metadata=[], timeout=None) as call,
    ):
        blocked = None
        for _ in range(32):  # until the socket buffers are full and the transport pauses
            write = asyncio.create_task(call.write(big))
            done, _ = await asyncio.wait([write], timeout=1)
            if not done:
                blocked = write
                break
            assert write.result()
        assert blocked is not None, "the transport never paused"
        transport = peer.connections[0].writer.transport
        transport.abort()  # the upstream goes away (RST)
        stream = call._stream
        assert stream is not None
        await eventually(lambda: stream.status is not None)  # the client saw the conn end
        assert stream.status.code == Code.UNAVAILABLE
        try:
            assert await asyncio.wait_for(blocked, 3) is False
        finally:
            blocked.cancel()


# -- 9. an empty header name from the upstream raises IndexError out of the invoker ------


async def test_empty_header_name_is_an_upstream_error() -> None:
    async def empty_name(request: Request) -> None:
        request.send_headers([(":status", "200"), ("content-type", "application/grpc"), ("", "x")])
        request.send_data(grpc_message(kitchen_pb2.Kitchen()))
        request.send_headers([("grpc-status", "0")], end_stream=True)

    async with h2_peer(empty_name) as peer, native(peer.target, pool_size=1) as invoker:
        # RFC 9113 §8.2.1: a malformed response is a stream error, reported as such.
        with pytest.raises(UpstreamError):
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=3)


async def test_data_past_the_granted_window_resets_the_stream() -> None:
    """RFC 9113 §6.9.1: an upstream ignoring flow control gets FLOW_CONTROL_ERROR.

    Unread messages stop the window from being handed back (backpressure), so
    an upstream that sends on regardless would make the bridge buffer without
    bound; the stream is reset once the window is exceeded, the call fails.
    """
    chunk = grpc_message(kitchen_pb2.Kitchen(f_string="x" * 16_000))
    count = STREAM_WINDOW // len(chunk) + 8

    async def flooding(request: Request) -> None:
        request.send_headers([(":status", "200"), ("content-type", "application/grpc")])
        for _ in range(count):
            request.send_data(chunk)
        request.send_headers([("grpc-status", "0")], end_stream=True)

    async with h2_peer(flooding) as peer, native(peer.target, pool_size=1) as invoker:
        with loop_errors() as escaped, pytest.raises(UpstreamError) as caught:
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=5)
        await eventually(lambda: bool(peer.connections and peer.connections[0].resets))
    assert caught.value.code == Code.INTERNAL
    assert "flow-control window" in caught.value.message, caught.value.message
    assert peer.connections[0].resets[0][1] == frames.FLOW_CONTROL_ERROR
    assert not escaped, escaped


# -- 10. A6: retry attempts do not carry grpc-previous-rpc-attempts ----------------------


async def test_retries_say_how_many_attempts_came_before() -> None:
    async def flaky(request: Request) -> None:
        if request.conn.index == 0 and request.stream_id == 1:  # the first attempt
            request.send_headers(
                [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "14")],
                end_stream=True,
            )
            return
        await echo_handler(request)

    async with h2_peer(flaky) as peer, native(peer.target, pool_size=1) as invoker:
        await invoker.unary(ECHO, kitchen_pb2.Kitchen(f_int32=1), metadata=[], timeout=5)
    assert len(peer.requests) == 2
    assert "grpc-previous-rpc-attempts" not in peer.requests[0].headers
    # A6 "Retry metadata": the retry carries how many attempts were made before it.
    assert peer.requests[1].headers.get("grpc-previous-rpc-attempts") == "1"


# -- 11. a response that is not the method's message ---------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
async def test_an_unparsable_response_is_internal_with_its_reason(compressed: bool) -> None:
    """Bytes that are no Kitchen, sent plain or gzip-compressed: the call's INTERNAL names
    the parse failure (a plain one is parsed without the inflating coroutine)."""
    garbage = b"\xff\xff\xff\xff"

    async def answer(request: Request) -> None:
        head = [(":status", "200"), ("content-type", "application/grpc")]
        payload = gzip.compress(garbage) if compressed else garbage
        if compressed:
            head.append(("grpc-encoding", "gzip"))
        request.send_headers(head)
        request.send_data(bytes([compressed]) + len(payload).to_bytes(4, "big") + payload)
        request.send_headers([("grpc-status", "0"), ("x-trail", "t")], end_stream=True)

    async with h2_peer(answer) as peer, native(peer.target, pool_size=1) as invoker:
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=3)
    assert caught.value.code == Code.INTERNAL, caught.value
    assert "cannot parse the upstream's response" in caught.value.message
    assert ("x-trail", "t") in list(caught.value.trailing_metadata)


@pytest.mark.parametrize(("count", "code"), [(0, Code.UNIMPLEMENTED), (2, Code.INTERNAL)])
async def test_a_unary_answer_of_other_than_one_message_fails(count: int, code: int) -> None:
    async def answer(request: Request) -> None:
        request.send_headers([(":status", "200"), ("content-type", "application/grpc")])
        for _ in range(count):
            request.send_data(grpc_message(kitchen_pb2.Kitchen(f_int32=1)))
        request.send_headers([("grpc-status", "0")], end_stream=True)

    async with h2_peer(answer) as peer, native(peer.target, pool_size=1) as invoker:
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=3)
    assert caught.value.code == code, caught.value
    assert f"upstream sent {count} response messages to a unary call" in caught.value.message


@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_a_unary_request_is_framed_as_its_upstream_compresses(compression: str) -> None:
    """The request frame the upstream receives: flag 0x01 and gzip under compression=gzip,
    plain otherwise; max_send_message_bytes applies to the message either way."""
    request = kitchen_pb2.Kitchen(f_string="squeeze " * 50)

    async def answer(received: Request) -> None:
        received.answer(kitchen_pb2.Kitchen())

    async with (
        h2_peer(answer) as peer,
        native(
            peer.target, pool_size=1, compression=compression, max_send_message_bytes=1000
        ) as invoker,
    ):
        await invoker.unary(ECHO, request, metadata=[], timeout=3)
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(
                ECHO, kitchen_pb2.Kitchen(f_string="x" * 5000), metadata=[], timeout=3
            )
    body = peer.requests[0].body
    payload = body[5:]
    assert int.from_bytes(body[1:5], "big") == len(payload)
    if compression == "gzip":
        assert body[0] == 1
        assert peer.requests[0].headers.get("grpc-encoding") == "gzip"
        payload = gzip.decompress(payload)
    else:
        assert body[0] == 0
    assert payload == request.SerializeToString()
    assert caught.value.code == Code.RESOURCE_EXHAUSTED, caught.value
    assert len(peer.requests) == 1  # the oversize message never left
