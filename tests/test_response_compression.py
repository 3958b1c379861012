"""Response compression against real bridge processes and real clients.

``Accept-Encoding`` negotiation (RFC 9110 §12.5.3) for unary answers on both
HTTP paths (the same bytes either way), NDJSON and SSE streams flushed per
message, ``Vary``, 406, the settings, WebSocket left alone, and a large answer
compressed without stalling other clients.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from grpc_bridge.edge import fastpath
from grpc_bridge.pipeline.compress import Choice, ResponseCompression, negotiate
from grpc_bridge.settings import CompressionSettings, ConfigError, load_settings
from tests.helpers.compression_tools import (
    CODINGS,
    complete,
    decode,
    exchange,
    incremental,
    vary,
    without_volatile,
)
from tests.helpers.harness import running_bridge
from tests.helpers.packaging_tools import shell_commands
from tests.helpers.process import curl_status, expected_status, running_demo
from tests.helpers.raw_http import bridge_process, read_chunk, read_head
from tests.helpers.raw_http import request as http_request
from tests.helpers.servers import RunningServer
from tests.helpers.shared_bridges import SharedBridges, shared_bridges

ECHO = "/bridgetest.v1.TestService/Echo"
BIDI = "/bridgetest.v1.TestService/Bidi"
BIG = orjson.dumps({"fString": "compressible text " * 2000})
SMALL = orjson.dumps({"fString": "hi"})
DOCS = Path(__file__).parent.parent / "docs" / "compression.md"
PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["lean", "aiohttp"])


def _ae(value: str) -> str:
    return f"Accept-Encoding: {value}"


@pytest.fixture(scope="module")
def edges() -> Iterator[SharedBridges]:
    """Bridges with the default settings, for the tests that only read their answers."""
    with shared_bridges() as pair:
        yield pair


@PATHS
async def test_unary_answers_in_each_coding(edges: SharedBridges, fast_path: bool) -> None:
    port = edges.port(fast_path)
    status, headers, plain = await exchange(port, http_request("POST", ECHO, BIG))
    assert status == 200 and "content-encoding" not in headers
    assert vary(headers) == ["accept-encoding"]
    url = f"http://127.0.0.1:{port}{ECHO}"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for coding in CODINGS:
            headers = {"Content-Type": "application/json", "Accept-Encoding": coding}
            async with session.post(url, data=BIG, headers=headers) as resp:
                raw = await resp.read()
                assert resp.status == 200
                assert resp.headers["Content-Encoding"] == coding
                assert vary(resp.headers) == ["accept-encoding"]
                assert int(resp.headers["Content-Length"]) == len(raw)
                assert len(raw) < len(plain) // 10
                assert decode(coding, raw) == plain


async def test_both_paths_send_the_same_bytes(edges: SharedBridges) -> None:
    fail = b'{"code": 5, "message": "' + b"gone " * 400 + b'"}'
    requests = [
        http_request("POST", ECHO, BIG, _ae(coding))
        for coding in (*CODINGS, "gzip;q=0.5, br;q=0.9", "*", "x-gzip", "deflate", "")
    ]
    requests += [
        http_request("POST", ECHO, BIG),
        http_request("POST", ECHO, SMALL, _ae("gzip")),
        http_request("POST", ECHO, SMALL, _ae("identity;q=0, gzip")),
        http_request("POST", ECHO, SMALL, _ae("identity;q=0")),
        http_request("POST", ECHO, BIG, _ae("*;q=0")),
        # An error answer over min_bytes is compressed like any other.
        http_request("POST", "/bridgetest.v1.TestService/Fail", fail, _ae("br")),
        # Given twice: aiohttp joins the values (the lean path hands such a head over).
        http_request("POST", ECHO, BIG, _ae("gzip;q=0.1"), _ae("br")),
    ]
    for request in requests:
        a = without_volatile(await exchange(edges.port("lean"), request))
        b = without_volatile(await exchange(edges.port("aiohttp"), request))
        assert a == b, request[:200]


async def test_the_lean_path_compresses_itself(
    upstream: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed_over: list[bytes] = []
    original = fastpath.FastConnection._hand_over

    def spy(self: fastpath.FastConnection, raw: bytes) -> None:
        handed_over.append(raw)
        original(self, raw)

    monkeypatch.setattr(fastpath.FastConnection, "_hand_over", spy)
    async with running_bridge(upstream.target) as b:
        status, headers, body = await exchange(
            b.server.proxy_port, http_request("POST", ECHO, BIG, _ae("gzip"))
        )
        assert status == 200 and headers["content-encoding"] == "gzip"
        assert orjson.loads(decode("gzip", body))["fString"] == orjson.loads(BIG)["fString"]
        assert handed_over == []
        # No acceptable coding at all: aiohttp answers (the 406 is written once).
        status, _, _ = await exchange(
            b.server.proxy_port, http_request("POST", ECHO, BIG, _ae("identity;q=0"))
        )
        assert status == 406 and len(handed_over) == 1


@PATHS
async def test_negotiation(edges: SharedBridges, fast_path: bool) -> None:
    cases = [
        # (Accept-Encoding, body, the coding expected; None: identity)
        ("gzip;q=0.5, br;q=0.9", BIG, "br"),
        ("GZIP;Q=0.5, zstd;q=0.2", BIG, "gzip"),
        ("gzip, br, zstd", BIG, "zstd"),  # a tie: the server's order (zstd, br, gzip)
        ("br;q=0, *", BIG, "zstd"),
        ("br;q=0, gzip", BIG, "gzip"),
        ("gzip;q=0.5, identity", BIG, None),  # identity preferred
        ("gzip;q=0.5, identity;q=0.4", BIG, "gzip"),
        ("gzip;q=0", BIG, None),
        ("deflate, compress", BIG, None),
        ("", BIG, None),
        ("gzip", SMALL, None),  # under compression.min_bytes
        ("identity;q=0, gzip", SMALL, "gzip"),  # identity refused: even a small body
        ("*;q=0, identity", BIG, None),
    ]
    port = edges.port(fast_path)
    for accept_encoding, body, expected in cases:
        request = http_request("POST", ECHO, body, _ae(accept_encoding))
        status, headers, raw = await exchange(port, request)
        assert status == 200, accept_encoding
        assert headers.get("content-encoding") == expected, accept_encoding
        assert vary(headers) == ["accept-encoding"]
        decoded = decode(expected, raw) if expected else raw
        assert orjson.loads(decoded)["fString"] == orjson.loads(body)["fString"]
    for refused in ("identity;q=0", "*;q=0", "identity;q=0, deflate"):
        request = http_request("POST", ECHO, BIG, _ae(refused))
        status, headers, raw = await exchange(port, request)
        assert status == 406 and "content-encoding" not in headers
        assert headers["content-type"] == "application/json"
        error = orjson.loads(raw)
        assert error["code"] == 3 and "Accept-Encoding" in error["message"], error
    # HEAD: GET's status and Vary, never a compressed body (nor its length).
    query = "/bridgetest.v1.TestService/Lookup?fString=" + "compressible+" * 300
    get = await exchange(port, http_request("GET", query, None, _ae("gzip")))
    head = await exchange(port, http_request("HEAD", query, None, _ae("gzip")), head_only=True)
    assert get[1]["content-encoding"] == "gzip"
    assert head[0] == 200 and "content-encoding" not in head[1]
    assert vary(head[1]) == ["accept-encoding"]
    assert int(head[1]["content-length"]) == len(decode("gzip", get[2]))


async def test_settings_turn_it_off_or_narrow_it(upstream: RunningServer) -> None:
    request = http_request("POST", ECHO, BIG, _ae("zstd, br, gzip"))
    async with bridge_process(upstream.target, GRPC_BRIDGE_COMPRESSION__ENABLED="false") as bp:
        status, headers, raw = await exchange(bp.proxy_port, request)
        assert status == 200 and "content-encoding" not in headers and "vary" not in headers
        assert orjson.loads(raw)["fString"] == orjson.loads(BIG)["fString"]
        # Off, a refusal of identity is not answered with 406: the header is not read.
        refused = http_request("POST", ECHO, SMALL, _ae("identity;q=0"))
        assert (await exchange(bp.proxy_port, refused))[0] == 200
    async with bridge_process(
        upstream.target,
        GRPC_BRIDGE_COMPRESSION__ALGORITHMS='["gzip", "br"]',
        GRPC_BRIDGE_COMPRESSION__MIN_BYTES="10",
        GRPC_BRIDGE_COMPRESSION__GZIP_LEVEL="1",
    ) as bp:
        _, headers, _ = await exchange(bp.proxy_port, request)
        assert headers["content-encoding"] == "gzip"
        small = http_request("POST", ECHO, SMALL, _ae("br"))
        assert (await exchange(bp.proxy_port, small))[1]["content-encoding"] == "br"
        only_zstd = http_request("POST", ECHO, BIG, _ae("zstd"))
        assert "content-encoding" not in (await exchange(bp.proxy_port, only_zstd))[1]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("sse", [False, True], ids=["ndjson", "sse"])
async def test_a_compressed_stream_delivers_each_message_as_it_arrives(
    edges: SharedBridges, coding: str, sse: bool
) -> None:
    """Bidi echoes each line at once and waits for the next: the client sends line n+1
    only once it has decoded the answer to line n, so nothing is held back for a batch."""
    head = [
        f"POST {BIDI} HTTP/1.1",
        "Host: bridge",
        "Content-Type: application/x-ndjson",
        "Transfer-Encoding: chunked",
        _ae(coding),
        *(["Accept: text/event-stream"] if sse else []),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", edges.port("lean"))
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        feed = incremental(coding)
        decoded = raw = b""
        headers: dict[str, str] = {}
        for index in range(4):
            # The third is over compression.executor_bytes: compressed in a thread.
            text = f"m{index}" + ("y" * 100_000 if index == 2 else "")
            line = orjson.dumps({"text": text, "index": index}) + b"\n"
            writer.write(_chunk(line))
            await writer.drain()
            async with asyncio.timeout(10):
                if index == 0:
                    status, headers = await read_head(reader)
                    assert status == 200
                while f"echo: m{index}".encode() not in decoded:
                    chunk = await read_chunk(reader)
                    assert chunk, "the stream ended early"
                    raw += chunk
                    decoded += feed(chunk)
            assert f"m{index + 1}".encode() not in decoded
        writer.write(b"0\r\n\r\n")
        async with asyncio.timeout(10):
            while chunk := await read_chunk(reader):
                raw += chunk
                decoded += feed(chunk)
    finally:
        writer.close()
        await writer.wait_closed()
    assert headers["content-encoding"] == coding
    assert vary(headers) == ["accept-encoding"]
    text = decoded.decode()
    if sse:
        assert text.count("event: message") == 4 and "event: end" in text
    else:
        lines = [orjson.loads(line) for line in text.splitlines()]
        texts = [m["result"]["text"] for m in lines]
        assert texts == [f"echo: m{i}" + ("y" * 100_000 if i == 2 else "") for i in range(4)]
    assert complete(coding, raw) == decoded


async def test_websocket_is_never_compressed(edges: SharedBridges) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"ws://127.0.0.1:{edges.port('lean')}{BIDI}",
            headers={"Accept-Encoding": "gzip"},
            compress=15,  # permessage-deflate offered, as browsers do
        ) as ws,
    ):
        # aiohttp's permessage-deflate is off (websocket.permessage_deflate).
        assert ws.compress == 0
        await ws.send_str(orjson.dumps({"text": "x" * 5000}).decode())
        message = await ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.TEXT
        assert "x" * 5000 in message.data


async def test_a_large_answer_does_not_stall_other_clients(upstream: RunningServer) -> None:
    """zstd at level 19 on 2 MB takes long; meanwhile small requests are answered at once.

    Were it compressed on the event loop, every small request sent meanwhile would
    wait for it: the bound is half the large answer's own time, however slow the box.
    """
    words = [f"w{n:x}" for n in range(5000)]
    rng = random.Random(7)
    text = " ".join(rng.choice(words) for _ in range(400_000))[:2_000_000]
    large = http_request("POST", ECHO, orjson.dumps({"fString": text}), _ae("zstd"))
    small = http_request("POST", ECHO, SMALL)
    async with bridge_process(
        upstream.target,
        GRPC_BRIDGE_COMPRESSION__ZSTD_LEVEL="19",
        GRPC_BRIDGE_COMPRESSION__EXECUTOR_BYTES="65536",
    ) as bp:
        await exchange(bp.proxy_port, small)  # warm: the channel and the route are ready
        started = time.monotonic()
        big = asyncio.create_task(exchange(bp.proxy_port, large))
        latencies: list[float] = []
        while not big.done():
            sent = time.monotonic()
            assert (await exchange(bp.proxy_port, small))[0] == 200
            latencies.append(time.monotonic() - sent)
        status, headers, body = await big
        elapsed = time.monotonic() - started
    assert status == 200 and headers["content-encoding"] == "zstd"
    assert orjson.loads(decode("zstd", body))["fString"] == text
    assert len(latencies) >= 3, (elapsed, latencies)
    assert max(latencies) < elapsed / 2, (elapsed, latencies)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize("coding", [*CODINGS, None])
async def test_curl_compressed(edges: SharedBridges, coding: str | None) -> None:
    """curl --compressed offers every coding it has; one pinned with -H is honoured too."""
    url = f"http://127.0.0.1:{edges.port('lean')}{ECHO}"
    pinned = ["-H", f"Accept-Encoding: {coding}"] if coding else []
    curl = await asyncio.create_subprocess_exec(
        *("curl", "-s", "--compressed", "-D", "-", url, *pinned),
        *("-H", "Content-Type: application/json", "--data-binary", "@-"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await curl.communicate(BIG)
    head, _, body = out.partition(b"\r\n\r\n")
    used = re.search(rb"(?im)^content-encoding: *(\S+)", head)
    assert used is not None and used.group(1).decode() == (coding or "zstd")
    assert orjson.loads(body)["fString"] == orjson.loads(BIG)["fString"]


def _docs_curl_lines() -> list[str]:
    return [
        line
        for line in shell_commands(DOCS.read_text())
        if line.startswith("curl ") and re.search(r"127\.0\.0\.1:808[01]", line)
    ]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_docs_curl_lines_work_against_the_demo() -> None:
    lines = _docs_curl_lines()
    assert len(lines) >= 4
    async with running_demo() as ports:
        for line in lines:
            cmd = line.replace("127.0.0.1:8080", f"127.0.0.1:{ports['proxy']}").replace(
                "127.0.0.1:8081", f"127.0.0.1:{ports['admin']}"
            )
            assert await curl_status(cmd) == expected_status(line), line


@pytest.mark.parametrize(
    ("value", "codings", "expected"),
    [
        ("gzip", ("zstd", "br", "gzip"), Choice("gzip")),
        ("x-gzip;q=0.3, br;q=0.2", ("zstd", "br", "gzip"), Choice("gzip")),
        ("*", ("br", "gzip"), Choice("br")),
        ("*", ("gzip", "br"), Choice("gzip")),  # the configured order breaks ties
        ("gzip;q=1.5, br;q=-1", ("br", "gzip"), Choice("gzip")),  # weights clamped to 0..1
        ("gzip;q=oops", ("gzip",), Choice(None)),  # a malformed weight is a refusal
        ("gzip;q=0.5, gzip;q=0", ("gzip",), Choice("gzip")),  # the first entry counts
        (" , ;q=1, gzip ; q=0.8 ", ("gzip",), Choice("gzip")),
        ("identity;q=0", ("gzip",), Choice(None, refused=True)),
        ("*;q=0, gzip;q=0.1", ("zstd", "gzip"), Choice("gzip", forced=True)),
        ("*;q=0.5, identity;q=0.6", ("gzip",), Choice(None)),
        ("identity", ("gzip",), Choice(None)),
        ("zstd", (), Choice(None)),
    ],
)
def test_accept_encoding_negotiation(
    value: str, codings: tuple[str, ...], expected: Choice
) -> None:
    assert negotiate(value, codings) == expected


@pytest.mark.parametrize(
    ("compression", "problem"),
    [
        (
            {"algorithms": ["gzip", "gzip"]},
            "compression.algorithms: lists a coding twice",
        ),
        (
            {"algorithms": ["deflate"]},
            "compression.algorithms[0]: Input should be 'zstd', 'br' or 'gzip'",
        ),
        ({"gzip_level": 10}, "compression.gzip_level: Input should be less than or equal to 9"),
        ({"min_bytes": -1}, "compression.min_bytes: Input should be greater than or equal to 0"),
    ],
)
def test_compression_settings_are_checked_at_start_up(
    compression: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(None, {"upstream": "127.0.0.1:1", "compression": compression})
    assert exc.value.problems == [problem]


@pytest.mark.parametrize("coding", CODINGS)
async def test_a_write_cancelled_mid_compression_leaves_the_stream_decodable(coding: str) -> None:
    """A stream write cancelled (idle timeout, shutdown) while its compression runs in a
    thread has advanced the compressor: its output goes out first with the next write."""
    writer = ResponseCompression(CompressionSettings(executor_bytes=1)).stream(coding)
    first = b"first message\n" * 50_000
    task = asyncio.create_task(writer.chunk(first))
    await asyncio.sleep(0)  # the compression has started in a worker thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    out = await writer.chunk(b'{"error": "the end"}\n') + await writer.finish()
    assert complete(coding, out) == first + b'{"error": "the end"}\n'
