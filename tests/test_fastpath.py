"""The lean HTTP/1.1 path (grpc_bridge/edge/fastpath.py) against real bridges and upstreams.

Every test elsewhere already goes through it when its request is plain; these
check the seams: the same bytes as the aiohttp path (generic routes and REST
bindings), the same log lines and metrics, pipelining, the hand-over of a
connection to aiohttp mid-stream, disconnects, ``Connection: close``.
Requests are written as raw bytes so the test controls exactly what arrives.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from grpc_bridge.edge.aiohttp_compat import head_parser
from grpc_bridge.edge.fastpath_heads import served_head, served_length
from grpc_bridge.protocol.select import build_protocols, forward_all_policy
from grpc_bridge.settings import Settings
from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.lean_path import (
    bridges,
    comparable,
    connection,
    post,
    read_response,
    rest_bridges,
)
from tests.helpers.raw_http import ECHO, SLEEP, request
from tests.helpers.servers import RunningServer, StartServer


async def exchange(b: RunningBridge, data: bytes, count: int) -> list[Any]:
    async with connection(b) as (reader, writer):
        writer.write(data)
        to_head = data.startswith(b"HEAD ")
        return [await read_response(reader, to_head=to_head) for _ in range(count)]


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


#: REST requests the lean path serves itself (it must not hand them over).
REST_SERVED = {
    "path param": request("GET", "/v1/things/1"),
    "query: repeated, enum number, bool": request(
        "GET", "/v1/things/1?num=5&tags=a&tags=b&color=2&flag=1"
    ),
    "query: nested, enum names, WKTs": request(
        "GET",
        "/v1/things/1?nested.name=x&color=BLUE&colors=RED&colors=2&ratio=1.5"
        "&ts=2024-01-01T00:00:00Z&dur=1.5s&w_int32=3&big=18446744073709551615",
    ),
    "query: kitchen types": request(
        "GET",
        "/v1/echo/hi?r_int32=1&r_int32=2&r_color=RED&f_bool=true&f_double=-1e3"
        "&ts=2024-01-01T00:00:00Z&dur=1.5s&w_int32=3&mask=a.b,c&f_bytes=aGk%3D",
    ),
    "percent-encoded single variable": request("GET", "/v1/things/a%2Fb%20c%C3%A9"),
    "percent-encoded query, + as space": request("GET", "/v1/things/1?name=a+b%20c%C3%A9%26"),
    "percent-encoded literal": request("GET", "/v1/things/speci%61l"),
    "multi-segment variable keeps reserved": request("GET", "/v1/files/a%2Fb/c%20d"),
    "additional binding, nested path field": request("GET", "/v1/shelves/s1/things/7"),
    "response_body repeated": request("GET", "/v1/things/1/tags?tags=x&tags=y"),
    "response_body unset message": request("GET", "/v1/things/1/nested"),
    "template with a literal part": request("GET", "/v1/shelves/1/books/2"),
    "** then a tail": request("GET", "/v1/ops/a/b/status/9"),
    "typed path variables": request("GET", "/v1/typed/-3/true/BLUE/2024-01-01T00:00:00Z/7"),
    "literal beats variable": request("GET", "/v1/things/special"),
    "? with an empty query": request("GET", "/v1/things/1?"),
    "GET with Content-Length: 0": request("GET", "/v1/things/1", None, "Content-Length: 0"),
    "headers: request id, timeout, close": request(
        "GET",
        "/v1/things/1",
        None,
        "X-Request-Id: abc-123",
        "Grpc-Timeout: 5S",
        "Connection: close",
    ),
    "metadata forwarded and answered": request("GET", "/v1/things/1", None, "x-custom: kept"),
    "Origin (CORS off)": request("GET", "/v1/things/1", None, "Origin: https://app.example"),
    "repeated headers": request(
        "GET", "/v1/things/1", None, "x-custom: a", "x-custom: b", "Accept: */*", "Accept: */*"
    ),
    'body "*"': request("POST", "/v1/things", b'{"id": "1", "name": "n", "tags": ["a"]}'),
    'body "*" with a verb': request("POST", "/v1/things/5:archive", b'{"name": "n"}'),
    "body field": request("POST", "/v1/things/3/nested", b'{"name": "n"}'),
    "PUT": request("PUT", "/v1/things/4", b'{"name": "x", "num": "2"}'),
    "PATCH, mask from the body": request("PATCH", "/v1/things/7", b'{"name": "x", "num": "3"}'),
    "PATCH, the client's mask": request(
        "PATCH", "/v1/things/7?update_mask=name", b'{"name": "x", "num": "3"}'
    ),
    "PATCH on a YAML route": request("PATCH", "/v1/echo/5", b'{"fString": "s"}'),
    "DELETE, Empty answer": request("DELETE", "/v1/things/9"),
    "HttpBody response": request("GET", "/v1/things/1/download?tags=a&tags=b"),
    "HttpBody body field, no Content-Type": request(
        "POST", "/v1/things/3/file", b"a,b\n1,2\n", json=False
    ),
    "HttpBody request and response": request("POST", "/v1/echo-body", b"raw", json=False),
    "HttpBody with a JSON Content-Type": request("POST", "/v1/echo-body", b'{"a": 1}'),
    "error after the call": request(
        "POST", "/v1/fail", b'{"code": 5, "message": "gone", "withDetails": true}'
    ),
    "generic route with a query string": post(f"{ECHO}?x=1", b'{"fString": "q"}'),
    "generic route's GET": request("GET", "/bridgetest.v1.TestService/Lookup?f_string=x"),
    "generic route's GET, nested and repeated": request(
        "GET",
        "/bridgetest.v1.TestService/Lookup?f_string=a%20b&f_int64=7&r_string=x&r_string=y",
    ),
    "generic route's GET without a query": request("GET", "/bridgetest.v1.TestService/Lookup"),
}

#: REST requests aiohttp answers (handed over), errors before the call among them.
REST_HANDED_OVER = {
    'query with body "*"': request("POST", "/v1/things?name=x", b"{}"),
    "path field set by the body": request("PUT", "/v1/things/4", b'{"id": "5"}'),
    "unknown query parameter": request("GET", "/v1/things/1?bogus=1"),
    "query value not UTF-8": request("GET", "/v1/things/1?name=%FF"),
    "malformed escape in a variable": request("GET", "/v1/things/%zz"),
    "bad typed variable": request("GET", "/v1/typed/x/true/BLUE/2024-01-01T00:00:00Z/7"),
    "body on a body-less binding": request("GET", "/v1/things/1", b"{}"),
    "body that is not JSON": request("PUT", "/v1/things/4", b"{bad json"),
    "wrong Content-Type": request(
        "POST", "/v1/things", b"{}", "Content-Type: text/plain", json=False
    ),
    "POST without Content-Length": request("POST", "/v1/things"),
    "404": request("GET", "/v1/nothing/here"),
    "405": request("POST", "/v1/things/1", b"{}"),
    "HEAD on a GET route": request("HEAD", "/v1/things/1"),
    "HEAD on an HttpBody route": request("HEAD", "/v1/things/1/download?tags=a"),
    "server stream on a REST path": request("GET", "/v1/things/1/watch"),
    "custom method": request("SEARCH", "/v1/things?name=s"),
    "generic route's GET with a body": request(
        "GET", "/bridgetest.v1.TestService/Lookup?f_string=x", b"{}"
    ),
    "generic route's GET, unknown field": request("GET", "/bridgetest.v1.TestService/Lookup?no=1"),
    "generic GET on a method with side effects": request("GET", f"{ECHO}?f_string=x"),
    "fragment": request("GET", "/v1/things/1#top"),
    "Accept: NDJSON": request("GET", "/v1/things/1", None, "Accept: application/x-ndjson"),
}


@pytest.mark.parametrize("served", [True, False], ids=["served", "handed_over"])
async def test_rest_answers_are_the_aiohttp_paths_own(
    upstream_factory: StartServer, hand_overs: list[bytes], served: bool
) -> None:
    cases = REST_SERVED if served else REST_HANDED_OVER
    differ = []
    async with rest_bridges(upstream_factory) as (fast, plain):
        for name, data in cases.items():
            hand_overs.clear()
            (got,) = await exchange(fast, data, 1)
            taken = not hand_overs
            (want,) = await exchange(plain, data, 1)
            if taken != served or comparable(got) != comparable(want):
                differ.append((name, taken, comparable(got), comparable(want)))
            if b"abc-123" in data:
                assert got[1]["x-request-id"] == "abc-123"
    assert differ == []


async def test_rest_log_lines_and_metrics_are_the_aiohttp_paths_own(
    upstream_factory: StartServer,
) -> None:
    cases = [
        REST_SERVED["path param"],
        REST_SERVED["percent-encoded single variable"],
        REST_SERVED["PATCH, the client's mask"],
        REST_SERVED["DELETE, Empty answer"],
        REST_SERVED["HttpBody response"],
        REST_SERVED["error after the call"],
        REST_SERVED["generic route's GET"],
        REST_HANDED_OVER["unknown query parameter"],
    ]
    volatile = ("request_id", "duration_ms", "timestamp")
    lines = []
    samples = []
    async with rest_bridges(upstream_factory) as (fast, plain):
        for b in (fast, plain):
            with structlog.testing.capture_logs() as logs:
                for data in cases:
                    await exchange(b, data, 1)
            lines.append(
                [
                    {k: v for k, v in e.items() if k not in volatile}
                    for e in logs
                    if e.get("event") == "request"
                ]
            )
            async with b.session.get(f"{b.admin_url}/metrics") as resp:
                text = await resp.text()
            samples.append(
                sorted(
                    line
                    for line in text.splitlines()
                    if line.startswith(
                        (
                            "grpc_bridge_http_requests_total",
                            "grpc_bridge_http_request_duration_seconds_count",
                        )
                    )
                )
            )
    fast_lines, plain_lines = lines
    assert len(fast_lines) == len(cases)
    assert fast_lines == plain_lines
    assert {e["route"] for e in fast_lines} >= {"/v1/things/{id}", "/v1/things/{thing.id}"}
    assert [e["http_method"] for e in fast_lines][:4] == ["GET", "GET", "PATCH", "DELETE"]
    assert samples[0] == samples[1] and any('route="/v1/things/{id}"' in s for s in samples[0])


@pytest.mark.parametrize("origin", [None, "https://app.example", "https://other.example"])
async def test_cors_requests_are_served_with_the_aiohttp_paths_headers(
    upstream_factory: StartServer, hand_overs: list[bytes], origin: str | None
) -> None:
    cors = {"allowed_origins": ["https://app.example"], "allow_credentials": True}
    extra = () if origin is None else (f"Origin: {origin}",)
    cases = [
        request("GET", "/v1/things/1", None, *extra),
        request("GET", "/v1/things/1", None, *extra, "Accept-Encoding: gzip"),
        request("POST", "/v1/fail", b'{"code": 5, "message": "gone"}', *extra),
        post(ECHO, b'{"fString": "x"}', *extra, "x-custom: kept"),
    ]
    async with rest_bridges(upstream_factory, cors=cors) as (fast, plain):
        for data in cases:
            (got,) = await exchange(fast, data, 1)
            (want,) = await exchange(plain, data, 1)
            assert comparable(got) == comparable(want)
            assert "Origin" in got[1]["vary"]
            if origin == "https://app.example":
                assert got[1]["access-control-allow-origin"] == origin
    assert hand_overs == []


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


async def test_only_heads_of_requests_served_lean_are_taken() -> None:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    make_parser = head_parser(web.Server(handle))
    assert make_parser is not None

    def parse(*lines: str | bytes) -> Any:
        head = b"\r\n".join(line if isinstance(line, bytes) else line.encode() for line in lines)
        try:
            messages, _, _ = make_parser().feed_data(head + b"\r\n\r\n")
        except HttpProcessingError:
            return None
        assert len(messages) == 1
        return messages[0][0]

    settings = Settings(upstreams=[{"name": "u", "targets": ["127.0.0.1:1"]}])
    protocols = build_protocols(settings, forward_all_policy(settings))
    BODY = ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2")

    def served(*lines: str | bytes) -> int | None:
        message = parse(*lines)
        head = None if message is None else served_head(message, protocols)
        return None if head is None else head[0]

    assert served("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2") == 2
    rest = parse("GET /v1/a%2Fb?x=1&y=%20+?z HTTP/1.1", "Host: x")
    assert served_length(rest) == 0 and rest.path == "/v1/a%2Fb?x=1&y=%20+?z"
    for taken in (
        ("DELETE /v1/a HTTP/1.1", "Host: x"),
        ("GET /v1/a? HTTP/1.1", "Host: x", "Content-Length: 0"),
        ("PUT /v1/a HTTP/1.1", "Host: x", "Content-Length: 2"),
        ("PATCH /v1/a;b:c@d!$&'()*+,=-._~ HTTP/1.1", "Host: x", "Content-Length: 2"),
        # CORS requests are served (their headers: edge/cors.py, as on the aiohttp path).
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "Origin: https://x"),
        # Repeated headers read as aiohttp reads them (the same parsed headers).
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "X-A: 1", "X-A: 2"),
        ("GET /a?connected=1&x=connect HTTP/1.1", "Host: x"),
        # Connection is read by the parser (keep-alive or close) the same for both edges.
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "Connection: close, TE"),
        # gRPC-Web in every form, Connect's unary POST: their protocols' plain steps.
        (*BODY, "Content-Type: application/grpc-web"),
        (*BODY, "Content-Type: application/grpc-web-text"),
        (*BODY, "Content-Type: application/json", "Connect-Protocol-Version: 1"),
        (*BODY, "Content-Type: application/proto"),
    ):
        assert served(*taken) is not None, taken
    for refused in (
        ("HEAD /a.B/C HTTP/1.1", "Host: x"),
        ("OPTIONS /a.B/C HTTP/1.1", "Host: x"),
        ("SEARCH /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2"),
        ("GET http://x/a.B/C HTTP/1.1", "Host: x"),
        ("POST /a.B/C HTTP/1.0", "Host: x", "Content-Length: 2"),
        ("POST /a.B/C#f HTTP/1.1", "Host: x", "Content-Length: 2"),
        ("GET /a/{b} HTTP/1.1", "Host: x"),
        ('GET /a?x="y" HTTP/1.1', "Host: x"),
        ("GET /a?x=|y HTTP/1.1", "Host: x"),
        ("POST /a.B/C HTTP/1.1", "Host: x"),  # no Content-Length
        ("PUT /a.B/C HTTP/1.1", "Host: x"),
        ("PATCH /a.B/C HTTP/1.1", "Host: x"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"),
        ("GET /a.B/C HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "Expect: 100-continue"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "Content-Encoding: gzip"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "Content-Type: text/plain"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "Accept: application/x-ndjson"),
        ("GET /a HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade"),
        # Connect's GET and streams, a gRPC-Web type not served (415), a bad version.
        ("GET /a.B/C?connect=v1&encoding=json&message=%7B%7D HTTP/1.1", "Host: x"),
        (*BODY, "Content-Type: application/connect+json"),
        (*BODY, "Content-Type: application/grpc-web+xml"),
        (*BODY, "Content-Type: application/json", "Connect-Protocol-Version: 2"),
        (*BODY, "Content-Type: application/json; charset=utf-8", "Connect-Protocol-Version: 1"),
        (
            "OPTIONS /a HTTP/1.1",
            "Host: x",
            "Origin: https://x",
            "Access-Control-Request-Method: POST",
        ),
    ):
        assert served(*refused) is None, refused
    for unparsed in (  # aiohttp's parser refuses these: aiohttp answers them
        ("get /a.B/C HTTP/1.1", "Host: x"),
        ("GET /a/\x01 HTTP/1.1", "Host: x"),
        ("GET /a b HTTP/1.1", "Host: x"),
        ("DELETE /v1/a HTTP/1.1",),  # no Host
        ("GET /a.B/C HTTP/1.1", "Host: x", "Content-Length: x"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "Content-Length: 2"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "Transfer-Encoding: chunked"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", " folded"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length : 2"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "X-Bad: a\x01b"),
        ("POST /a.B/C HTTP/1.1", "Host: x", "Content-Length: 2", "User-Agent: a", "User-Agent: b"),
        ("POST /a.B/C HTTP/1.1", "Host: x", *(f"X-{i}: 1" for i in range(128))),
    ):
        assert parse(*unparsed) is None, unparsed
