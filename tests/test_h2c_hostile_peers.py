"""The proxy port's HTTP/2 (h2c) edge against hostile peers, built on ``h2`` as a client.

Every bound holds as bytes arrive, and one bad connection never costs another:
a preface that is not HTTP/2's, bad frames, more streams than advertised, an
oversize header block, resets by the hundred, a client that never gives its
response window back, a stream reset mid-call (its upstream call cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib

import h2.settings
import orjson
import pytest
from bridgetest.v1 import kitchen_pb2
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame

from grpc_bridge.edge import h2c
from grpc_bridge.edge.sites import FastSite, SniffSite
from tests.helpers.h2c_client import calmed, envelope, h2c_connection, trickle, unframe
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.load import wait_until
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.both_edges

TEST = "/bridgetest.v1.TestService"
CONNECT_JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
CONNECT_STREAM = [("content-type", "application/connect+proto"), ("connect-protocol-version", "1")]


def h2c_connections(bridge: RunningBridge) -> set[h2c.H2cConnection]:
    (site,) = bridge.server.proxy_runner.sites
    assert isinstance(site, FastSite | SniffSite)
    return (site.fast.h2c if isinstance(site, FastSite) else site.h2c).connections


def sleep(tag: str, seconds: int = 30) -> bytes:
    return orjson.dumps({"duration": f"{seconds}s", "tag": tag})


async def echo_works(bridge: RunningBridge) -> None:
    """A fresh connection is served as ever (nothing another did costs it)."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "ok"}')
        state = await client.answer(stream)
        assert state.headers[":status"] == "200"
        assert orjson.loads(state.body)["fString"] == "ok"


@pytest.fixture
async def bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(upstream.target)


