"""HEAD wherever GET is served: GET's status and headers, no body (RFC 9110 §9.3.2).

Over raw sockets, so that what is (not) sent after the head is visible, against
real upstreams with the test and REST services. One-message answers call the
method as GET does; streamed answers are not started (no upstream call).
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
import structlog

from tests.helpers.harness import MakeBridge, RunningBridge, running_bridge, scrape, value
from tests.helpers.servers import RunningServer, StartServer

SVC = "/bridgetest.v1.TestService"
Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture
async def server(upstream_factory: StartServer) -> RunningServer:
    return await upstream_factory(services=("test", "rest"))


@pytest.fixture
async def bridge(server: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(server.target)


async def send(b: RunningBridge, method: str, target: str, *headers: str) -> Answer:
    """Status, headers and every byte after the head, up to the close the request asks for."""
    lines = [f"{method} {target} HTTP/1.1", "Host: bridge", "Connection: close", *headers]
    reader, writer = await asyncio.open_connection("127.0.0.1", b.server.proxy_port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        async with asyncio.timeout(5):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *fields = head.decode().split("\r\n")
    parsed = {}
    for field in fields:
        name, _, field_value = field.partition(":")
        parsed[name.strip().lower()] = field_value.strip()
    return int(status_line.split()[1]), parsed, rest


def unchunked(body: bytes) -> bytes:
    out, rest = b"", body
    while True:
        size, _, rest = rest.partition(b"\r\n")
        if int(size, 16) == 0:
            return out
        out, rest = out + rest[: int(size, 16)], rest[int(size, 16) + 2 :]


def same_headers(head: dict[str, str], get: dict[str, str]) -> dict[str, str]:
    """GET's headers a HEAD must repeat (not the per-response or body-framing ones)."""
    skip = {"date", "x-request-id", "transfer-encoding"}
    assert {k: v for k, v in head.items() if k not in skip} == {
        k: v for k, v in get.items() if k not in skip
    }
    return head


@pytest.mark.parametrize(
    "target",
    [
        f"{SVC}/Lookup?fString=hi&fInt64=7",  # generic route, NO_SIDE_EFFECTS
        f"{SVC}/EchoMetadata",  # initial metadata and trailers as headers
        "/v1/things/7?name=x",  # REST GET binding
        "/v1/things/7/tags?tags=a&tags=b",  # response_body
        "/v1/things/7/download?tags=a",  # an HttpBody answer: its own Content-Type
    ],
)
async def test_head_answers_what_get_answers_without_the_body(
    bridge: RunningBridge, target: str
) -> None:
    get_status, get_headers, get_body = await send(bridge, "GET", target)
    status, headers, body = await send(bridge, "HEAD", target)
    assert status == get_status == 200
    assert body == b""
    same_headers(headers, get_headers)
    assert int(headers["content-length"]) == len(get_body) > 0


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        (f"{SVC}/Lookup?nope=1", 400, 3),  # what GET refuses, HEAD refuses
        (f"{SVC}/Nothing", 404, 5),
        ("/v1/things/7?bad=%zz", 400, 3),
        (f"{SVC}/ServerStream?count=x", 400, 3),
    ],
)
async def test_head_refuses_what_get_refuses(
    bridge: RunningBridge, target: str, status: int, code: int
) -> None:
    get_status, _, get_body = await send(bridge, "GET", target)
    head_status, headers, body = await send(bridge, "HEAD", target)
    assert head_status == get_status == status and orjson.loads(get_body)["code"] == code
    assert body == b""
    assert headers["content-type"] == "application/json"
    # The message names the request's method: one byte more for HEAD than for GET.
    assert int(headers["content-length"]) in (len(get_body), len(get_body) + 1)


