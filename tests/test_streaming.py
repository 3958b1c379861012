"""Server streaming over HTTP: NDJSON and SSE against a real upstream, with timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.servers import RunningServer
from tests.helpers.streamtools import (
    NDJSON,
    SERVER_STREAM,
    Timed,
    ndjson_lines,
    sse_events,
    sse_stream,
)


def stream_body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


async def collect_ndjson(bridge: RunningBridge, **fields: Any) -> tuple[int, list[Timed], Any]:
    started = time.monotonic()
    async with bridge.session.post(
        f"{bridge.url}{SERVER_STREAM}",
        data=stream_body(**fields),
        headers={"Content-Type": "application/json"},
    ) as resp:
        lines = [line async for line in ndjson_lines(resp, started)]
        return resp.status, lines, resp.headers


async def test_ndjson_lines_are_flushed_as_messages_arrive(bridge: RunningBridge) -> None:
    status, lines, headers = await collect_ndjson(bridge, count=3, interval="0.3s", tag="t")
    assert status == 200
    assert headers["Content-Type"] == NDJSON
    assert headers["Cache-Control"] == "no-cache"
    assert "X-Request-Id" in headers
    assert [line.value for line in lines] == [
        {"result": {"index": i, "text": f"t-{i}"}} for i in range(3)
    ]
    # The first line left the bridge long before the stream was over (buffered
    # lines would arrive together).
    assert lines[-1].at - lines[0].at > 0.5


async def test_mid_stream_failure_ends_with_an_error_line(bridge: RunningBridge) -> None:
    status, lines, _ = await collect_ndjson(bridge, count=5, fail_code=9, fail_after=2)
    assert status == 200
    assert [line.value for line in lines[:2]] == [
        {"result": {"index": i, "text": f"-{i}"}} for i in range(2)
    ]
    assert lines[2].value == {"error": {"code": 9, "message": "failing after 2", "details": []}}
    assert len(lines) == 3


async def test_failure_before_the_first_message_is_a_plain_error(bridge: RunningBridge) -> None:
    status, body, headers = await bridge.post(
        SERVER_STREAM, {"count": 5, "failCode": 5, "failAfter": 0}
    )
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert body == {"code": 5, "message": "failing after 0", "details": []}


async def test_empty_stream_is_200_with_an_empty_body(bridge: RunningBridge) -> None:
    status, lines, headers = await collect_ndjson(bridge, count=0)
    assert (status, lines, headers["Content-Type"]) == (200, [], NDJSON)


async def test_get_with_query_fields_streams(bridge: RunningBridge) -> None:
    status, body, headers = await bridge.get(f"{SERVER_STREAM}?count=2&tag=q")
    assert status == 200 and headers["Content-Type"] == NDJSON
    assert [orjson.loads(line) for line in body.splitlines()] == [
        {"result": {"index": 0, "text": "q-0"}},
        {"result": {"index": 1, "text": "q-1"}},
    ]


async def test_bad_query_parameter_is_400_before_any_call(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.get(f"{SERVER_STREAM}?count=x")
    assert status == 400 and body["code"] == 3 and "count" in body["message"]


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, NDJSON),
        ("*/*", NDJSON),
        ("application/json", NDJSON),
        ("application/x-ndjson", NDJSON),
        ("text/event-stream", "text/event-stream"),
        ("application/x-ndjson;q=0.5, text/event-stream", "text/event-stream"),
        ("text/event-stream;q=0.2, */*", NDJSON),
        ("image/png", NDJSON),
    ],
)
async def test_accept_negotiation(
    bridge: RunningBridge, accept: str | None, content_type: str
) -> None:
    headers = {"Accept": accept} if accept else {}
    status, _, got = await bridge.get(f"{SERVER_STREAM}?count=1", headers=headers)
    assert status == 200 and got["Content-Type"] == content_type


async def test_sse_messages_and_explicit_end(bridge: RunningBridge) -> None:
    started = time.monotonic()
    async with bridge.session.get(
        f"{bridge.url}{SERVER_STREAM}?count=3&interval=0.3s&tag=s",
        headers={"Accept": "text/event-stream"},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        events = [event async for event in sse_stream(resp, started)]
    assert [e.value for e in events] == [
        ("message", {"index": 0, "text": "s-0"}),
        ("message", {"index": 1, "text": "s-1"}),
        ("message", {"index": 2, "text": "s-2"}),
        ("end", {"code": 0, "message": "", "details": []}),
    ]
    assert events[-1].at - events[0].at > 0.5


async def test_sse_failures_arrive_in_the_end_event(bridge: RunningBridge) -> None:
    sse = {"Accept": "text/event-stream"}
    status, body, _ = await bridge.get(
        f"{SERVER_STREAM}?count=3&failCode=8&failAfter=1", headers=sse
    )
    assert status == 200
    assert sse_events(body) == [
        ("message", {"index": 0, "text": "-0"}),
        ("end", {"code": 8, "message": "failing after 1", "details": []}),
    ]
    # Before the first message too: EventSource can't read a non-200 body.
    status, body, _ = await bridge.get(
        f"{SERVER_STREAM}?count=3&failCode=7&failAfter=0", headers=sse
    )
    assert status == 200
    assert sse_events(body) == [("end", {"code": 7, "message": "failing after 0", "details": []})]


@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
async def test_client_disconnect_cancels_the_upstream_at_once(
    bridge: RunningBridge, upstream: RunningServer, accept: str
) -> None:
    tag = f"gone-{accept}"
    resp = await bridge.session.get(
        f"{bridge.url}{SERVER_STREAM}?count=3&interval=10s&tag={tag}",
        headers={"Accept": accept},
    )
    assert resp.status == 200
    await resp.content.readline()  # the first message arrived
    resp.close()  # drop the connection
    # At once: long before the upstream's next write (10 s away) could fail.
    await upstream.test.wait_for("cancelled", tag, within=1.0)
    assert tag not in upstream.test.completed


async def settled(read: Callable[[], int], *, quiet: float = 0.3, within: float = 5.0) -> int:
    """``read()`` once it stopped changing for ``quiet`` seconds; TimeoutError if it never does."""
    loop = asyncio.get_running_loop()
    last, since = read(), loop.time()
    async with asyncio.timeout(within):
        while loop.time() - since < quiet:
            await asyncio.sleep(0.05)
            if (now := read()) != last:
                last, since = now, loop.time()
    return last


async def test_slow_reader_pauses_the_upstream(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    """Backpressure: the bridge reads on only as the client takes messages."""
    tag = "bp" + "x" * 4000  # ~4 KB messages fill the socket buffers quickly
    count = 100_000
    resp = await bridge.session.post(
        f"{bridge.url}{SERVER_STREAM}",
        data=stream_body(count=count, tag=tag),
        # Uncompressed: these repetitive messages would compress to a few bytes each,
        # and the buffers the test fills are counted in bytes.
        headers={"Content-Type": "application/json", "Accept-Encoding": "identity"},
    )
    try:
        await resp.content.readline()
        # The client reads nothing now. Without backpressure the upstream
        # would write on (tens of thousands of messages a second) and never
        # settle; with it, it stops once the buffers between (sockets, HTTP/2
        # windows) are full: a few MB, not the whole stream.
        # .get: the first line can reach the client before the upstream's write() returns.
        paused_at = await settled(lambda: upstream.test.sent.get(tag, 0))
        assert paused_at < count // 10
        # Taking messages again lets it go on.
        for _ in range(paused_at + 100):
            await resp.content.readline()
            if upstream.test.sent[tag] > paused_at:
                break
        assert upstream.test.sent[tag] > paused_at
    finally:
        resp.close()
    await upstream.test.wait_for("cancelled", tag, within=2.0)


async def test_idle_stream_times_out(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target, streams={"idle_timeout_s": 0.3}) as bridge:
        status, lines, _ = await collect_ndjson(bridge, count=3, interval="5s", tag="idle")
    assert status == 200
    assert lines[0].value == {"result": {"index": 0, "text": "idle-0"}}
    error = lines[1].value["error"]
    assert error["code"] == 4 and "streams.idle_timeout_s" in error["message"]
    assert 0.25 < lines[1].at < 2.0
    await upstream.test.wait_for("cancelled", "idle", within=1.0)


async def test_messages_keep_an_idle_timeout_at_bay(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target, streams={"idle_timeout_s": 0.4}) as bridge:
        status, lines, _ = await collect_ndjson(bridge, count=4, interval="0.2s")
    assert status == 200 and len(lines) == 4 and "error" not in lines[-1].value


async def test_shutdown_ends_streams_with_an_error_line(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as bridge:
        resp = await bridge.session.get(
            f"{bridge.url}{SERVER_STREAM}?count=3&interval=10s&tag=shut"
        )
        assert orjson.loads(await resp.content.readline())["result"]["index"] == 0
        stopping = asyncio.create_task(bridge.server.drain_and_stop())
        last = orjson.loads(await resp.content.readline())
        assert last == {
            "error": {"code": 14, "message": "grpc-bridge is shutting down", "details": []}
        }
        assert await resp.content.read() == b""
        async with asyncio.timeout(5):
            await stopping
    await upstream.test.wait_for("cancelled", "shut", within=1.0)


async def test_grpc_timeout_header_ends_a_stream(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    started = time.monotonic()
    async with bridge.session.get(
        f"{bridge.url}{SERVER_STREAM}?count=3&interval=5s&tag=deadline",
        headers={"Grpc-Timeout": "300m"},
    ) as resp:
        lines = [line async for line in ndjson_lines(resp, started)]
    assert lines[0].value["result"]["index"] == 0
    assert lines[1].value["error"]["code"] == 4
    assert lines[1].at < 2.0


async def test_log_line_names_the_framing(bridge: RunningBridge) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        await bridge.get(f"{SERVER_STREAM}?count=1", headers={"Accept": "text/event-stream"})
    lines = [e for e in logs if e.get("event") == "request"]
    assert lines[-1]["framing"] == "sse" and lines[-1]["grpc_code"] == "OK"
