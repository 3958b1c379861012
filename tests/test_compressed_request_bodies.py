"""Compressed request bodies (Content-Encoding): inflated by the bridge, bounded as they arrive.

Exact bytes go to two real bridge processes, one with the lean HTTP/1.1 path
and one without; both must answer alike. A malformed or truncated stream is a
400 naming the coding and the upstream is never called; a coding not served is
a 415; a bomb is a 413 that costs other clients little time and the bridge
little memory.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from tests.helpers.process import BridgeProcess, rss_bytes
from tests.helpers.raw_http import (
    CLIENT_STREAM,
    ECHO,
    SLEEP,
    both_paths,
    bridge_process,
    comparable,
    exchange,
    message_of,
    raw_request,
)
from tests.helpers.servers import RunningServer

SLEEP_BODY = b'{"tag": "compressed", "duration": "0s"}'


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def with_bad_crc(data: bytes) -> bytes:
    member = bytearray(gzip.compress(data))
    member[-8] ^= 0xFF
    return bytes(member)


@pytest.fixture
async def paths(upstream: RunningServer) -> AsyncIterator[tuple[BridgeProcess, BridgeProcess]]:
    async with both_paths(upstream.target) as pair:
        yield pair


async def on_both(
    paths: tuple[BridgeProcess, BridgeProcess], data: bytes
) -> tuple[int, dict[str, str], bytes]:
    fast, plain = paths
    answers = [await exchange(bp.proxy_port, data) for bp in (fast, plain)]
    assert comparable(answers[0]) == comparable(answers[1])
    answer = answers[0]
    assert not isinstance(answer, str), answer
    return answer


INFLATED = [
    ("gzip", gzip.compress(SLEEP_BODY)),
    ("x-gzip", gzip.compress(SLEEP_BODY)),
    ("GZIP", gzip.compress(SLEEP_BODY)),
    ("deflate", zlib.compress(SLEEP_BODY)),
    ("deflate", deflate_raw(SLEEP_BODY)),  # no zlib wrapper, as some clients send it
    ("gzip", gzip.compress(SLEEP_BODY[:10]) + gzip.compress(SLEEP_BODY[10:])),  # 2 members
    ("identity", SLEEP_BODY),
    ("gzip, identity", gzip.compress(SLEEP_BODY)),
]


async def test_a_compressed_body_is_inflated(
    upstream: RunningServer, paths: tuple[BridgeProcess, BridgeProcess]
) -> None:
    for coding, body in INFLATED:
        upstream.test.completed.clear()
        status, _, answer = await on_both(
            paths, raw_request(SLEEP, body, f"Content-Encoding: {coding}")
        )
        assert status == 200, (coding, answer)
        assert orjson.loads(answer) == {"completed": True, "tag": "compressed"}
        assert upstream.test.completed == ["compressed", "compressed"]


MALFORMED = [
    # The bytes: a gzip header, then garbage (read as an empty body before).
    ("gzip", bytes.fromhex("1f8b0800") + b"garbage", "malformed gzip request body: "),
    ("gzip", b"plainly not gzip", "malformed gzip request body: incorrect header check"),
    ("gzip", gzip.compress(SLEEP_BODY) + b"junk", "after the end of the compressed stream"),
    ("gzip", gzip.compress(SLEEP_BODY)[:-8], "malformed gzip request body: truncated"),
    ("gzip", gzip.compress(SLEEP_BODY)[:-3], "malformed gzip request body: truncated"),
    ("gzip", gzip.compress(SLEEP_BODY)[:15], "malformed gzip request body: truncated"),
    ("gzip", with_bad_crc(SLEEP_BODY), "malformed gzip request body: incorrect data check"),
    ("deflate", zlib.compress(SLEEP_BODY)[:-4], "malformed deflate request body: truncated"),
    ("deflate", zlib.compress(SLEEP_BODY) + b"x", "malformed deflate request body: data after"),
    ("deflate", b"\x78\x9cnot deflate at all", "malformed deflate request body: "),
]


async def test_a_malformed_compressed_body_is_a_400_and_no_call(
    upstream: RunningServer, paths: tuple[BridgeProcess, BridgeProcess]
) -> None:
    for coding, body, message in MALFORMED:
        answer = await on_both(paths, raw_request(SLEEP, body, f"Content-Encoding: {coding}"))
        assert answer[0] == 400, (coding, body, answer)
        assert message in message_of(answer)
        assert orjson.loads(answer[2])["code"] == 3
    assert upstream.test.completed == []


async def test_a_malformed_chunked_compressed_body_is_a_400(
    upstream: RunningServer, paths: tuple[BridgeProcess, BridgeProcess]
) -> None:
    member = gzip.compress(SLEEP_BODY)[:-8]
    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (member[:9], member[9:])) + b"0\r\n\r\n"
    )
    data = raw_request(
        SLEEP, chunked, "Transfer-Encoding: chunked", "Content-Encoding: gzip", length=False
    )
    answer = await on_both(paths, data)
    assert answer[0] == 400
    assert "malformed gzip request body: truncated" in message_of(answer)
    assert upstream.test.completed == []


NOT_SERVED = [
    ("br", "'br'"),
    ("zstd", "'zstd'"),
    ("compress", "'compress'"),
    ("gzip, gzip", "'gzip, gzip' stacks 2 codings"),
    ("deflate, gzip", "'deflate, gzip' stacks 2 codings"),
]


async def test_a_coding_not_served_is_a_415(
    upstream: RunningServer, paths: tuple[BridgeProcess, BridgeProcess]
) -> None:
    body = gzip.compress(SLEEP_BODY)
    for coding, shown in NOT_SERVED:
        answer = await on_both(paths, raw_request(SLEEP, body, f"Content-Encoding: {coding}"))
        assert answer[0] == 415, answer
        message = message_of(answer)
        assert shown in message
        assert "send gzip, deflate or identity" in message
    assert upstream.test.completed == []


async def test_a_gzip_bomb_is_a_413_that_other_clients_barely_notice(
    upstream: RunningServer,
) -> None:
    """1 MB on the wire, 1 GiB inflated: refused at the limit, the rest never inflated."""
    bomb = gzip.compress(b"\0" * (1 << 30), compresslevel=9)
    assert len(bomb) < 1_100_000
    data = raw_request(ECHO, bomb, "Content-Encoding: gzip")
    async with bridge_process(upstream.target, fast_path=True) as bp:
        # Warm up (first calls pay for connections and caches), then the baseline RSS.
        for _ in range(3):
            await exchange(bp.proxy_port, raw_request(ECHO, b"{}"))
        before = rss_bytes(bp.proc.pid)
        done = asyncio.Event()
        latencies: list[float] = []

        async def other_client() -> None:
            while not done.is_set():
                started = time.perf_counter()
                answer = await exchange(bp.proxy_port, raw_request(ECHO, b'{"fString": "x"}'))
                latencies.append(time.perf_counter() - started)
                assert not isinstance(answer, str) and answer[0] == 200

        others = asyncio.create_task(other_client())
        try:
            answers = await asyncio.gather(*(exchange(bp.proxy_port, data) for _ in range(3)))
        finally:
            done.set()
            await others
        after = rss_bytes(bp.proc.pid)
    for answer in answers:
        assert not isinstance(answer, str) and answer[0] == 413, answer
        assert message_of(answer) == (
            "request body is larger than 4194304 bytes (limits.max_request_bytes)"
        )
    # Generous for a loaded 2-CPU box; inflating the bomb whole took 1.2-1.8 s a request.
    assert latencies and max(latencies) < 0.6, latencies
    assert after - before < 16 * 2**20, (before, after)


async def test_a_compressed_request_stream_is_inflated_line_by_line(
    upstream: RunningServer,
) -> None:
    lines = b"".join(b'{"text": "m%d"}\n' % i for i in range(3))
    async with both_paths(upstream.target) as (fast, plain):
        for bp in (fast, plain):
            data = raw_request(
                CLIENT_STREAM,
                gzip.compress(lines),
                "Content-Encoding: gzip",
            ).replace(b"application/json", b"application/x-ndjson")
            answer = await exchange(bp.proxy_port, data)
            assert not isinstance(answer, str) and answer[0] == 200, answer
            assert orjson.loads(answer[2])["texts"] == ["m0", "m1", "m2"]


async def test_a_truncated_compressed_request_stream_cancels_the_call(
    upstream: RunningServer,
) -> None:
    """The call is cancelled, never half-closed: the upstream never completes it.

    Whether the lines before the damage reach the upstream's handler before the
    cancellation does is a race; the upstream records the cancellation either way.
    """
    lines = b"".join(b'{"text": "t%d"}\n' % i for i in range(3))
    data = raw_request(CLIENT_STREAM, gzip.compress(lines)[:-8], "Content-Encoding: gzip").replace(
        b"application/json", b"application/x-ndjson"
    )
    async with bridge_process(upstream.target) as bp:
        answer = await exchange(bp.proxy_port, data)
    assert not isinstance(answer, str) and answer[0] == 400, answer
    assert "malformed gzip request body: truncated" in message_of(answer)
    await upstream.test.wait_for("cancelled", None)
    assert upstream.test.cancelled in (["t0"], [""]), upstream.test.cancelled
    assert upstream.test.completed == []


async def test_a_websocket_deflate_bomb_is_refused_by_its_inflated_size(
    upstream: RunningServer,
) -> None:
    """permessage-deflate, when on and offered: max_message_size counts inflated bytes."""
    deflate = {"GRPC_BRIDGE_WEBSOCKET__PERMESSAGE_DEFLATE": "true"}
    async with (
        bridge_process(upstream.target, **deflate) as bp,
        aiohttp.ClientSession() as session,
    ):
        url = f"http://127.0.0.1:{bp.proxy_port}{CLIENT_STREAM}"
        async with session.ws_connect(url, compress=15) as ws:
            await ws.send_str('{"text": "' + "0" * (8 << 20) + '"}')
            msg = await ws.receive(timeout=10)
            while msg.type == aiohttp.WSMsgType.TEXT:
                msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        answer = await exchange(bp.proxy_port, raw_request(ECHO, b"{}"))
        assert not isinstance(answer, str) and answer[0] == 200
    assert upstream.test.received == []


async def test_the_playground_passes_a_compressed_body_to_the_proxys_decoder(
    upstream: RunningServer,
) -> None:
    """The admin listener inflates nothing: the proxy does, under its own limit."""
    call = "/playground/call/bridgetest.v1.TestService/Sleep"
    bomb = gzip.compress(b" " * (8 << 20))
    async with bridge_process(upstream.target) as bp:
        good = await exchange(
            bp.admin_port, raw_request(call, gzip.compress(SLEEP_BODY), "Content-Encoding: gzip")
        )
        big = await exchange(bp.admin_port, raw_request(call, bomb, "Content-Encoding: gzip"))
        cut = await exchange(
            bp.admin_port,
            raw_request(call, gzip.compress(SLEEP_BODY)[:-8], "Content-Encoding: gzip"),
        )
    assert not isinstance(good, str) and good[0] == 200, good
    assert not isinstance(big, str) and big[0] == 413, big
    assert not isinstance(cut, str) and cut[0] == 400, cut
    assert "malformed gzip request body: truncated" in message_of(cut)
    assert upstream.test.completed == ["compressed"]
