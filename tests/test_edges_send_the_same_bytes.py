"""The lean HTTP/1.1 edge and the aiohttp edge answer any request with the same bytes.

Hypothesis draws requests over methods, the generic and REST routes of the test
services (and routes that are none), path variables and query strings (escapes,
unknown and Connect parameters), headers (CORS ``Origin`` allowed or not,
repeated ones, request ids, timeouts, content and encoding negotiation, other
protocols' markers) and bodies (valid JSON, invalid JSON, wrong types, over
``limits.max_request_bytes``); and gRPC-Web and Connect unary calls
(tests/helpers/browser_requests.py: every gRPC-Web form, Connect JSON and
proto, upstream errors with details, deadlines, compression both ways,
metadata, refusals). Each goes to a bridge with ``listen.fast_path``
on and to one with it off (same upstream, routes, CORS policy), over persistent
raw connections, and the two answers must be equal byte for byte: status line,
every header in order (repeated ones included) and body. Only ``Date`` is
dropped, and a request id the bridge made up (and the upstream's view of its
peer port) is replaced by a placeholder wherever it appears.

The lean side's connection is reopened after a hand-over to aiohttp, so that
every request starts on the lean edge; the module checks at the end that the
lean edge served a good share of them itself, gRPC-Web's and Connect's too.
"""

from __future__ import annotations

import base64
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpc_bridge.edge import fastpath
from tests.helpers.background import Background
from tests.helpers.browser_requests import browser_requests
from tests.helpers.harness import running_bridge
from tests.helpers.lean_path import ROUTES, comparable_bytes
from tests.helpers.raw_http import ECHO, FAIL
from tests.helpers.servers import start_server

AGREEMENT = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MAX_BODY = 2048
ALLOWED_ORIGIN = "https://app.example"
CORS = {"allowed_origins": [ALLOWED_ORIGIN], "allow_credentials": True}
WITHIN_S = 10.0
LOOKUP = "/bridgetest.v1.TestService/Lookup"
METADATA = "/bridgetest.v1.TestService/EchoMetadata"


class Connection:
    """One persistent raw connection to a proxy port, reopened when an answer closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._sock: socket.socket | None = None
        self._buffer = b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buffer = b""

    def exchange(self, data: bytes, method: str) -> bytes:
        """The whole answer to ``data`` as received (head and body)."""
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=WITHIN_S)
        self._sock.sendall(data)
        head = self._until(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        fields = head.lower().split(b"\r\n")
        length = next((int(f[15:]) for f in fields if f.startswith(b"content-length:")), None)
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif length is not None:
            body = self._exactly(length)
        elif b"transfer-encoding: chunked" in fields:
            # A stream (a Connect stream's refusal comes as its end message): the body
            # without its chunking, which may fall otherwise from one run to the next.
            body = self._chunked()
        else:  # no framing: the body runs to the close
            body = self._rest()
        if b"connection: close" in fields or length is None:
            self.close()
        return head + body

    def _recv(self) -> bytes:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer was whole")
        return chunk

    def _until(self, end: bytes) -> bytes:
        while end not in self._buffer:
            self._buffer += self._recv()
        head, _, self._buffer = self._buffer.partition(end)
        return head + end

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._recv()
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return body

    def _chunked(self) -> bytes:
        body = b""
        while size := int(self._until(b"\r\n")[:-2].split(b";")[0], 16):
            body += self._exactly(size)
            self._exactly(2)  # the chunk's CRLF
        self._until(b"\r\n")  # no trailers: the blank line
        return body

    def _rest(self) -> bytes:
        with contextlib.suppress(ConnectionError):
            while True:
                self._buffer += self._recv()
        body, self._buffer = self._buffer, b""
        return body


class Edges:
    """The two bridges' connections, and what the lean edge did with each request."""

    def __init__(self, lean_port: int, aiohttp_port: int, hand_overs: list[bytes]) -> None:
        self.lean = Connection(lean_port)
        self.aiohttp = Connection(aiohttp_port)
        self.hand_overs = hand_overs
        self.served = 0
        self.handed_over = 0
        #: gRPC-Web and Connect requests the lean edge served itself.
        self.served_browser = 0


