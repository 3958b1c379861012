"""Requests aiohttp's HTTP parser refuses get the Status body (grpc_bridge/edge/parse_errors.py).

Raw sockets send each malformed class to real bridges, with the fast path on
and off: the answer is an HTTP/1.1 status with the JSON error body and
``Connection: close``, it is logged and counted like any refused request, and
the next connection is served as usual.
"""

from __future__ import annotations

import asyncio
import logging
import re

import orjson
import pytest
import structlog
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    InvalidHeader,
    LineTooLong,
    TransferEncodingError,
)

from grpc_bridge.edge.parse_errors import parse_error
from tests.helpers.harness import RunningBridge, running_bridge, scrape, value
from tests.helpers.servers import RunningServer

ECHO = "/bridgetest.v1.TestService/Echo"
CLIENT_STREAM = "/bridgetest.v1.TestService/ClientStream"

#: Each edge parses heads itself (the lean one with llhttp): both must refuse alike.
pytestmark = pytest.mark.both_edges


def request(*lines: bytes, body: bytes = b"{}") -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


POST = b"POST " + ECHO.encode() + b" HTTP/1.1"
HOST = b"Host: bridge"
LENGTH = b"Content-Length: 2"
HUGE = b"a" * 9000

#: name → (request bytes, HTTP status, gRPC code, words the message must hold)
CASES: dict[str, tuple[bytes, int, int, str]] = {
    "header_name_not_a_token": (
        request(POST, HOST, b"X(y): 1", LENGTH),
        400,
        3,
        "invalid header token",
    ),
    "control_byte_in_a_value": (
        request(POST, HOST, b"X-Thing: a\x01b", LENGTH),
        400,
        3,
        "invalid header value",
    ),
    "bad_chunk_size": (
        request(POST, HOST, b"Transfer-Encoding: chunked", body=b"zz\r\n{}\r\n0\r\n\r\n"),
        400,
        3,
        "chunk size",
    ),
    "header_field_too_long": (
        request(POST, HOST, b"X-Big: " + HUGE, LENGTH),
        431,
        8,
        "longer than 8190 bytes",
    ),
    "request_line_too_long": (
        request(b"POST " + ECHO.encode() + b"?q=" + HUGE + b" HTTP/1.1", HOST, LENGTH),
        431,
        8,
        "longer than 8190 bytes",
    ),
    "too_many_header_fields": (
        request(POST, HOST, *(b"X-%d: 1" % i for i in range(200)), LENGTH),
        431,
        8,
        "more than 128 header fields",
    ),
    "invalid_method": (
        request(b"P@ST " + ECHO.encode() + b" HTTP/1.1", HOST, LENGTH),
        400,
        3,
        "invalid method",
    ),
    "bad_version": (request(POST.replace(b"1.1", b"9.1"), HOST, LENGTH), 400, 3, "HTTP version"),
    "bad_content_length": (
        request(POST, HOST, b"Content-Length: abc"),
        400,
        3,
        "Content-Length",
    ),
    "duplicate_content_length": (
        request(POST, HOST, LENGTH, b"Content-Length: 3"),
        400,
        3,
        "duplicate Content-Length",
    ),
    "duplicate_user_agent": (
        request(POST, HOST, LENGTH, b"User-Agent: a", b"User-Agent: b"),
        400,
        3,
        "duplicate 'User-Agent'",
    ),
    "missing_host": (request(POST, LENGTH), 400, 3, "missing 'Host' header"),
    "bare_line_feeds": (request(POST, HOST, LENGTH).replace(b"\r\n", b"\n"), 400, 3, "CRLF"),
    "tls_on_the_plain_port": (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 16,
        400,
        3,
        "HTTPS traffic",
    ),
}


