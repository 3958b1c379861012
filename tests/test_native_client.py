"""The native HTTP/2 client (grpc_bridge/upstream/h2, native_*.py) against real grpc.aio servers.

The whole suite runs through it (it is the only transport); these tests
cover what the HTTP-level tests don't reach: flow control past the default
windows, stream limits, compression, bad or silent peers, keepalive, unix
sockets, and a config naming the retired grpcio transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import hpack
import orjson
import pytest
import structlog
from bridgetest.v1 import kitchen_pb2
from google.protobuf import empty_pb2
from google.rpc import status_pb2

from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import frames
from tests.helpers.descriptors import with_imports, write_set
from tests.helpers.harness import running_bridge
from tests.helpers.native_tools import grpc_message, method, native, sleep_request
from tests.helpers.servers import RunningServer

StartServer = Callable[..., Awaitable[RunningServer]]


NO_METADATA: dict[str, Any] = {"metadata": [], "timeout": 5}
ECHO = method("Echo", kitchen_pb2.Kitchen)
SLEEP = method("Sleep", kitchen_pb2.SleepResponse)
FAIL = method("Fail", empty_pb2.Empty)
METADATA = method("EchoMetadata", kitchen_pb2.MetadataResponse)
SERVER_STREAM = method("ServerStream", kitchen_pb2.StreamReply)
BIDI = method("Bidi", kitchen_pb2.StreamReply)


async def test_messages_larger_than_every_window_and_frame(upstream: RunningServer) -> None:
    big = "x" * (3 * 1024 * 1024)  # over 64 KiB windows and 16 KiB frames, both ways
    settings = {"max_send_message_bytes": 8 << 20, "max_receive_message_bytes": 8 << 20}
    async with native(upstream.target, **settings) as invoker:
        result = await invoker.unary(
            ECHO, kitchen_pb2.Kitchen(f_string=big), metadata=[], timeout=10
        )
    assert isinstance(result.response, kitchen_pb2.Kitchen)
    assert result.response.f_string == big


async def test_a_stream_past_every_window_keeps_flowing(upstream: RunningServer) -> None:
    """~24 MB in 4 KB messages: past the stream (4 MiB) and connection (16 MiB) windows."""
    tag = "w" * 4000
    request = kitchen_pb2.StreamRequest(count=6000, tag=tag)
    async with (
        native(upstream.target) as invoker,
        invoker.server_stream(SERVER_STREAM, request, metadata=[], timeout=30) as call,
    ):
        count = 0
        while (message := await call.read()) is not None:
            assert isinstance(message, kitchen_pb2.StreamReply)
            assert message.index == count
            count += 1
    assert count == 6000


async def test_message_size_limits_both_ways(upstream: RunningServer) -> None:
    async with native(upstream.target, max_send_message_bytes=1000) as invoker:
        with pytest.raises(UpstreamError) as sent:
            await invoker.unary(
                ECHO, kitchen_pb2.Kitchen(f_string="x" * 2000), metadata=[], timeout=5
            )
    assert sent.value.code == Code.RESOURCE_EXHAUSTED
    assert "max_send_message_bytes (1000)" in sent.value.message
    async with native(upstream.target, max_receive_message_bytes=1000) as invoker:
        with pytest.raises(UpstreamError) as received:
            await invoker.unary(
                ECHO, kitchen_pb2.Kitchen(f_string="x" * 2000), metadata=[], timeout=5
            )
    assert received.value.code == Code.RESOURCE_EXHAUSTED
    assert "max_receive_message_bytes (1000)" in received.value.message


async def test_calls_wait_for_a_stream_slot(upstream_factory: StartServer) -> None:
    server = await upstream_factory(options=[("grpc.max_concurrent_streams", 1)])
    async with native(server.target, pool_size=1) as invoker:
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                invoker.unary(SLEEP, sleep_request(0.1, f"slot{i}"), metadata=[], timeout=10)
                for i in range(5)
            )
        )
        elapsed = time.monotonic() - started
    assert [r.response.tag for r in results] == [f"slot{i}" for i in range(5)]
    # One stream at a time: the five sleeps ran one after another.
    assert elapsed >= 0.45


async def test_gzip_both_ways(upstream_factory: StartServer) -> None:
    server = await upstream_factory(options=[("grpc.default_compression_algorithm", 2)])
    request = kitchen_pb2.Kitchen(f_string="compress me " * 200, r_int32=list(range(100)))
    async with native(server.target, compression="gzip") as invoker:
        result = await invoker.unary(ECHO, request, metadata=[], timeout=5)
        assert result.response == request
        async with invoker.server_stream(
            SERVER_STREAM, kitchen_pb2.StreamRequest(count=50, tag="gz"), metadata=[], timeout=5
        ) as call:
            texts = []
            while (message := await call.read()) is not None:
                assert isinstance(message, kitchen_pb2.StreamReply)
                texts.append(message.text)
    assert texts == [f"gz-{i}" for i in range(50)]


async def test_errors_carry_status_message_details_and_trailers(upstream: RunningServer) -> None:
    message = "nope: ünïcode ✓ 100% {braces}"
    request = kitchen_pb2.FailRequest(
        code=9, message=message, with_details=True, trailers={"x-why": "because"}
    )
    async with native(upstream.target) as invoker:
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(FAIL, request, metadata=[], timeout=5)
    error = caught.value
    assert error.code == 9 and error.message == message
    assert error.details_bin is not None
    assert status_pb2.Status.FromString(error.details_bin).message == message
    assert ("x-why", "because") in error.trailing_metadata


async def test_metadata_both_ways_with_binary_values(upstream: RunningServer) -> None:
    sent: list[tuple[str, str | bytes]] = [("x-text", "hello"), ("x-raw-bin", b"\x00\xff\x10")]
    async with native(upstream.target) as invoker:
        result = await invoker.unary(METADATA, empty_pb2.Empty(), metadata=sent, timeout=5)
    assert isinstance(result.response, kitchen_pb2.MetadataResponse)
    received = result.response.received
    assert received["x-text"] == "hello"
    assert received["x-raw-bin"] == "AP8Q"  # base64 of the bytes, as the server saw them
    assert ("x-initial", "yes") in result.initial_metadata
    assert ("x-initial-bin", b"\x00\x01") in result.initial_metadata
    assert ("x-trailer-bin", b"\xff") in result.trailing_metadata


async def test_unary_calls_expire_at_their_deadline_not_before(upstream: RunningServer) -> None:
    # Deadlines close together and apart (timers are shared per 50 ms of deadlines):
    # each call ends DEADLINE_EXCEEDED no sooner than its own timeout.
    timeouts = [0.03, 0.07, 0.08, 0.26, 0.4]
    async with native(upstream.target) as invoker:

        async def call(timeout: float) -> tuple[float, int]:
            loop = asyncio.get_running_loop()
            request = sleep_request(5, f"t{timeout}")
            started = loop.time()
            with pytest.raises(UpstreamError) as caught:
                await invoker.unary(SLEEP, request, metadata=[], timeout=timeout)
            return loop.time() - started, caught.value.code

        results = await asyncio.gather(*(call(timeout) for timeout in timeouts))
    for timeout, (elapsed, code) in zip(timeouts, results, strict=True):
        assert code == Code.DEADLINE_EXCEEDED
        # (A loop's clock may count whole milliseconds: a timer can fire within one early.)
        assert timeout - 0.002 <= elapsed < timeout + 2


async def test_deadline_and_cancellation_reach_the_upstream(upstream: RunningServer) -> None:
    async with native(upstream.target) as invoker:
        started = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(SLEEP, sleep_request(5, "late"), metadata=[], timeout=0.2)
        assert caught.value.code == Code.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 2
        await upstream.test.wait_for("cancelled", "late")

        task = asyncio.create_task(
            invoker.unary(SLEEP, sleep_request(5, "gone"), metadata=[], timeout=10)
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await upstream.test.wait_for("cancelled", "gone")


async def test_graceful_server_stop_finishes_calls_in_flight(upstream: RunningServer) -> None:
    async with native(upstream.target) as invoker:
        await invoker.unary(SLEEP, sleep_request(0, "warm"), metadata=[], timeout=5)
        in_flight = asyncio.create_task(
            invoker.unary(SLEEP, sleep_request(0.5, "flight"), metadata=[], timeout=5)
        )
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(upstream.stop(grace=3))  # GOAWAY, then waits for calls
        result = await in_flight
        assert isinstance(result.response, kitchen_pb2.SleepResponse)
        assert result.response.completed
        await stopping
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(SLEEP, sleep_request(0, "after"), metadata=[], timeout=2)
        assert caught.value.code == Code.UNAVAILABLE


async def test_bidi_stream_interleaves(upstream: RunningServer) -> None:
    async with (
        native(upstream.target) as invoker,
        invoker.request_stream(BIDI, metadata=[], timeout=5) as call,
    ):
        for i in range(20):
            assert await call.write(kitchen_pb2.StreamReply(index=i, text=f"m{i}"))
            reply = await call.read()
            assert isinstance(reply, kitchen_pb2.StreamReply)
            assert reply.text == f"echo: m{i}"
        await call.done_writing()
        assert await call.read() is None
        assert call.done


@pytest.mark.parametrize("scheme", ["unix", "unix-abstract"])
async def test_unix_socket_target(scheme: str) -> None:
    """A socket file, and Linux's abstract namespace (no file), which grpc servers bind too."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grpc.sock"
        target = (
            f"unix:{path}" if scheme == "unix" else f"unix-abstract:grpc-bridge-{path.parent.name}"
        )
        server = grpc.aio.server()
        from bridgetest.v1 import kitchen_pb2_grpc

        from tests.helpers.servers import TestServiceImpl

        kitchen_pb2_grpc.add_TestServiceServicer_to_server(TestServiceImpl(), server)
        server.add_insecure_port(target)
        await server.start()
        try:
            async with native(target) as invoker:
                result = await invoker.unary(
                    ECHO, kitchen_pb2.Kitchen(f_int32=7), metadata=[], timeout=5
                )
            assert isinstance(result.response, kitchen_pb2.Kitchen)
            assert result.response.f_int32 == 7
        finally:
            await server.stop(None)