async def _start(stack: contextlib.AsyncExitStack) -> tuple[int, int]:
    upstream = await start_server(services=("rest", "test"))
    stack.push_async_callback(upstream.stop)
    ports = []
    for fast_path in (True, False):
        bridge = await stack.enter_async_context(
            running_bridge(
                upstream.target,
                routes=ROUTES,
                cors=CORS,
                limits={"max_request_bytes": MAX_BODY},
                listen={"fast_path": fast_path},
            )
        )
        ports.append(bridge.server.proxy_port)
    return ports[0], ports[1]


@pytest.fixture(scope="module")
def edges() -> Iterator[Edges]:
    background = Background()
    stack = contextlib.AsyncExitStack()
    hand_overs: list[bytes] = []
    original = fastpath.FastConnection._hand_over

    def spy(self: fastpath.FastConnection, raw: bytes) -> None:
        hand_overs.append(raw)
        original(self, raw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastpath.FastConnection, "_hand_over", spy)
        lean_port, aiohttp_port = background.run(_start(stack))
        edges = Edges(lean_port, aiohttp_port, hand_overs)
        try:
            yield edges
        finally:
            edges.lean.close()
            edges.aiohttp.close()
            background.run(stack.aclose())
            background.close()
    # Not a vacuous agreement: the lean edge served a good share itself.
    assert edges.served >= 90, (edges.served, edges.handed_over)
    assert edges.handed_over >= 60, (edges.served, edges.handed_over)
    assert edges.served_browser >= 25, edges.served_browser


# --- what a client may send ----------------------------------------------------------------------

SEGMENTS = st.sampled_from(
    ["1", "7", "abc", "a%2Fb", "x%20y", "%zz", "-3", "true", "BLUE", "special", "%C3%A9", "a.b"]
) | st.text(alphabet="abcXYZ019-._~!$&'()*+,;=:@", min_size=1, max_size=6)
TS = "2024-01-01T00:00:00Z"


@st.composite
def targets(draw: Any) -> str:
    seg = [draw(SEGMENTS) for _ in range(2)]
    path = draw(
        st.sampled_from(
            [
                ECHO,
                ECHO,
                LOOKUP,
                LOOKUP,
                FAIL,
                METADATA,
                "/nope.v1.Nope/Nope",
                f"/v1/things/{seg[0]}",
                f"/v1/things/{seg[0]}",
                f"/v1/things/{seg[0]}/tags",
                f"/v1/things/{seg[0]}/nested",
                f"/v1/shelves/{seg[0]}/things/{seg[1]}",
                "/v1/things/special",
                f"/v1/shelves/{seg[0]}/books/{seg[1]}",
                f"/v1/files/{seg[0]}/{seg[1]}",
                f"/v1/ops/{seg[0]}/status/{seg[1]}",
                f"/v1/typed/{seg[0]}/true/BLUE/{TS}/7",
                "/v1/things",
                f"/v1/things/{seg[0]}:archive",
                f"/v1/things/{seg[0]}/download",
                "/v1/echo-body",
                f"/v1/echo/{seg[0]}",
                "/v1/fail",
                "/v1/nothing/here",
            ]
        )
    )
    if draw(st.integers(0, 2)):
        return path
    names = ["name", "num", "tags", "color", "flag", "f_string", "fString", "f_int64"]
    names += ["r_string", "update_mask", "bogus", "connect", "encoding", "message", "nested.name"]
    values = ["x", "1", "a+b", "%20", "%zz", "BLUE", "true", "v1", "", "%C3%A9", "%FF"]
    items = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(values)), max_size=4))
    return path + "?" + "&".join(f"{name}={value}" for name, value in items)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=6,
)
FIELDS = ["fString", "fInt32", "fInt64", "fBool", "rString", "name", "id", "num", "flag"]
FIELDS += ["color", "tags", "nested", "code", "message", "bogus", "contentType", "data"]


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["json"] * 6 + ["typed", "invalid", "empty", "oversize"]))
    if kind == "json":
        return orjson.dumps(draw(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=3)))
    if kind == "typed":  # values of the fields' own types, the answers that succeed
        return orjson.dumps(
            draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "fString": st.text(max_size=8),
                        "fInt32": st.integers(-(2**31), 2**31 - 1),
                        "name": st.text(max_size=8),
                        "num": st.integers(0, 99).map(str),
                        "tags": st.lists(st.text(max_size=3), max_size=2),
                    },
                )
            )
        )
    if kind == "invalid":
        return draw(st.sampled_from([b"{", b"{not json", b"[1,", b'{"a":}', b"\xff\xfe", b"nul"]))
    if kind == "empty":
        return b""
    return b'{"fString": "' + b"x" * (MAX_BODY + draw(st.integers(1, 500))) + b'"}'