async def exchange(port: int, data: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Status line, headers and body of the answer; the server must close the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(5):
            raw = await reader.read()  # to EOF: the bridge closes after an error like this
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, field = line.decode().partition(":")
        headers[name.strip().lower()] = field.strip()
    return status, headers, body


async def served_normally(b: RunningBridge) -> None:
    status, body, _ = await b.post(ECHO, {"fString": "still here"})
    assert status == 200 and body["fString"] == "still here"


@pytest.mark.parametrize("case", list(CASES))
async def test_malformed_requests_get_the_status_body(bridge: RunningBridge, case: str) -> None:
    data, http_status, code, words = CASES[case]
    status_line, headers, body = await exchange(bridge.server.proxy_port, data)
    reason = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}[http_status]
    assert status_line == b"HTTP/1.1 %d %s" % (http_status, reason)
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    status = orjson.loads(body)
    assert status["code"] == code and status["details"] == []
    assert words in status["message"], status["message"]
    # It names the problem; it never quotes what was sent.
    assert len(status["message"]) < 150 and "aaaa" not in status["message"]
    assert "\\x" not in status["message"] and "b'" not in status["message"]
    await served_normally(bridge)


async def test_a_pipelined_request_after_a_malformed_one_is_not_served(
    bridge: RunningBridge,
) -> None:
    data = request(POST, HOST, b"X(y): 1", LENGTH) + request(POST, HOST, LENGTH)
    status_line, _, body = await exchange(bridge.server.proxy_port, data)
    assert status_line.startswith(b"HTTP/1.1 400 ")
    assert body.count(b'"code"') == 1  # one answer, then the connection closed


async def test_a_malformed_request_after_a_good_one_on_a_kept_alive_connection(
    bridge: RunningBridge,
) -> None:
    good = request(POST, HOST, LENGTH)
    bad = request(POST, HOST, b"X(y): 1", LENGTH)
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.server.proxy_port)
    try:
        writer.write(good)
        first = await reader.readuntil(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200 OK")
        length = int(re.search(rb"Content-Length: (\d+)", first)[1])  # type: ignore[index]
        await reader.readexactly(length)
        writer.write(bad)
        async with asyncio.timeout(5):
            rest = await reader.read()
    finally:
        writer.close()
    assert rest.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert orjson.loads(rest.partition(b"\r\n\r\n")[2])["code"] == 3


@pytest.mark.parametrize(
    ("path", "content_type", "first"),
    [
        (ECHO, b"application/json", b'5\r\n{"fSt\r\n'),
        (CLIENT_STREAM, b"application/x-ndjson", b'e\r\n{"text": "a"}\n\r\n'),
    ],
    ids=["unary", "request_stream"],
)
async def test_a_body_that_turns_malformed_after_its_head_was_handled_is_answered(
    bridge: RunningBridge, path: str, content_type: bytes, first: bytes
) -> None:
    """The head is handled (and for a request stream, a message sent upstream) first.

    aiohttp's C parser left such a body open: the request waited for the rest
    until the client gave up.
    """
    head = request(
        b"POST " + path.encode() + b" HTTP/1.1",
        HOST,
        b"Content-Type: " + content_type,
        b"Transfer-Encoding: chunked",
        body=b"",
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.server.proxy_port)
    try:
        writer.write(head)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(first)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"zz\r\n")
        async with asyncio.timeout(5):
            raw = await reader.read()  # to EOF: one answer, then the connection closes
    finally:
        writer.close()
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    assert head_bytes.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw
    assert b"\r\nConnection: close" in head_bytes
    status = orjson.loads(body)
    assert status["code"] == 3
    assert status["message"] == "malformed HTTP request body: invalid character in chunk size"
    await served_normally(bridge)


async def test_a_body_failed_mid_way_is_not_logged_as_an_unhandled_exception(
    bridge: RunningBridge, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's lingering close used to read such a body again and log the failure."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.server.proxy_port)
    try:
        with caplog.at_level(logging.ERROR, logger="aiohttp.server"):
            writer.write(
                request(
                    POST,
                    HOST,
                    b"Content-Type: application/json",
                    b"Transfer-Encoding: chunked",
                    body=b"",
                )
            )
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b'5\r\n{"fSt\r\n')
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"zz\r\n")
            async with asyncio.timeout(5):
                raw = await reader.read()
            await asyncio.sleep(0.1)
    finally:
        writer.close()
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw
    unhandled = [
        r.getMessage() for r in caplog.records if r.name == "aiohttp.server" and r.levelno >= 40
    ]
    assert not unhandled, unhandled