@asynccontextmanager
async def raw_server(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A TCP server on loopback running ``on_connect`` per connection (a bad or silent peer)."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await on_connect(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read and ignore everything until the client goes."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    writer.close()


async def test_a_peer_that_is_not_http2_is_named() -> None:
    async def http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await _hold(reader, writer)

    async with raw_server(http1) as target, native(target) as invoker:
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=5)
    assert caught.value.code == Code.UNAVAILABLE
    assert "not speak HTTP/2" in caught.value.message, caught.value.message
    assert "HTTP/1.1 400" in caught.value.message


async def test_a_silent_peer_times_out_connecting() -> None:
    async with (
        raw_server(_hold) as target,
        native(target, reconnect={"connect_timeout_s": 0.3}) as invoker,
    ):
        started = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=5)
    assert caught.value.code == Code.UNAVAILABLE
    assert "timed out" in caught.value.message
    assert time.monotonic() - started < 3


async def test_keepalive_ends_a_connection_that_stopped_answering() -> None:
    async def handshake_then_silence(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(frames.settings({}) + frames.SETTINGS_ACK)
        await writer.drain()
        await _hold(reader, writer)

    keepalive = {"time_s": 0.2, "timeout_s": 0.2}
    async with (
        raw_server(handshake_then_silence) as target,
        native(target, keepalive=keepalive) as invoker,
    ):
        started = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=10)
    assert caught.value.code == Code.UNAVAILABLE
    assert "keepalive ping not answered" in caught.value.message
    assert time.monotonic() - started < 3


