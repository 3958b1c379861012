"""limits.body_read_timeout_s: a body that does not arrive in time is a 408, then a closed socket.

Real bridge processes with the timeout at 1 s, one with the lean HTTP/1.1
path and one without; the client trickles bytes over a raw socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from tests.helpers.process import BridgeProcess
from tests.helpers.raw_http import (
    CLIENT_STREAM,
    SLEEP,
    Answer,
    both_paths,
    comparable,
    exchange,
    message_of,
    raw_request,
    read_answer,
)
from tests.helpers.servers import RunningServer

TIMEOUT = {"GRPC_BRIDGE_LIMITS__BODY_READ_TIMEOUT_S": "1"}
MESSAGE = "request body not received within 1 s (limits.body_read_timeout_s)"
NDJSON = "Content-Type: application/x-ndjson"


@pytest.fixture
async def paths(upstream: RunningServer) -> AsyncIterator[tuple[BridgeProcess, BridgeProcess]]:
    async with both_paths(upstream.target, **TIMEOUT) as pair:
        yield pair


async def trickle(
    port: int, head: bytes, pieces: list[bytes], every: float, within: float = 8.0
) -> tuple[Answer, bool, float]:
    """Write ``head``, then a piece every ``every`` s; the answer, whether the socket then
    closed, and how long the answer took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()

    async def send() -> None:
        writer.write(head)
        for piece in pieces:
            await asyncio.sleep(every)
            writer.write(piece)

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(within):
            answer: Answer = await read_answer(reader)
            took = time.perf_counter() - started
            # After a refusal, the bridge closes (a keep-alive answer leaves it open):
            # a reset when a trickled byte reached the closed socket.
            try:
                closed = answer[0] >= 400 and await reader.read() == b""
            except ConnectionResetError:
                closed = True
    except TimeoutError:
        answer, closed, took = "timeout", False, within
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return answer, closed, took


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_a_trickled_chunked_body_is_a_408_then_closed(
    upstream: RunningServer, paths: tuple[BridgeProcess, BridgeProcess]
) -> None:
    """The issue's attack: a chunked body, one byte at a time, forever."""
    head = raw_request(SLEEP, b"", "Transfer-Encoding: chunked", length=False)
    pieces = [chunk(bytes([b])) for b in b'{"tag": "slow", "duration": "0s"}' * 4]
    answers = []
    for bp in paths:
        answer, closed, took = await trickle(bp.proxy_port, head, pieces, every=0.3)
        assert not isinstance(answer, str), answer
        assert answer[0] == 408, answer
        assert message_of(answer) == MESSAGE
        assert orjson.loads(answer[2])["code"] == 4  # DEADLINE_EXCEEDED
        assert answer[1]["connection"] == "close"
        assert closed
        assert 0.9 < took < 5.0
        answers.append(answer)
    assert comparable(answers[0]) == comparable(answers[1])
    assert upstream.test.completed == []


async def test_a_body_short_of_its_content_length_is_a_408_on_both_paths(
    upstream: RunningServer, paths: tuple[BridgeProcess, BridgeProcess]
) -> None:
    """The lean path answers a late body itself, as the aiohttp path does."""
    body = b'{"tag": "short", "duration": "0s"}'
    data = raw_request(SLEEP, body)[:-5]
    answers = [await exchange(bp.proxy_port, data, within=8.0) for bp in paths]
    assert comparable(answers[0]) == comparable(answers[1])
    assert not isinstance(answers[0], str) and answers[0][0] == 408, answers
    assert message_of(answers[0]) == MESSAGE
    for bp in paths:
        line = await bp.wait_for("request")
        assert line["http_status"] == 408
        assert line["error"] == MESSAGE
        metrics = await exchange(
            bp.admin_port, b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        assert not isinstance(metrics, str)
        assert b'grpc_bridge_rejected_requests_total{reason="body_timeout"} 1.0' in metrics[2]


async def test_a_slow_head_is_closed_by_the_lean_path(
    paths: tuple[BridgeProcess, BridgeProcess],
) -> None:
    fast, _ = paths
    answer = await exchange(fast.proxy_port, b"POST /bridgetest.v1.TestService/Sl", within=5.0)
    assert answer == "eof"


@pytest.mark.long
async def test_a_request_stream_may_pause_between_messages(
    upstream: RunningServer, paths: tuple[BridgeProcess, BridgeProcess]
) -> None:
    """The timeout runs from a message's first byte to its end, not across a whole stream."""
    head = raw_request(CLIENT_STREAM, b"", NDJSON, "Transfer-Encoding: chunked", length=False)
    head = head.replace(b"Content-Type: application/json\r\n", b"")
    pieces = [chunk(b'{"text": "p%d"}\n' % i) for i in range(3)] + [b"0\r\n\r\n"]
    for bp in paths:
        answer, _, took = await trickle(bp.proxy_port, head, pieces, every=0.7)
        assert not isinstance(answer, str) and answer[0] == 200, answer
        assert orjson.loads(answer[2])["texts"] == ["p0", "p1", "p2"]
        assert took > 2.0  # longer than the timeout in all


async def test_a_trickled_request_stream_message_is_a_408_and_cancels_the_call(
    upstream: RunningServer, paths: tuple[BridgeProcess, BridgeProcess]
) -> None:
    head = raw_request(CLIENT_STREAM, b"", NDJSON, "Transfer-Encoding: chunked", length=False)
    head = head.replace(b"Content-Type: application/json\r\n", b"")
    first = chunk(b'{"text": "whole"}\n')
    pieces = [first] + [chunk(bytes([b])) for b in b'{"text": "never ends"}' * 4]
    for bp in paths:
        upstream.test.cancelled.clear()
        answer, closed, _ = await trickle(bp.proxy_port, head, pieces, every=0.25)
        assert not isinstance(answer, str) and answer[0] == 408, answer
        assert message_of(answer) == MESSAGE
        assert closed
        await upstream.test.wait_for("cancelled", "whole")
