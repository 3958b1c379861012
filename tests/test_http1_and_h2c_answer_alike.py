"""Every request is answered alike over HTTP/1.1 and over HTTP/2 with prior knowledge (h2c).

Hypothesis draws the requests tests/test_edges_send_the_same_bytes.py draws
(tests/helpers/edge_requests.py: JSON and REST routes, gRPC-Web and Connect
unary calls, odd paths, headers and bodies) and more that h2c serves with code
of its own: GETs and HEADs without a body (their HEADERS frame ends the
stream), server streams (chunked over HTTP/1.1, DATA frames over h2c; NDJSON
and SSE), refusals (404, 405, 413, 415, 431), query strings with odd
encodings, Connect GETs and CORS preflights. Each goes, as raw bytes over a
persistent HTTP/1.1 connection and translated field for field over a persistent
h2c connection (tests/helpers/h2c_parity.py, on the ``h2`` library), to the
same bridge (lean edge on, CORS on); the answers must be equal: status, every
header in order (repeated ones included) and the body. What HTTP/2 cannot carry
is set aside, each with its RFC: tests/helpers/h2c_parity.py says what and why.
"""

from __future__ import annotations

import base64
import contextlib
import urllib.parse
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.helpers.background import Background
from tests.helpers.edge_requests import (
    ALLOWED_ORIGIN,
    CORS,
    LOOKUP,
    MAX_BODY,
    METADATA,
    SEGMENTS,
    requests,
    targets,
)
from tests.helpers.h2c_parity import H2cSync, as_h2c, comparable, http1_answer
from tests.helpers.harness import running_bridge
from tests.helpers.http1_connection import Connection
from tests.helpers.lean_path import ROUTES
from tests.helpers.raw_http import ECHO
from tests.helpers.servers import start_server

