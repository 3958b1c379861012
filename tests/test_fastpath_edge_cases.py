"""Edge cases of the lean HTTP/1.1 path (edge/fastpath.py): hostile or unusual bytes.

Each test sends the exact same bytes to a bridge with the fast path and (where
a comparison makes sense) to one with ``listen.fast_path: false``, over raw
sockets, against the real test upstream (the REST one for REST bindings:
HttpBody content types with control characters are a 500 on both paths,
upstream metadata with them is left out of the headers, and a decoded newline
in a path variable reaches the route table on both).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import structlog

from grpc_bridge.edge import fastpath, sites
from grpc_bridge.routing.table import RouteTable
from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.lean_path import (
    ROUTES,
    bridges,
    comparable,
    connection,
    post,
    read_response,
    rest_bridges,
)
from tests.helpers.raw_http import ECHO, SLEEP, request
from tests.helpers.servers import RunningServer, StartServer


async def answer(b: RunningBridge, data: bytes, within: float = 3.0) -> Any:
    """The first response to ``data``, or what happened instead ("eof" / "timeout")."""
    async with connection(b) as (reader, writer):
        writer.write(data)
        try:
            return await asyncio.wait_for(read_response(reader), within)
        except asyncio.IncompleteReadError:
            return "eof"
        except TimeoutError:
            return "timeout"


def status_of(response: Any) -> Any:
    return response if isinstance(response, str) else response[0]


async def test_control_answers_alike(upstream: RunningServer) -> None:
    """Sanity (not a defect): a plain request gets 200 from both paths."""
    async with bridges(upstream) as (fast, plain):
        data = post(ECHO, b"{}")
        assert status_of(await answer(fast, data)) == status_of(await answer(plain, data)) == 200


async def test_huge_content_length_digits_get_aiohttps_answer(upstream: RunningServer) -> None:
    data = post(ECHO, b"{}").replace(b"Content-Length: 2", b"Content-Length: " + b"0" * 4400 + b"2")
    async with bridges(upstream) as (fast, plain):
        want = await answer(plain, data)
        got = await answer(fast, data)
    assert status_of(want) != "eof"
    assert status_of(got) == status_of(want)


async def test_bare_lf_request_is_answered(upstream: RunningServer) -> None:
    data = post(ECHO, b"{}").replace(b"\r\n", b"\n")
    async with bridges(upstream) as (fast, plain):
        want = await answer(plain, data)
        got = await answer(fast, data)
    assert status_of(want) != "timeout"
    assert status_of(got) == status_of(want)


@pytest.mark.parametrize(
    "line",
    [
        b"X\nTransfer-Encoding: chunked",  # a bare LF inside a field *name*
        b"X\rTransfer-Encoding: chunked",  # a bare CR inside a field name
        b"X(y): 1",  # not a token
        b"X\x01y: 1",  # control byte in a name
    ],
)
async def test_invalid_field_names_are_refused_like_aiohttp(
    upstream: RunningServer, line: bytes
) -> None:
    data = post(ECHO, b"{}").replace(b"\r\n\r\n", b"\r\n" + line + b"\r\n\r\n", 1)
    async with bridges(upstream) as (fast, plain):
        want = await answer(plain, data)
        got = await answer(fast, data)
    assert status_of(want) == 400
    assert status_of(got) == status_of(want)


async def test_duplicate_connection_close_is_honoured(upstream: RunningServer) -> None:
    data = post(ECHO, b"{}", "Connection: close", "Connection: keep-alive")
    async with bridges(upstream) as (fast, plain):
        results = []
        for b in (plain, fast):
            async with connection(b) as (reader, writer):
                writer.write(data)
                status, headers, _ = await read_response(reader)
                try:
                    rest = await asyncio.wait_for(reader.read(), 1.0)
                except TimeoutError:
                    rest = None  # still open
                results.append((status, headers.get("connection"), rest))
    want, got = results
    assert want == (200, "close", b"")
    assert got == want


async def test_duplicate_grpc_timeout_uses_the_same_value(upstream: RunningServer) -> None:
    data = post(
        SLEEP, b'{"duration": "1s", "tag": "dup"}', "Grpc-Timeout: 100m", "Grpc-Timeout: 10S"
    )
    async with bridges(upstream) as (fast, plain):
        want = await answer(plain, data, within=5)
        got = await answer(fast, data, within=5)
    assert status_of(got) == status_of(want)


async def test_duplicate_request_id_is_the_same(upstream: RunningServer) -> None:
    data = post(ECHO, b"{}", "X-Request-Id: first", "X-Request-Id: second")
    async with bridges(upstream) as (fast, plain):
        want = await answer(plain, data)
        got = await answer(fast, data)
    assert want[1]["x-request-id"] == "first"
    assert got[1]["x-request-id"] == want[1]["x-request-id"]


async def test_a_partial_request_is_closed_by_the_idle_timeout(
    upstream: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle: the keep-alive timeout; a request begun: limits.body_read_timeout_s.
    monkeypatch.setattr(fastpath, "IDLE_TIMEOUT_S", 0.3)
    async with running_bridge(upstream.target, limits={"body_read_timeout_s": 0.3}) as b:
        async with connection(b) as (reader, _):  # control: an idle one is closed
            assert await asyncio.wait_for(reader.read(), 2) == b""
        async with connection(b) as (reader, writer):
            writer.write(f"POST {ECHO} HTTP/1.1\r\nHost: b\r\n".encode())
            try:
                rest = await asyncio.wait_for(reader.read(), 2)
            except TimeoutError:
                rest = None
        assert rest == b""


async def test_one_log_line_when_the_client_leaves_during_a_slow_write(
    upstream: RunningServer,
) -> None:
    big = b'{"fString": "' + b"x" * (3 << 20) + b'"}'
    async with running_bridge(upstream.target, limits={"max_request_bytes": 8 << 20}) as b:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", b.server.proxy_port))
        _, writer = await asyncio.open_connection(sock=sock)
        with structlog.testing.capture_logs() as logs:
            writer.write(post(ECHO, big))
            await writer.drain()
            await asyncio.sleep(1.5)  # the response is written; the client reads nothing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            await asyncio.sleep(0.5)
    lines = [e for e in logs if e.get("event") == "request"]
    assert [e["http_status"] for e in lines] == [200]


async def test_idle_timeout_is_the_aiohttp_handlers(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        server = b.server.proxy_runner.server
        assert server is not None
        handler = server()
        assert handler.keepalive_timeout == fastpath.IDLE_TIMEOUT_S


# -- REST bindings on the lean path: odd targets, served or handed over, answered alike --


LONG_QUERY = "&".join(f"tags=t{i:04d}" for i in range(700))  # ~7.7 KB, under the 8 KiB head
TOO_LONG_QUERY = "&".join(f"tags=t{i:04d}" for i in range(900))  # over aiohttp's line limit

#: Target → served by the lean path (True) or handed over (False); answered alike either way.
ODD_TARGETS = {
    # Malformed percent-encoding: a 400 naming the variable or parameter, from aiohttp.
    "/v1/things/%zz": False,
    "/v1/things/%F": False,
    "/v1/things/a%": False,
    "/v1/things/%C3": False,
    "/v1/things/1?name=%zz": False,
    "/v1/things/1?name=%": False,
    "/v1/things/1?%zz=1": False,
    "/v1/things/1?name=%C3%28": False,
    "/v1/th%zzings/1": False,  # a literal that can't match: 404
    "/v1/things/a%00b": True,
    # Empty and odd query strings.
    "/v1/things/1?": True,
    "/v1/things/1??": False,  # the query is "?": an unknown parameter named "?"
    "/v1/things/1?&&": True,
    "/v1/things/1?&name=x&": True,
    "/v1/things/1?name": True,
    "/v1/things/1?=1": False,
    f"/v1/things/1?{LONG_QUERY}": True,
    f"/v1/things/1?{TOO_LONG_QUERY}": False,
    # Paths that are not normalised (by either path) and slashes.
    "/v1/things/./1": False,
    "/v1/things/../things/1": False,
    "//v1/things/1": False,
    "/v1/things/1/": False,
    "/v1/files/a//b/": True,
    # Bytes outside RFC 3986: aiohttp's parser judges them.
    "/v1/things/{1}": False,
    "/v1/things/a|b": False,
    '/v1/things/a"b': False,
    "/v1/things/a\\b": False,
    "/v1/things/a^b": False,
    "/v1/things/a`b": False,
    "/v1/things/[1]": False,
    "/v1/things/1?x=<y>": False,
    "http://bridge/v1/things/1": False,
}


@pytest.mark.parametrize("target", list(ODD_TARGETS), ids=lambda t: t[:40])
async def test_odd_rest_targets_are_answered_alike(
    upstream_factory: StartServer, hand_overs: list[bytes], target: str
) -> None:
    data = request("GET", target)
    async with rest_bridges(upstream_factory) as (fast, plain):
        got = await answer(fast, data)
        served = not hand_overs
        want = await answer(plain, data)
    assert status_of(want) not in ("eof", "timeout")
    assert comparable(got) == comparable(want)
    assert served == ODD_TARGETS[target]


async def test_rest_requests_pipelined_with_a_head_in_the_middle(
    upstream_factory: StartServer,
) -> None:
    data = (
        request("GET", "/v1/things/1?name=a")
        + request("PATCH", "/v1/things/2", b'{"name": "b"}')
        + request("HEAD", "/v1/things/3")  # aiohttp takes the connection from here on
        + request("DELETE", "/v1/things/4")
        + request("GET", "/v1/things/5")
    )
    async with rest_bridges(upstream_factory) as (fast, plain):
        results = []
        for b in (fast, plain):
            async with connection(b) as (reader, writer):
                writer.write(data)
                results.append([await read_response(reader, to_head=i == 2) for i in range(5)])
    got, want = results
    assert [r[0] for r in got] == [200] * 5
    assert [comparable(r) for r in got] == [comparable(r) for r in want]


async def test_a_rest_head_arriving_in_pieces_is_served(
    upstream_factory: StartServer, hand_overs: list[bytes]
) -> None:
    data = request("DELETE", f"/v1/things/1?{LONG_QUERY}")
    # "DE" could still be DELETE: the lean path waits for the rest of the head.
    pieces = [data[:2], *(data[i : i + 1000] for i in range(2, len(data), 1000))]
    async with rest_bridges(upstream_factory) as (fast, _), connection(fast) as (reader, writer):
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        status, _, body = await read_response(reader)
    assert status == 200 and body == b"{}"
    assert hand_overs == []


async def test_a_head_no_served_method_has_is_read_whole_before_aiohttp_takes_it(
    upstream_factory: StartServer, hand_overs: list[bytes]
) -> None:
    # Read whole here, under this edge's head deadline (aiohttp's reading has none).
    async with rest_bridges(upstream_factory) as (fast, _), connection(fast) as (_, writer):
        writer.write(b"HEA")
        await writer.drain()
        await asyncio.sleep(0.2)
        assert hand_overs == []
        writer.write(b"D /v1/things/1 HTTP/1.1\r\nHost: b\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        assert hand_overs == [b""]


async def test_bytes_no_request_line_starts_with_go_to_aiohttp_at_once(
    upstream_factory: StartServer, hand_overs: list[bytes]
) -> None:
    async with rest_bridges(upstream_factory) as (fast, _), connection(fast) as (_, writer):
        writer.write(b"\x16\x03\x01")  # a TLS ClientHello's start, on the plain port
        await writer.drain()
        await asyncio.sleep(0.2)
        assert hand_overs == [b""]


# -- REST bindings: control characters in HttpBody content types and path variables ----


#: YAML routes binding HttpBody's own fields from the query string: EchoBody answers
#: with its request, so the client picks the response's ``content_type``.
ECHO_BODY_ROUTES = [{"method": "bridgetest.v1.RestService/EchoBody", "get": "/v1/eb"}]


@asynccontextmanager
async def httpbody_bridges(
    upstream_factory: StartServer,
) -> AsyncIterator[tuple[RunningBridge, RunningBridge]]:
    """A lean-path bridge and an aiohttp-only one, same upstream, same routes."""
    server = await upstream_factory(services=("rest", "test"))
    routes = [*ROUTES, *ECHO_BODY_ROUTES]
    async with (
        running_bridge(server.target, routes=routes) as fast,
        running_bridge(server.target, routes=routes, listen={"fast_path": False}) as plain,
    ):
        yield fast, plain


async def comparable_answer(b: RunningBridge, data: bytes) -> Any:
    """:func:`answer` without what differs between any two (Date and X-Request-Id)."""
    response = await answer(b, data)
    return response if isinstance(response, str) else comparable(response)


@pytest.mark.parametrize("control", ["%01", "%7F", "%0D%0AX-Injected:%201", "%00"])
async def test_httpbody_content_type_with_control_characters_is_answered_alike(
    upstream_factory: StartServer, control: str
) -> None:
    data = request("GET", f"/v1/eb?content_type=text/plain{control}")
    async with httpbody_bridges(upstream_factory) as (fast, plain):
        control_answer = request("GET", "/v1/eb?content_type=text/plain")
        # Sanity: a clean content type is served alike.
        clean = await comparable_answer(fast, control_answer)
        assert clean == await comparable_answer(plain, control_answer)
        response = await answer(fast, data)
        got = comparable(response)
        want = await comparable_answer(plain, data)
    assert got == want
    # Not a header that splits or corrupts the head: the upstream's fault, a 500.
    status, _, body = response
    assert status == 500
    assert orjson.loads(body)["code"] == 13
    assert b"content_type holds control characters" in body


@pytest.mark.parametrize("target", ["/v1/things/a%0Ab", "/v1/files/a%0Ab/c"])
async def test_newline_in_a_path_variable_is_answered_alike(
    upstream_factory: StartServer, target: str
) -> None:
    data = request("GET", target)
    lines = []
    answers = []
    statuses = []
    async with httpbody_bridges(upstream_factory) as (fast, plain):
        for b in (fast, plain):
            with structlog.testing.capture_logs() as logs:
                response = await answer(b, data)
            answers.append(comparable(response))
            statuses.append(status_of(response))
            lines.append(
                [(e["http_status"], e["route"]) for e in logs if e.get("event") == "request"]
            )
    got, want = answers
    assert got == want
    assert lines[0] == lines[1]
    # Both reach the route table: the binding serves it, "\n" and all.
    assert statuses == [200, 200], got


# -- heads read once (FastPath.parsed): the same bytes again are the same request --


async def test_a_head_sent_again_is_served_or_handed_over_as_the_first_time(
    upstream: RunningServer, hand_overs: list[bytes]
) -> None:
    chunked = (
        f"POST {ECHO} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        '9\r\n{"fInt32"\r\n4\r\n: 7}\r\n0\r\n\r\n'
    ).encode()
    async with running_bridge(upstream.target) as b:
        for _ in range(2):
            async with connection(b) as (reader, writer):
                # Bodies of one size: the same head, each body its own.
                for text in ("one", "two"):
                    writer.write(post(ECHO, b'{"fString": "%s"}' % text.encode()))
                    status, _, body = await read_response(reader)
                    assert status == 200 and orjson.loads(body)["fString"] == text
                writer.write(chunked)
                status, _, body = await read_response(reader)
                assert status == 200 and orjson.loads(body)["fInt32"] == 7
    assert hand_overs == [b"", b""]  # the chunked head, both times


async def test_the_heads_kept_are_bounded(
    upstream: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastpath, "MAX_MEMO", 4)
    async with running_bridge(upstream.target) as b, connection(b) as (reader, writer):
        (site,) = [s for s in b.server.proxy_runner.sites if isinstance(s, sites.FastSite)]
        for i in range(10):
            writer.write(post(ECHO, b"{}", f"X-Request-Id: r{i}"))
            status, headers, _ = await read_response(reader)
            assert status == 200 and headers["x-request-id"] == f"r{i}"
            assert 0 < len(site.fast.parsed) <= 4


async def test_a_head_sent_again_is_routed_anew_once_the_routes_change(
    upstream: RunningServer,
) -> None:
    async with running_bridge(upstream.target) as b, connection(b) as (reader, writer):
        data = post(ECHO, b'{"fString": "x"}')
        writer.write(data)
        assert (await read_response(reader))[0] == 200
        b.server.bridge.routes = RouteTable(())  # as when the upstream's services change
        writer.write(data)
        assert (await read_response(reader))[0] == 404
