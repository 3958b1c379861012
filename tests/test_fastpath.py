"""The lean HTTP/1.1 path (grpc_bridge/http/fastpath.py) against real bridges and upstreams.

Every test elsewhere already goes through it when its request is plain; these
check the seams: the same bytes as the aiohttp path, pipelining, the hand-over
of a connection to aiohttp mid-stream, disconnects, ``Connection: close``.
Requests are written as raw bytes so the test controls exactly what arrives.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from grpc_bridge.http.fastpath import parse_head
from tests.harness import RunningBridge, running_bridge
from tests.servers import RunningServer

ECHO = "/bridgetest.v1.TestService/Echo"
SLEEP = "/bridgetest.v1.TestService/Sleep"
FAIL = "/bridgetest.v1.TestService/Fail"


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: bridge", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:  # chunked (aiohttp's streamed answers)
        body = b""
        while (size := int((await reader.readline()).strip(), 16)) != 0:
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    return status, headers, body


@asynccontextmanager
async def connection(b: RunningBridge) -> AsyncIterator[tuple[Any, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", b.server.proxy_port)
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


@asynccontextmanager
async def bridges(upstream: RunningServer) -> AsyncIterator[tuple[RunningBridge, RunningBridge]]:
    async with (
        running_bridge(upstream.target) as fast,
        running_bridge(upstream.target, listen={"fast_path": False}) as plain,
    ):
        yield fast, plain


async def exchange(b: RunningBridge, data: bytes, count: int) -> list[Any]:
    async with connection(b) as (reader, writer):
        writer.write(data)
        return [await read_response(reader) for _ in range(count)]


def comparable(response: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = response
    fixed = {k: v for k, v in headers.items() if k not in ("date", "x-request-id")}
    return status, fixed, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        post(ECHO, b'{"fString": "hi", "fInt64": "7"}'),
        post(ECHO, b'{"fString": "hi"}', "X-Request-Id: abc-123", "x-custom: kept"),
        post(
            "/bridgetest.v1.TestService/Fail",
            b'{"code": 5, "message": "gone", "withDetails": true}',
        ),
        post(ECHO, b'{"fString": 12}'),  # bad JSON types: aiohttp answers
        post(ECHO, b"{not json"),
        post("/nope.Service/Missing", b"{}"),
        post(ECHO, b"{}", "Grpc-Timeout: banana"),
        post(ECHO, b"{}", "Connection: close"),
        # Parse errors: aiohttp's parser answers them with the Status body on both paths.
        post(ECHO, b"{}", "X(y): 1"),
        post(ECHO, b"{}", "X-Big: " + "a" * 9000),
        post(ECHO, b"{}").replace(b"Host: bridge\r\n", b""),
        post(ECHO, b"{}", *(f"X-{i}: 1" for i in range(129))),
        post(ECHO, b"{}", "User-Agent: a", "User-Agent: b"),
        post(ECHO, b"{}").replace(b"Content-Length: 2", b"Content-Length: 2x"),
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 16,
    ],
)
async def test_answers_are_the_aiohttp_paths_own(
    upstream: RunningServer, request_bytes: bytes
) -> None:
    async with bridges(upstream) as (fast, plain):
        (got,) = await exchange(fast, request_bytes, 1)
        (want,) = await exchange(plain, request_bytes, 1)
    assert comparable(got) == comparable(want)
    if b"X-Request-Id: abc-123" in request_bytes:
        assert got[1]["x-request-id"] == "abc-123"


async def test_pipelined_requests_with_a_hand_over_in_the_middle(upstream: RunningServer) -> None:
    chunked = (
        f"POST {ECHO} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        '7\r\n{"fInt3\r\n9\r\n2": 42}  \r\n0\r\n\r\n'
    ).encode()
    data = (
        post(ECHO, b'{"fString": "one"}')
        + post(ECHO, b'{"fString": "two"}')
        + chunked  # aiohttp takes the connection from here on
        + post(ECHO, b'{"fString": "four"}')
    )
    async with running_bridge(upstream.target) as b:
        responses = await exchange(b, data, 4)
    bodies = [orjson.loads(body) for _, _, body in responses]
    assert [r[0] for r in responses] == [200, 200, 200, 200]
    assert [body.get("fString") for body in bodies] == ["one", "two", "", "four"]
    assert bodies[2]["fInt32"] == 42


async def test_keep_alive_serves_many_requests_on_one_connection(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b, connection(b) as (reader, writer):
        for i in range(50):
            writer.write(post(ECHO, b'{"fInt32": %d}' % i))
            status, headers, body = await read_response(reader)
            assert status == 200 and orjson.loads(body)["fInt32"] == i
            assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])


async def test_connection_close_is_honoured(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b, connection(b) as (reader, writer):
        writer.write(post(ECHO, b"{}", "Connection: close"))
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await reader.read() == b""


async def test_a_client_gone_cancels_the_upstream_call(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        async with connection(b) as (_, writer):
            writer.write(post(SLEEP, b'{"duration": "5s", "tag": "fast-gone"}'))
            await asyncio.sleep(0.3)
        await upstream.test.wait_for("cancelled", "fast-gone", within=3)


async def test_a_body_over_the_limit_is_refused_by_aiohttp(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target, limits={"max_request_bytes": 100}) as b:
        (response,) = await exchange(b, post(ECHO, b'{"fString": "%s"}' % (b"x" * 200)), 1)
    assert response[0] == 413


def test_only_plain_heads_are_taken() -> None:
    def head(*lines: str) -> bytes:
        return "\r\n".join(lines).encode()

    plain = head("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2")
    parsed = parse_head(plain)
    assert parsed is not None and parsed.path == "/a.B/C" and parsed.length == 2
    for refused in (
        head("GET /a.B/C HTTP/1.1", "Content-Length: 2"),
        head("POST /a.B/C HTTP/1.0", "Content-Length: 2"),
        head("POST /a.B/C?x=1 HTTP/1.1", "Content-Length: 2"),
        head("POST /a%2EB/C HTTP/1.1", "Content-Length: 2"),
        head("POST /a.B/C HTTP/1.1"),  # no Content-Length
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", "Content-Length: 2"),
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", "Transfer-Encoding: chunked"),
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", "Origin: https://x"),
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", "Expect: 100-continue"),
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", "Content-Type: text/plain"),
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", "Accept: application/x-ndjson"),
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", " folded"),
        head("POST /a.B/C HTTP/1.1", "Content-Length : 2"),
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", "X-Bad: a\x01b"),
        "POST /a.B/C HTTP/1.1\r\nContent-Length: 2\r\nX: é".encode(),
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", "User-Agent: a", "User-Agent: b"),
        head("POST /a.B/C HTTP/1.1", "Content-Length: 2", *(f"X-{i}: 1" for i in range(128))),
    ):
        assert parse_head(refused) is None, refused
