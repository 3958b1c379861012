"""An h2c request head is refused as aiohttp's HTTP/1.1 parser refuses the same head.

HPACK lets a header block pass what aiohttp's parser (llhttp, its C parser, which
the HTTP/1.1 edges run) refuses, so the h2c edge checks the block itself
(edge/h2c_stream.py ``over_head_limits``). The parser meets the head's faults in
the order its bytes arrive: a field too long as it is read, a repeated single-use
field (``Content-Type``, ``Host``...) and the field past ``max_headers`` as each
field ends. A head with more than one fault gets the first one's answer: a
repeated ``Content-Type`` among 130 fields is a 400 naming it, not a 431 for the
count. A ``:method`` or a name that is not a token, or a value with a control
character (HTAB aside), which HTTP/2 carries, is refused as over HTTP/1.1. Hypothesis draws heads
with such fields, repeated, over-long and too many fields; both become the
bridge's answer (``parse_error``) and must be the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.http_parser import HttpRequestParser, HttpRequestParserPy
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from grpc_bridge.edge.h2c_stream import over_head_limits
from grpc_bridge.edge.parse_errors import _UNKNOWN_METHOD, parse_error
from tests.helpers.h2c_client import h2c_connection
from tests.helpers.harness import RunningBridge

MAX_LINE, MAX_FIELD, MAX_HEADERS = 8190, 8190, 128

pytestmark = pytest.mark.skipif(
    HttpRequestParser is HttpRequestParserPy, reason="aiohttp runs its pure-Python parser"
)

NAMES = st.sampled_from(
    [
        "content-type", "user-agent", "host", "x-a", "x-" + "n" * 40, "x-" + "n" * (MAX_FIELD - 1),
        # Characters HTTP/2 allows in a name (RFC 9113 §8.2.1), not in a token.
        "x(y", "x@y", "x/y", 'x"y', "x{y}", "x;y", "x=y",
    ]
)  # fmt: skip
VALUES = st.one_of(
    # Controls HTTP/2 allows in a value (all but NUL, CR, LF), the tab HTTP/1.1 allows too.
    st.sampled_from(["v", "application/json", "a\x01b", "a\x1bb", "a\x7fb", "a\tb", "\u00e9"]),
    st.integers(MAX_FIELD - 60, MAX_FIELD + 1).map(lambda size: "v" * size),
)
FIELDS = st.lists(st.tuples(NAMES, VALUES), max_size=6)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _answer(exc: HttpProcessingError | None) -> tuple[int, str] | None:
    if exc is None:
        return None
    error = parse_error(exc, MAX_HEADERS)
    return error.http_status, error.message


def _over_http1(loop: asyncio.AbstractEventLoop, fields: list[tuple[str, str]]) -> Any:
    parser = HttpRequestParser(
        None,  # type: ignore[arg-type]  # no payload is made: no body is fed
        loop,
        2**16,
        max_line_size=MAX_LINE,
        max_field_size=MAX_FIELD,
        max_headers=MAX_HEADERS,
        response_with_body=False,
    )
    head = "GET /p HTTP/1.1\r\nHost: b\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    try:
        parser.feed_data((head + "\r\n").encode())
    except HttpProcessingError as exc:
        return _answer(exc)
    return None


def _over_h2c(fields: list[tuple[str, str]]) -> Any:
    headers = CIMultiDict([("host", "b"), *fields])
    return _answer(over_head_limits("GET", "/p", headers, (MAX_LINE, MAX_FIELD, MAX_HEADERS)))


@settings(max_examples=300, deadline=None)
@given(
    before=FIELDS,
    filler=st.sampled_from([0, 1, MAX_HEADERS - 3, MAX_HEADERS - 2, MAX_HEADERS + 5]),
    after=FIELDS,
)
def test_a_head_with_faults_gets_the_parsers_answer_for_the_first(
    loop: asyncio.AbstractEventLoop,
    before: list[tuple[str, str]],
    filler: int,
    after: list[tuple[str, str]],
) -> None:
    fields = [*before, *((f"x-{i}", "f") for i in range(filler)), *after]
    assert _over_h2c(fields) == _over_http1(loop, fields)


@pytest.mark.parametrize(
    "fields",
    [
        # A repeated Content-Type, then more than 128 fields: the repetition comes first.
        [("content-type", "a"), ("content-type", "b")]
        + [(f"x-{i}", "f") for i in range(MAX_HEADERS + 2)],
        # A field over 8190 bytes before the 129th field: its length comes first.
        [("x-long", "v" * (MAX_FIELD + 1))] + [(f"x-{i}", "f") for i in range(MAX_HEADERS + 2)],
    ],
    ids=["repeated-then-too-many", "too-long-then-too-many"],
)
def test_the_first_fault_of_a_head_decides_its_answer(
    loop: asyncio.AbstractEventLoop, fields: list[tuple[str, str]]
) -> None:
    assert _over_h2c(fields) == _over_http1(loop, fields) is not None


@pytest.mark.parametrize("method", ["GET", "FOO", "get", "GE(T", "G@T", "G\x01T", "M-SEARCH"])
def test_a_method_reads_as_over_http1(loop: asyncio.AbstractEventLoop, method: str) -> None:
    """A :method that is no token is refused; a token, known or not, is the app's."""
    parser = HttpRequestParser(None, loop, 2**16, response_with_body=False)  # type: ignore[arg-type]
    try:
        parser.feed_data(f"{method} /p HTTP/1.1\r\nHost: b\r\n\r\n".encode())
    except BadHttpMethod as exc:
        # A token it does not know: the bridge answers it as the app would (parse_errors.py).
        over_http1 = None if _UNKNOWN_METHOD.search(exc.message) else _answer(exc)
    else:
        over_http1 = None
    limits = (MAX_LINE, MAX_FIELD, MAX_HEADERS)
    assert _answer(over_head_limits(method, "/p", CIMultiDict(host="b"), limits)) == over_http1


@pytest.mark.parametrize(
    ("method", "field", "reason"),
    [
        ("GET", ("x(y", "v"), "invalid header token"),
        ("GET", ("x-a", "a\x7fb"), "invalid header value char"),
        ("GE(T", ("x-a", "v"), "invalid method encountered"),
    ],
    ids=["name-not-a-token", "value-with-a-control", "method-not-a-token"],
)
async def test_a_head_http1_refuses_is_refused_over_h2c(
    bridge: RunningBridge, method: str, field: tuple[str, str], reason: str
) -> None:
    async with h2c_connection(bridge.server.proxy_port) as client:
        # What HTTP/2 allows (RFC 9113 §8.2.1), sent as it is.
        client.conn.config.validate_outbound_headers = False
        stream = client.request("/bridgetest.v1.TestService/Echo", [field], None, method=method)
        state = await client.answer(stream)
    assert state.headers[":status"] == "400"
    assert orjson.loads(state.body)["message"] == f"malformed HTTP request: {reason}"