EXTRA_HEADERS = [
    f"Origin: {ALLOWED_ORIGIN}",
    f"Origin: {ALLOWED_ORIGIN}",
    "Origin: https://other.example",
    "X-Request-Id: req-1",
    "X-Request-Id: req 2",
    "X-Request-Id: a\tb",
    "Grpc-Timeout: 5S",
    "Grpc-Timeout: banana",
    "Connect-Timeout-Ms: 3000",
    "Accept: application/json",
    "Accept: */*",
    "Accept: application/x-ndjson",
    "Accept-Encoding: gzip",
    "Accept-Encoding: identity;q=0",
    "Accept-Encoding: br, gzip;q=0.5",
    "x-custom: a",
    "x-custom: b",
    "Grpc-Metadata-Trace: 1",
    "Authorization: Bearer t",
    "Connection: keep-alive",
    "Connection: close",
    "Connection: upgrade",
    "Connection: keep-alive, TE",
    "Connect-Protocol-Version: 1",
    "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "User-Agent: t",
    "Access-Control-Request-Method: POST",
    "Content-Encoding: identity",
]
CONTENT_TYPES = ["application/json"] * 6 + [
    None,
    "text/plain",
    "application/json; charset=utf-8",
    "application/grpc-web+json",
    "application/connect+json",
    "application/proto",
]


#: Headers that leave a request the lean edge's to serve.
BENIGN_HEADERS = [
    f"Origin: {ALLOWED_ORIGIN}",
    "Origin: https://other.example",
    "X-Request-Id: req-1",
    "Grpc-Timeout: 5S",
    "Accept: application/json",
    "Accept-Encoding: gzip",
    "Accept-Encoding: br, gzip;q=0.5",
    "x-custom: a",
    "x-custom: b",
    "Grpc-Metadata-Trace: 1",
    "Connection: keep-alive",
    "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
]
THING = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=8),
        "num": st.integers(0, 99).map(str),
        "tags": st.lists(st.text(max_size=3), max_size=2),
        "flag": st.booleans(),
    },
).map(orjson.dumps)
KITCHEN = st.fixed_dictionaries(
    {}, optional={"fString": st.text(max_size=8), "fInt32": st.integers(-5, 5)}
).map(orjson.dumps)
FAILURE = st.builds(
    lambda code, text: orjson.dumps({"code": code, "message": text}),
    st.integers(1, 16),
    st.text(max_size=8),
)
NO_BODY: st.SearchStrategy[bytes | None] = st.none()
#: Requests the lean edge serves, most of the time: (method, path, body).
SERVED = [
    ("POST", st.just(ECHO), KITCHEN),
    ("GET", st.sampled_from([LOOKUP, f"{LOOKUP}?f_string=x&r_string=a&r_string=b"]), NO_BODY),
    ("GET", st.just(METADATA), NO_BODY),
    ("POST", st.sampled_from([FAIL, "/v1/fail"]), FAILURE),
    ("GET", SEGMENTS.map(lambda s: f"/v1/things/{s}?name=a+b&tags=x&tags=y"), NO_BODY),
    ("GET", SEGMENTS.map(lambda s: f"/v1/things/{s}/download?tags=a"), NO_BODY),
    ("POST", st.just("/v1/things"), THING),
    ("PUT", SEGMENTS.map(lambda s: f"/v1/things/{s}"), THING),
    ("PATCH", SEGMENTS.map(lambda s: f"/v1/things/{s}"), THING),
    ("DELETE", SEGMENTS.map(lambda s: f"/v1/things/{s}"), NO_BODY),
    ("PATCH", st.just("/v1/echo/5"), KITCHEN),
]