async def test_head_where_get_is_not_served_is_405_and_allow_lists_head_with_get(
    bridge: RunningBridge,
) -> None:
    status, headers, body = await send(bridge, "HEAD", f"{SVC}/Echo")
    assert (status, headers["allow"], body) == (405, "POST", b"")
    status, headers, body = await send(bridge, "PUT", f"{SVC}/Lookup")
    assert (status, headers["allow"]) == (405, "GET, HEAD, POST")
    assert orjson.loads(body)["message"] == (
        f"PUT is not allowed on {SVC}/Lookup; use GET or HEAD or POST"
    )
    status, headers, _ = await send(bridge, "POST", "/v1/things/1")
    assert (status, headers["allow"]) == (405, "GET, HEAD, PUT, PATCH, DELETE")
    status, headers, _ = await send(bridge, "HEAD", "/v1/things")  # POST and SEARCH only
    assert (status, headers["allow"]) == (405, "POST, SEARCH")


@pytest.mark.parametrize(
    ("target", "accept", "content_type"),
    [
        (f"{SVC}/ServerStream?count=3&tag=head-ndjson", None, "application/x-ndjson"),
        (f"{SVC}/ServerStream?count=3&tag=head-sse", "text/event-stream", "text/event-stream"),
        ("/v1/things/7/watch", None, "application/x-ndjson"),
    ],
)
async def test_head_of_a_stream_answers_its_headers_without_starting_it(
    bridge: RunningBridge,
    server: RunningServer,
    target: str,
    accept: str | None,
    content_type: str,
) -> None:
    extra = [f"Accept: {accept}"] if accept else []
    status, headers, body = await send(bridge, "HEAD", target, *extra)
    assert (status, headers["content-type"], body) == (200, content_type, b"")
    assert headers["cache-control"] == "no-cache" and headers["x-accel-buffering"] == "no"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    await asyncio.sleep(0.2)
    assert server.test.sent == {} and server.test.completed == []
    # GET on the same target runs the stream, with the same headers.
    get_status, get_headers, get_body = await send(bridge, "GET", target, *extra)
    assert get_status == 200 and get_headers["transfer-encoding"] == "chunked"
    same_headers(headers, get_headers)
    assert unchunked(get_body)


async def test_head_is_logged_and_counted_as_head(bridge: RunningBridge) -> None:
    target = f"{SVC}/Lookup?fString=hi"
    with structlog.testing.capture_logs() as logs:
        status, headers, _ = await send(bridge, "HEAD", target)
        await send(bridge, "HEAD", f"{SVC}/ServerStream?count=1")
    assert status == 200
    lines = [e for e in logs if e.get("event") == "request"]
    assert [(e["http_method"], e["http_status"], e["bytes_out"]) for e in lines] == [
        ("HEAD", 200, 0),
        ("HEAD", 200, 0),
    ]
    assert lines[0]["grpc_code"] == "OK" and lines[0]["request_id"] == headers["x-request-id"]
    assert lines[1]["grpc_code"] is None and lines[1]["framing"] == "ndjson"  # no call made
    samples = await scrape(bridge)
    counted = value(
        samples,
        "grpc_bridge_http_requests_total",
        route=f"{SVC}/Lookup",
        method="HEAD",
        status_class="2xx",
    )
    assert counted == 1
    assert value(samples, "grpc_bridge_streams_open", framing="ndjson") == 0


async def test_a_refused_head_logs_no_body_bytes(bridge: RunningBridge) -> None:
    with structlog.testing.capture_logs() as logs:
        status, _, body = await send(bridge, "HEAD", f"{SVC}/Lookup?noSuchField=1")
    assert status == 400 and body == b""
    lines = [e for e in logs if e.get("event") == "request"]
    assert [(e["http_status"], e["bytes_out"]) for e in lines] == [(400, 0)]


async def test_cors_preflight_for_head(upstream: RunningServer) -> None:
    origin = "https://app.example"
    async with running_bridge(upstream.target, cors={"allowed_origins": [origin]}) as b:
        status, headers, _ = await send(
            b,
            "OPTIONS",
            f"{SVC}/Lookup",
            f"Origin: {origin}",
            "Access-Control-Request-Method: HEAD",
        )
        assert status == 204 and headers["access-control-allow-methods"] == "GET, HEAD, POST"
        status, headers, body = await send(b, "HEAD", f"{SVC}/Lookup", f"Origin: {origin}")
        assert (status, headers["access-control-allow-origin"], body) == (200, origin, b"")