async def test_a_config_naming_the_retired_grpcio_transport_runs_on_the_native_client(
    upstream: RunningServer,
) -> None:
    upstreams = [{"name": "default", "targets": [upstream.target], "transport": "grpcio"}]
    with structlog.testing.capture_logs() as logs:
        async with running_bridge(None, upstreams=upstreams) as b:
            retired = [e for e in logs if e["event"] == "setting_retired"]
            assert [(e["upstream"], e["setting"], e["value"]) for e in retired] == [
                ("default", "transport", "grpcio")
            ]
            status, body, _ = await b.post(
                "/bridgetest.v1.TestService/Echo", {"fString": "hi", "fInt64": "-9"}
            )
            assert status == 200 and (body["fString"], body["fInt64"]) == ("hi", "-9")
            status, body, _ = await b.post(
                "/bridgetest.v1.TestService/Fail",
                {"code": 5, "message": "no such thing", "trailers": {"x-t": "1"}},
            )
            assert status == 404 and body["code"] == 5 and body["message"] == "no such thing"
            async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
                (info,) = (await resp.json())["upstreams"]
            assert info["transport"] == "native"


async def test_readiness_names_why_connections_fail(upstream_factory: StartServer) -> None:
    server = await upstream_factory()
    upstreams = [
        {
            "name": "u",
            "targets": [server.target],
            "reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.2},
        }
    ]
    async with running_bridge(None, upstreams=upstreams) as b:
        await server.stop()
        reason = ""
        async with asyncio.timeout(10):
            while "cannot connect to" not in reason:
                await asyncio.sleep(0.1)
                async with b.session.get(f"{b.admin_url}/readyz") as resp:
                    reason = (await resp.json())["upstreams"]["u"].get("reason") or ""
        assert reason.startswith("no usable channel: every connection is failing")
        assert f"cannot connect to {server.target}" in reason