@st.composite
def requests(draw: Any) -> tuple[str, bytes, bool]:
    """(method, bytes, whether it is a gRPC-Web or Connect unary request)."""
    if not draw(st.integers(0, 2)):
        return (*draw(browser_requests(MAX_BODY)), True)
    headers = ["Host: bridge"]
    if draw(st.booleans()):
        method, paths, bodies_of = draw(st.sampled_from(SERVED))
        target = draw(paths)
        body = draw(bodies_of)
        if body is not None:
            headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        headers += draw(st.lists(st.sampled_from(BENIGN_HEADERS), max_size=4))
    else:
        method = draw(
            st.sampled_from(
                ["GET"] * 5 + ["POST"] * 5 + ["PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
            )
        )
        target = draw(targets())
        with_body = method in ("POST", "PUT", "PATCH") or not draw(st.integers(0, 5))
        body = draw(bodies()) if with_body else None
        if not draw(st.integers(0, 30)):
            headers = []  # no Host: aiohttp's parser refuses it
        if body is not None:
            content_type = draw(st.sampled_from(CONTENT_TYPES))
            if content_type is not None:
                headers.append(f"Content-Type: {content_type}")
            headers.append(f"Content-Length: {len(body)}")
        headers += draw(st.lists(st.sampled_from(EXTRA_HEADERS), max_size=5))
    headers = draw(st.permutations(headers))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    return method, head.encode() + (body or b""), False


# --- what the edges answer -----------------------------------------------------------------------


@AGREEMENT
@given(request=requests())
def test_both_edges_answer_with_the_same_bytes(
    edges: Edges, request: tuple[str, bytes, bool]
) -> None:
    method, data, browser = request
    before = len(edges.hand_overs)
    lean = comparable_bytes(edges.lean.exchange(data, method))
    if len(edges.hand_overs) > before:
        edges.handed_over += 1
        edges.lean.close()  # aiohttp has this connection now: the next request starts lean
    else:
        edges.served += 1
        edges.served_browser += browser
    plain = comparable_bytes(edges.aiohttp.exchange(data, method))
    assert lean == plain, data


def _text_answer(request_id: str, port: int) -> bytes:
    metadata = f'{{"x-request-id": "{request_id}", "peer": "ipv4:127.0.0.1:{port}"}}'.encode()
    frame = b"\x00" + len(metadata).to_bytes(4, "big") + metadata
    trailer = b"grpc-status: 0\r\n"
    body = base64.b64encode(frame) + base64.b64encode(b"\x80" + len(trailer).to_bytes(4, "big"))
    body += base64.b64encode(trailer)
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/grpc-web-text+proto\r\n"
        f"X-Request-Id: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_the_comparison_blanks_what_a_grpc_web_text_body_echoes() -> None:
    """A text answer echoes the made-up request id and the peer's port in base64: the
    comparison sees through it, as it does for binary bodies (else two equal answers differ)."""
    one = _text_answer("0" * 32, 50000)
    other = _text_answer("f" * 32, 50001)
    assert one != other
    assert comparable_bytes(one) == comparable_bytes(other)