async def test_pri_then_bytes_that_are_not_the_preface_get_http11s_400(
    bridge: RunningBridge,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.server.proxy_port)
    writer.write(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    await echo_works(bridge)


async def test_a_bad_frame_after_the_preface_is_a_goaway_naming_it(bridge: RunningBridge) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        # DATA on stream 0 (RFC 9113 §6.1: a connection error of type PROTOCOL_ERROR).
        client.writer.write(b"\x00\x00\x04\x00\x00\x00\x00\x00\x00data")
        await client.until(lambda: client.closed, 10)
        assert client.terminated is not None
        assert client.terminated.error_code == ErrorCodes.PROTOCOL_ERROR
        assert client.terminated.additional_data
    await echo_works(bridge)


async def test_more_streams_than_advertised_close_the_connection_and_its_calls(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    """Stream 101 is a connection error (h2 refuses it before reading its header block,
    so the connection's HPACK state can't go on): GOAWAY, and every call ends."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        # Sent before the bridge's SETTINGS are read: this client does not know the limit.
        for i in range(h2c.MAX_STREAMS + 1):
            slow = kitchen_pb2.StreamRequest(count=100, tag=f"many-{i}")
            slow.interval.FromSeconds(1)
            client.request(
                f"{TEST}/ServerStream", CONNECT_STREAM, envelope(slow.SerializeToString())
            )
        await client.until(lambda: client.closed, 20)
        assert client.terminated is not None
        assert client.terminated.error_code == ErrorCodes.PROTOCOL_ERROR
        assert client.terminated.last_stream_id <= 2 * h2c.MAX_STREAMS - 1
    for tag in [t for t in upstream.test.sent if t.startswith("many-")]:
        await upstream.test.wait_for("cancelled", tag, within=20)
    await echo_works(bridge)


async def test_a_header_block_over_the_limit_is_refused(bridge: RunningBridge) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()  # SETTINGS in, ours acknowledged: the limit is in force
        await asyncio.sleep(0.1)
        big = [("x-big", "x" * (h2c.MAX_HEADER_LIST + 1024))]
        client.request(f"{TEST}/Echo", [*CONNECT_JSON, *big], b"{}")
        await client.until(lambda: client.closed, 10)
        assert client.terminated is not None and client.terminated.error_code != 0
    await echo_works(bridge)


async def test_a_reset_stream_cancels_its_upstream_call_and_others_go_on(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        slow = kitchen_pb2.StreamRequest(count=1000, tag="h2-reset")
        slow.interval.FromMilliseconds(100)
        doomed = client.request(
            f"{TEST}/ServerStream", CONNECT_STREAM, envelope(slow.SerializeToString())
        )
        await client.until(lambda: bool(client.streams[doomed].body), 10)
        client.reset(doomed)
        await upstream.test.wait_for("cancelled", "h2-reset", within=10)
        # The connection serves on.
        stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "after"}')
        state = await client.answer(stream)
        assert orjson.loads(state.body)["fString"] == "after"


async def test_a_flood_of_resets_is_a_goaway(bridge: RunningBridge) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()
        for i in range(h2c.MAX_RESETS + 50):
            stream = client.request(f"{TEST}/Sleep", CONNECT_JSON, sleep(f"flood-{i}"))
            client.reset(stream)
            if i % 50 == 0:
                await client.writer.drain()
        await calmed(client)
    await echo_works(bridge)


async def test_a_client_that_never_reads_holds_one_window_and_stalls_its_call(
    upstream: RunningServer, make_bridge: MakeBridge
) -> None:
    """No WINDOW_UPDATE ever: the bridge sends one window's worth, stops reading the
    upstream (whose stream stalls far short of its end), and serves other clients."""
    # The least upstream buffer, so that the stall comes soon.
    up = {"name": "default", "targets": [upstream.target], "stream_buffer_bytes": 65535}
    bridge = await make_bridge(None, upstreams=[up])
    async with h2c_connection(bridge.server.proxy_port, auto_window=False) as client:
        count = 1_000_000
        # Messages of ~8 KB (the tag is in each): the buffers on the way fill after a few
        # hundred of them, not after the upstream made ~100,000 small ones (~10 s of CPU).
        tag = "never-reads-" + "x" * 8192
        request = kitchen_pb2.StreamRequest(count=count, tag=tag).SerializeToString()
        stream = client.request(f"{TEST}/ServerStream", CONNECT_STREAM, envelope(request))
        state = client.streams[stream]
        window = 65535  # RFC 9113's initial window, which this client never opens
        await client.until(lambda: len(state.body) >= window, 20)
        assert len(state.body) == window
        # The bridge's upstream buffer and the upstream's own fill, then its stream stalls
        # far short of its end.
        sent = -1
        async with asyncio.timeout(60):
            while upstream.test.sent.get(tag, 0) != sent:
                sent = upstream.test.sent.get(tag, 0)
                await asyncio.sleep(1.0)
        assert sent < count // 2
        # Nothing queued for the client beyond its window.
        (conn,) = h2c_connections(bridge)
        assert conn.transport is not None and conn.transport.get_write_buffer_size() == 0
        await echo_works(bridge)
        # Its reset ends the call (the upstream's blocked write then fails: grpcio logs an
        # ExecuteBatchError rather than a cancellation), and the bridge holds nothing of it.
        client.reset(stream)
        await wait_until(lambda: not conn.streams, 20, "the reset stream's end")


async def test_an_idle_connection_gets_a_goaway_and_closes(
    bridge: RunningBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h2c, "IDLE_TIMEOUT_S", 0.3)
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.until(lambda: client.closed, 10)
        assert client.terminated is not None
        assert client.terminated.error_code == ErrorCodes.NO_ERROR


async def test_shutdown_ends_streams_in_flight_then_sends_goaway(bridge: RunningBridge) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        slow = kitchen_pb2.StreamRequest(count=1000, tag="h2-shutdown")
        slow.interval.FromMilliseconds(100)
        stream = client.request(
            f"{TEST}/ServerStream", CONNECT_STREAM, envelope(slow.SerializeToString())
        )
        state = client.streams[stream]
        await client.until(lambda: bool(state.body), 10)
        stopping = asyncio.create_task(bridge.server.drain_and_stop())
        await client.until(lambda: client.closed, 20)
        await asyncio.wait_for(stopping, 20)
        # The stream got its end (Connect's end-of-stream envelope), then the connection
        # its GOAWAY.
        assert state.ended and state.reset is None
        flags, end = unframe(bytes(state.body))[-1]
        assert flags == 0x02 and b"error" in end
        assert client.terminated is not None
        assert client.terminated.error_code == ErrorCodes.NO_ERROR


async def test_a_request_body_is_taken_only_as_fast_as_its_call_takes_it(
    upstream: RunningServer, make_bridge: MakeBridge
) -> None:
    """A bidi client that sends and never reads: the echoes back up to the upstream,
    which stops reading, and the bridge stops giving its window back: the client's
    sending stalls after a bounded amount instead of filling the bridge's memory."""
    up = {"name": "default", "targets": [upstream.target], "stream_buffer_bytes": 65535}
    bridge = await make_bridge(None, upstreams=[up])
    async with h2c_connection(bridge.server.proxy_port, auto_window=False) as client:
        stream = client.request(f"{TEST}/Bidi", CONNECT_STREAM, b"", end=False)
        message = envelope(kitchen_pb2.StreamReply(text="x" * 16000).SerializeToString())
        sent, stalled_for = 0, 0
        async with asyncio.timeout(60):
            while stalled_for < 3:
                window = client.conn.local_flow_control_window(stream)
                if window >= len(message):
                    client.send(stream, message)
                    sent += len(message)
                    stalled_for = 0
                    await client.writer.drain()
                    continue
                await client.pump(1.0)  # WINDOW_UPDATEs, if any come
                if client.conn.local_flow_control_window(stream) == window:
                    stalled_for += 1
        assert not client.closed and client.streams[stream].reset is None
        # ~8.7 MB: the upstream's receive window and buffers, mostly (the bridge holds
        # at most a stream's window plus its body buffer of it).
        assert sent < 32 * 1024 * 1024
        (conn,) = h2c_connections(bridge)
        (served,) = conn.streams.values()
        assert served.reader.total_bytes == sent
        await echo_works(bridge)
        client.reset(stream)


async def test_an_http11_request_line_claiming_http2_gets_no_full_duplex(
    bridge: RunningBridge,
) -> None:
    """Only a request on an HTTP/2 stream may stream both ways: the version a request
    line claims is not enough (llhttp reads ``HTTP/2.0`` there)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.server.proxy_port)
    writer.write(
        f"POST {TEST}/Bidi HTTP/2.0\r\nHost: x\r\nContent-Length: 0\r\n".encode()
        + b"Content-Type: application/connect+json\r\nConnect-Protocol-Version: 1\r\n\r\n"
    )
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert b"needs HTTP/2 end to end" in data


async def test_a_path_not_in_origin_form_resets_its_stream_only(bridge: RunningBridge) -> None:
    """(``OPTIONS *`` is HTTP/2's too, RFC 9113 §8.3.1: answered as over HTTP/1.1,
    tests/test_http1_and_h2c_answer_alike.py.)"""
    async with h2c_connection(bridge.server.proxy_port) as client:
        for method, path in (("GET", "*"), ("GET", "http://127.0.0.1/x")):
            odd = client.request(path, body=None, method=method)
            state = await client.answer(odd)
            assert state.reset == ErrorCodes.PROTOCOL_ERROR, (method, path)
        stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "still"}')
        assert orjson.loads((await client.answer(stream)).body)["fString"] == "still"


async def test_a_preface_never_finished_is_closed_at_the_head_deadline(
    upstream: RunningServer, make_bridge: MakeBridge
) -> None:
    """Part of HTTP/2's preface, then nothing: neither HTTP/1.1 nor HTTP/2 yet, the bytes
    are a head begun, closed after ``limits.body_read_timeout_s`` as any head is."""
    bridge = await make_bridge(upstream.target, limits={"body_read_timeout_s": 1})
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.server.proxy_port)
    try:
        writer.write(h2c.PREFACE[:10])
        began = asyncio.get_running_loop().time()
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 30) == b""
        held = asyncio.get_running_loop().time() - began
    finally:
        writer.transport.abort()
    assert held < 10, f"a part of the preface held the connection {held:.1f} s"


@pytest.mark.parametrize(
    ("extra", "path", "problem"),
    [
        ([(f"x-field-{i}", "v") for i in range(200)], "Echo", "more than 128 header fields"),
        ([("user-agent", "u" * 9000)], "Echo", "longer than 8190 bytes"),
        ([], "Echo?" + "q" * 9000, "longer than 8190 bytes"),
    ],
    ids=["many-fields", "long-field", "long-path"],
)
async def test_a_header_block_over_http11s_head_limits_gets_http11s_431(
    bridge: RunningBridge, extra: list[tuple[str, str]], path: str, problem: str
) -> None:
    """HPACK lets a block carry what an HTTP/1.1 head may not (aiohttp's parser: 128
    fields, 8190 bytes a line or field): the same request gets the same 431 either way."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        stream = client.request(f"{TEST}/{path}", [*CONNECT_JSON, *extra], b'{"fString": "x"}')
        state = await client.answer(stream)
        assert state.headers[":status"] == "431", bytes(state.body)
        assert problem in orjson.loads(state.body)["message"]
        assert state.headers["x-request-id"]
        # Only that stream: the connection serves on.
        stream = client.request(f"{TEST}/Echo", CONNECT_JSON, b'{"fString": "after"}')
        assert orjson.loads((await client.answer(stream)).body)["fString"] == "after"


@pytest.mark.parametrize(
    "content_type", ["application/connect+proto", "application/grpc-web+proto"]
)
async def test_a_request_message_trickled_byte_by_byte_is_due_from_its_first_byte(
    upstream: RunningServer, make_bridge: MakeBridge, content_type: str
) -> None:
    """Each byte comes well within the timeout, the message as a whole does not: it is
    late ``limits.body_read_timeout_s`` after its first byte, not after its last."""
    bridge = await make_bridge(upstream.target, limits={"body_read_timeout_s": 1.5})
    headers = [("content-type", content_type), ("connect-protocol-version", "1")]
    message = envelope(kitchen_pb2.StreamReply(text="t" * 24).SerializeToString())
    async with h2c_connection(bridge.server.proxy_port) as client:
        stream = client.request(f"{TEST}/ClientStream", headers, b"", end=False)
        state = client.streams[stream]
        if await trickle(client, stream, message):  # ~7.5 s in all, one byte every 0.25 s
            client.send(stream, b"", end=True)
        await client.answer(stream)
        answer = repr(state.headers) + bytes(state.body).decode("latin-1")
        assert "limits.body_read_timeout_s" in answer, answer


async def test_a_header_block_never_finished_is_held_no_bigger_than_the_limit(
    bridge: RunningBridge,
) -> None:
    """h2 keeps a header block's frames (up to 64 CONTINUATIONs of 16 KiB: ~1 MiB) until
    its end, and only then checks the decoded size: a block that passes the limit while
    still unfinished ends the connection then, not at the idle timeout."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()  # SETTINGS in
        piece = b"\x00" * 16000
        client.writer.write(HeadersFrame(1, data=piece).serialize())  # no END_HEADERS
        for _ in range(10):
            client.writer.write(ContinuationFrame(1, data=piece).serialize())
        await client.writer.drain()
        await client.until(lambda: client.closed, 10)
        assert client.closed and client.terminated is not None
        assert client.terminated.error_code != ErrorCodes.NO_ERROR
    await echo_works(bridge)


@pytest.mark.parametrize("frame", ["PING", "SETTINGS"])
async def test_a_flood_of_control_frames_is_a_goaway(bridge: RunningBridge, frame: str) -> None:
    """Each PING or SETTINGS costs the bridge an answer (and a SETTINGS a pass over every
    open stream's window), while the client reads them: a flood is answered with GOAWAY,
    as a flood of resets is, instead of taking the event loop from every other client."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        await client.pump()
        for i in range(h2c.MAX_CONTROL_FRAMES + 50):
            if client.terminated is not None:
                break  # (h2 sends nothing after a GOAWAY)
            if frame == "PING":
                client.conn.ping(i.to_bytes(8, "big"))
            else:
                client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: i})
            client.flush()
            if i % 100 == 0:
                await client.writer.drain()
                await client.pump(0.01)
        await calmed(client)
    await echo_works(bridge)