def burst_server(
    count: int,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A bare HTTP/2 peer answering any call with ``count`` StreamReplies in one DATA frame.

    A grpc-core server writes each message separately, so it never shows what
    the bridge does with messages that arrive together.
    """
    replies = b"".join(
        grpc_message(kitchen_pb2.StreamReply(index=i, text=f"burst-{i}")) for i in range(count)
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        encoder = hpack.Encoder()
        encoder.header_table_size = 0  # as the bridge's SETTINGS_HEADER_TABLE_SIZE asks
        await reader.readexactly(len(frames.PREFACE))
        writer.write(frames.settings({}))
        try:
            while True:
                header = await reader.readexactly(9)
                high, low, kind, flags, stream_id = frames.HEADER.unpack(header)
                await reader.readexactly((high << 16) | low)
                if kind == frames.SETTINGS and not flags & frames.ACK:
                    writer.write(frames.SETTINGS_ACK)
                elif kind == frames.HEADERS:
                    head = encoder.encode(
                        [(":status", "200"), ("content-type", "application/grpc")]
                    )
                    trailers = encoder.encode([("grpc-status", "0")])
                    writer.write(
                        frames.frame(frames.HEADERS, frames.END_HEADERS, stream_id, head)
                        + frames.frame(frames.DATA, 0, stream_id, replies)
                        + frames.frame(
                            frames.HEADERS,
                            frames.END_HEADERS | frames.END_STREAM,
                            stream_id,
                            trailers,
                        )
                    )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return serve


async def test_batched_reads_keep_one_message_per_frame(tmp_path: Path) -> None:
    """Messages that arrive together are written together, but never merged into one frame."""
    count = 500
    descriptors = write_set(tmp_path / "api.pb", *with_imports(kitchen_pb2.DESCRIPTOR))
    path = "/bridgetest.v1.TestService/ServerStream"
    async with raw_server(burst_server(count)) as target:
        upstreams = [
            {"targets": [target], "reflection": False, "descriptor_sets": [str(descriptors)]}
        ]
        async with running_bridge(None, upstreams=upstreams) as b:
            async with b.session.post(f"{b.url}{path}", json={}) as resp:
                lines = (await resp.read()).decode().splitlines()
            assert [orjson.loads(line)["result"]["text"] for line in lines] == [
                f"burst-{i}" for i in range(count)
            ]
            texts = []
            async with b.session.ws_connect(f"{b.url}{path}") as ws:
                await ws.send_json({})
                async for message in ws:
                    value = orjson.loads(message.data)
                    if "result" not in value:
                        break
                    texts.append(value["result"]["text"])
            assert texts == [f"burst-{i}" for i in range(count)]