async def test_refusals_are_logged_and_counted_like_other_rejections(
    bridge: RunningBridge, caplog: pytest.LogCaptureFixture
) -> None:
    with structlog.testing.capture_logs() as logs, caplog.at_level(logging.DEBUG, "aiohttp"):
        _, headers, _ = await exchange(bridge.server.proxy_port, CASES["invalid_method"][0])
        await exchange(bridge.server.proxy_port, CASES["header_field_too_long"][0])
    lines = [e for e in logs if e.get("event") == "request"]
    assert [(e["http_status"], e["grpc_code"]) for e in lines] == [
        (400, "INVALID_ARGUMENT"),
        (431, "RESOURCE_EXHAUSTED"),
    ]
    first = lines[0]
    assert first["request_id"] == headers["x-request-id"]
    assert first["http_method"] == "UNKNOWN" and first["path"] is None
    assert first["route"] == "unmatched" and first["peer"] == "127.0.0.1"
    assert first["error"] == "malformed HTTP request: invalid method encountered"
    # aiohttp's own traceback-and-plain-text handling is gone.
    assert not [r for r in caplog.records if r.name.startswith("aiohttp")]
    samples = await scrape(bridge)
    http = "grpc_bridge_http_requests_total"
    labels = {"route": "unmatched", "method": "UNKNOWN"}
    assert value(samples, http, status_class="4xx", **labels) == 2
    rejected = "grpc_bridge_rejected_requests_total"
    assert value(samples, rejected, reason="malformed_request") == 1
    assert value(samples, rejected, reason="head_too_large") == 1


async def test_admin_listener_answers_alike_without_counting(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        with structlog.testing.capture_logs() as logs:
            status_line, headers, body = await exchange(
                b.server.admin_port, request(b"GET /healthz HTTP/1.1", HOST, b"X(y): 1", body=b"")
            )
        assert status_line == b"HTTP/1.1 400 Bad Request"
        assert headers["connection"] == "close"
        assert orjson.loads(body)["message"] == "malformed HTTP request: invalid header token"
        assert not [e for e in logs if e.get("event") == "request"]
        samples = await scrape(b)
        rejected = "grpc_bridge_rejected_requests_total"
        assert value(samples, rejected, reason="malformed_request") == 0
        async with b.session.get(f"{b.admin_url}/healthz") as resp:
            assert resp.status == 200


@pytest.mark.parametrize(
    ("exc", "status", "message"),
    [
        (LineTooLong(b"x" * 100 + b"...", 8190), 431, "longer than 8190 bytes"),
        (BadHttpMessage("Too many headers received"), 431, "more than 128 header fields"),
        (InvalidHeader(b"\x00" + b"z" * 5000), 400, "malformed HTTP request: invalid HTTP header"),
        (
            BadHttpMethod(error="Received HTTPS traffic on an HTTP port"),
            400,
            "malformed HTTP request: received HTTPS traffic on an HTTP port",
        ),
        (
            TransferEncodingError("Not enough data to satisfy transfer length header."),
            400,
            "malformed HTTP request: not enough data to satisfy transfer length header",
        ),
        (BadHttpMessage("\x00\x01" * 300), 400, "malformed HTTP request: ??"),
        (BadHttpMessage(""), 400, "malformed HTTP request: unparseable request"),
    ],
)
def test_messages_name_the_problem_without_the_input(
    exc: BadHttpMessage, status: int, message: str
) -> None:
    error = parse_error(exc, max_headers=128)
    assert error.http_status == status
    assert message in error.message
    assert len(error.message) < 180 and "zzz" not in error.message and "xxx" not in error.message