# No saved examples (a run is what its seed draws, no more: the suite stays fast and
# alike from one checkout to the next), and few enough for ~20 s on a loaded 2-CPU box.
ALIKE = settings(
    max_examples=500,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
STREAM = "/bridgetest.v1.TestService/ServerStream"


class Sides:
    """The bridge's two connections, and what their answers covered."""

    def __init__(self, port: int) -> None:
        self.http1 = Connection(port)
        self.h2c = H2cSync(port)
        self.statuses: set[int] = set()
        self.streams = 0
        self.bodiless_gets = 0


async def _start(stack: contextlib.AsyncExitStack) -> int:
    upstream = await start_server(services=("rest", "test"))
    stack.push_async_callback(upstream.stop)
    bridge = await stack.enter_async_context(
        running_bridge(
            upstream.target, routes=ROUTES, cors=CORS, limits={"max_request_bytes": MAX_BODY}
        )
    )
    return bridge.server.proxy_port


@pytest.fixture(scope="module")
def sides() -> Iterator[Sides]:
    background = Background()
    stack = contextlib.AsyncExitStack()
    sides = Sides(background.run(_start(stack)))
    try:
        yield sides
    finally:
        sides.http1.close()
        sides.h2c.close()
        background.run(stack.aclose())
        background.close()
    # Not a vacuous agreement: successes, refusals of each kind, streams, bodiless GETs
    # (CASES hold each at least once).
    assert {200, 204, 404, 405, 413, 415, 431} <= sides.statuses, sides.statuses
    assert sides.streams >= 3, sides.streams
    assert sides.bodiless_gets >= 4, sides.bodiless_gets


# --- requests h2c serves with code of its own ----------------------------------------------------

#: Query strings a client may send, percent-encoded oddly or not at all.
ODD_QUERIES = [
    "?",
    "?&&",
    "?name",
    "?name=",
    "?name=%",
    "?name=%%",
    "?name=%2",
    "?name=%00",
    "?name=%0D%0A",
    "?name=a+b%2Bc",
    "?name=a=b=c",
    "?name=%E2%82%AC",
    "?name=%C3",
    "?name=%FF%FE",
    "?name=x;num=1",
    "?name=x&name=y",
    "?%6Eame=x",
    "?name=%5B%5D&tags[]=a",
    "?name='q'&num=~1",
    "?name=\u00e9",  # raw UTF-8, \x7f, a tab: no target holds them (RFC 3986), refused alike
    "?name=\x7f",
    "?name=a\tb",
]
#: Odd heads: raw UTF-8 or a DEL in the path, a server-wide OPTIONS, fields that are
#: split, repeated or not ASCII, an expectation of 100 Continue (interim, HTTP/1.1's).
ODD_HEADS = [
    ("GET", "/v1/things/\u00e9", []),
    ("GET", "/v1/things/a\x7fb", []),
    ("OPTIONS", "*", []),
    ("OPTIONS", "*", [f"Origin: {ALLOWED_ORIGIN}", "Access-Control-Request-Method: POST"]),
    ("GET", METADATA, ["Cookie: a=1; b=2", "x-custom: \u00e9t\u00e9", "TE: trailers"]),
    ("GET", METADATA, ["Content-Type: application/json", "Content-Type: text/plain"]),
    ("GET", "/v1/things/1", ["Grpc-Metadata-Name: \u00e9"]),
    ("GET", "//v1/things/1", []),
    ("GET", "/v1/things/../things/1", []),
    ("GET", "/v1/things/1/", []),
]
EXPECTING = ["Expect: 100-continue", "Content-Type: application/json", "Content-Length: 2"]
CHUNKED = ["Transfer-Encoding: chunked", "Content-Type: application/json"]


def _chunked(body: bytes, cut: int) -> bytes:
    pieces = [piece for piece in (body[:cut], body[cut:]) if piece]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


STREAM_CALLS = [
    ("GET", st.builds(lambda n: f"{STREAM}?count={n}", st.integers(0, 4))),
    ("GET", SEGMENTS.map(lambda s: f"/v1/things/{s}/watch?name=a")),
    ("GET", SEGMENTS.map(lambda s: f"/v1/things/{s}/chunks?tags=a&tags=b")),
    ("GET", st.just(f"{STREAM}?count=2&fail_code=9&fail_after=1")),
    ("GET", st.just(f"{STREAM}?count=banana")),
]
PREFLIGHT = [
    f"Origin: {ALLOWED_ORIGIN}",
    "Origin: https://other.example",
    "Access-Control-Request-Method: POST",
    "Access-Control-Request-Method: GET",
    "Access-Control-Request-Method: PURGE",
    "Access-Control-Request-Headers: content-type, x-custom",
    "Access-Control-Request-Headers: connect-protocol-version",
]


def _head(method: str, target: str, headers: list[str], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: bridge", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _connect_get(draw: Any) -> str:
    text = draw(st.text(max_size=6))
    message = orjson.dumps({"fString": text})
    query = ["connect=v1"]
    if draw(st.booleans()):
        query += [
            "encoding=json",
            "base64=1",
            "message=" + base64.urlsafe_b64encode(message).decode(),
        ]
    else:
        query += ["encoding=json", "message=" + urllib.parse.quote(message)]
    query = draw(st.permutations(query))
    return f"{LOOKUP}?" + "&".join(query)


@st.composite
def h2c_cases(draw: Any) -> tuple[str, bytes, bool]:
    """(method, raw HTTP/1.1 bytes, whether the answer is a stream)."""
    kinds = ["bodiless", "head", "stream", "refusal", "connect", "cors", "odd"]
    kind = draw(st.sampled_from(kinds))
    extra = draw(
        st.lists(st.sampled_from(["Accept: text/event-stream", "X-Request-Id: r"]), max_size=1)
    )
    if kind == "bodiless":
        target = draw(targets()).partition("?")[0] + draw(st.sampled_from(ODD_QUERIES))
        return "GET", _head("GET", target, extra), False
    if kind == "head":
        target = draw(targets() | st.sampled_from([STREAM + "?count=1", "/v1/things/1/watch"]))
        return "HEAD", _head("HEAD", target, extra), False
    if kind == "stream":
        method, paths = draw(st.sampled_from(STREAM_CALLS))
        if draw(st.booleans()):
            body = orjson.dumps({"count": draw(st.integers(0, 3)), "tag": "t"})
            data = _head(
                "POST",
                STREAM,
                ["Content-Type: application/json", f"Content-Length: {len(body)}", *extra],
                body,
            )
            return "POST", data, True
        return method, _head(method, draw(paths), extra), True
    if kind == "refusal":
        case = draw(st.sampled_from(["415", "413", "431", "431-many", "405", "404", "get-body"]))
        if case == "415":
            return (
                "POST",
                _head("POST", ECHO, ["Content-Type: text/plain", "Content-Length: 2"], b"{}"),
                False,
            )
        if case == "413":
            body = b'{"fString": "' + b"x" * (MAX_BODY + 10) + b'"}'
            return (
                "POST",
                _head(
                    "POST",
                    ECHO,
                    ["Content-Type: application/json", f"Content-Length: {len(body)}"],
                    body,
                ),
                False,
            )
        if case == "431":
            return (
                "GET",
                _head("GET", LOOKUP, ["X-Big: " + "x" * draw(st.integers(8191, 9000))]),
                False,
            )
        if case == "431-many":
            return "GET", _head("GET", LOOKUP, [f"x-h{i}: 1" for i in range(130)]), False
        if case == "405":
            method = draw(st.sampled_from(["DELETE", "PUT", "PATCH"]))
            return method, _head(method, "/v1/things/1/watch", []), False
        if case == "get-body":  # refused over both: this route takes no request body
            return "GET", _head("GET", LOOKUP, ["Content-Length: 2"], b"{}"), False
        return "GET", _head("GET", "/nope.v1.Nope/Nope", []), False
    if kind == "odd":
        if draw(st.integers(0, 5)) == 0:
            return "POST", _head("POST", ECHO, EXPECTING, b"{}"), False
        if draw(st.integers(0, 4)) == 0:  # content of a length not said: chunked, DATA frames
            method, target = draw(st.sampled_from([("POST", ECHO), ("GET", LOOKUP)]))
            body = draw(st.sampled_from([b"", b"{}", b'{"fString": "chunks"}']))
            chunks = _chunked(body, draw(st.integers(0, len(body))))
            return method, _head(method, target, CHUNKED, chunks), False
        method, target, headers = draw(st.sampled_from(ODD_HEADS))
        return method, _head(method, target, [*headers, *extra]), False
    if kind == "connect":
        return "GET", _head("GET", _connect_get(draw), extra), False
    headers = draw(st.lists(st.sampled_from(PREFLIGHT), min_size=1, max_size=4))
    target = draw(st.sampled_from([ECHO, LOOKUP, "/v1/things/1", "/nope.v1.Nope/Nope"]))
    return "OPTIONS", _head("OPTIONS", target, headers), False


def _shared(request: tuple[str, bytes, bool]) -> tuple[str, bytes, bool]:
    method, data, _ = request
    return method, data, False


def _streams_requests_over_h2_only(data: bytes) -> bool:
    """A gRPC-Web call of a client-streaming method: HTTP/2 carries its request stream,
    HTTP/1.1 as browsers speak it answers 12 UNIMPLEMENTED (docs/grpc-web.md), by design."""
    head = data.partition(b"\r\n\r\n")[0].lower()
    return b"/clientstream " in head and b"content-type: application/grpc-web" in head


_BIG = b'{"fString": "' + b"x" * MAX_BODY + b'"}'
#: Each kind of request at least once, whatever the draws: (method, bytes, is a stream).
CASES = [
    ("GET", _head("GET", f"{STREAM}?count=2", []), True),  # HEADERS with END_STREAM
    ("HEAD", _head("HEAD", f"{STREAM}?count=1", []), False),
    ("GET", _head("GET", "/v1/things/7/watch?name=%C3%A9", ["Accept: text/event-stream"]), True),
    ("GET", _head("GET", "/v1/things/7/chunks?tags=a&tags=b", []), True),
    ("GET", _head("GET", f"{LOOKUP}?connect=v1&encoding=json&message=%7B%7D", []), False),
    ("GET", _head("GET", f"{LOOKUP}?f_string=%FF", []), False),
    ("GET", _head("GET", "/nope.v1.Nope/Nope", []), False),
    ("DELETE", _head("DELETE", "/v1/things/1/watch", []), False),
    ("POST", _head("POST", ECHO, ["Content-Type: text/plain", "Content-Length: 2"], b"{}"), False),
    ("POST", _head("POST", ECHO, [f"Content-Length: {len(_BIG)}"], _BIG), False),
    ("GET", _head("GET", LOOKUP, ["X-Big: " + "x" * 8191]), False),
    ("OPTIONS", _head("OPTIONS", ECHO, [f"Origin: {ALLOWED_ORIGIN}", *PREFLIGHT[2::4]]), False),
    ("OPTIONS", _head("OPTIONS", "*", []), False),
    ("GET", _head("GET", "/v1/things/\u00e9", []), False),
    ("GET", _head("GET", "/v1/things/7?name=a#b", []), False),  # a fragment: llhttp takes it
    ("GET", _head("GET", METADATA, ["User-Agent: a", "User-Agent: b"]), False),
    ("GET", _head("GET", LOOKUP, CHUNKED, _chunked(b"", 0)), False),
    ("POST", _head("POST", ECHO, CHUNKED, _chunked(b'{"fString": "x"}', 5)), False),
]


# --- the two answers -----------------------------------------------------------------------------


def _examples(test: Any) -> Any:
    for case in reversed(CASES):
        test = example(request=case, empty_data=False, split=0)(test)
    return test


@_examples
@ALIKE
@given(
    request=requests().map(_shared) | h2c_cases(),
    empty_data=st.booleans(),
    split=st.integers(0, 40),
)
def test_http1_and_h2c_answer_alike(
    sides: Sides, request: tuple[str, bytes, bool], empty_data: bool, split: int
) -> None:
    method, data, stream = request
    h2c_request = as_h2c(data, empty_data_frame=empty_data)
    assume(h2c_request is not None and not _streams_requests_over_h2_only(data))
    assert h2c_request is not None
    body = h2c_request[3]
    status, fields, h2_body, trailers = sides.h2c.exchange(
        h2c_request, split=split if body and split < len(body) else 0
    )
    assert not trailers, trailers  # the bridge's HTTP/1.1 answers have none either
    over_h2c = comparable(status, fields, h2_body)
    over_http1 = comparable(*http1_answer(sides.http1.exchange(data, method)))
    assert over_h2c == over_http1, data
    sides.statuses.add(status)
    sides.streams += stream and status == 200
    sides.bodiless_gets += method == "GET" and body is None and status == 200


def test_the_comparison_sets_aside_only_what_http2_cannot_carry() -> None:
    """HTTP/1.1's connection framing and a quoted field name's case are set aside; any
    other header, its value or order, the status or a body byte still tells answers apart."""
    body = b'{"message":"header \'X-Custom\': bad"}'
    http1 = http1_answer(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Connection: keep-alive\r\nKeep-Alive: timeout=75\r\nTransfer-Encoding: chunked\r\n"
        b"Date: Sun, 06 Dec 2026 12:00:00 GMT\r\n\r\n" + body
    )
    h2c = [("content-type", "application/json"), ("date", "Sun, 06 Dec 2026 12:00:01 GMT")]
    lowered = body.replace(b"X-Custom", b"x-custom")
    assert comparable(*http1) == comparable(400, h2c, lowered)
    assert comparable(*http1) != comparable(401, h2c, lowered)
    assert comparable(*http1) != comparable(400, [*h2c, ("vary", "Origin")], lowered)
    assert comparable(*http1) != comparable(400, [("content-type", "text/plain")], lowered)
    assert comparable(*http1) != comparable(400, h2c, lowered + b" ")
    assert comparable(*http1) != comparable(400, [*h2c, ("content-length", "37")], lowered)
