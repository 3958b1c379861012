"""An h2c ``:path`` is read as aiohttp's HTTP/1.1 parser reads the same request target.

The h2c edge builds the request's message itself (edge/aiohttp_compat.py
``h2_message``); the app reads its path, query and URL from it as from a parsed
HTTP/1.1 head. A target with a ``#`` (a fragment, which an HTTP/2 client should not
send, RFC 9113 §8.3.1, and which llhttp takes) was served with the fragment in
its path or last query value over h2c: ``/v1/things/7#x`` reached the upstream as
id ``7#x`` where HTTP/1.1 asks for ``7``. Hypothesis draws targets of visible
ASCII with ``?``, ``#`` and ``%`` among them; every part of the message the app
reads must be the C parser's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParser, HttpRequestParserPy, RawRequestMessage
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from grpc_bridge.edge.aiohttp_compat import h2_message

pytestmark = pytest.mark.skipif(
    HttpRequestParser is HttpRequestParserPy, reason="aiohttp runs its pure-Python parser"
)

TARGETS = st.text(alphabet=st.sampled_from("/?#%&=;a1.~!$'()*+,:@[]{}|\\^`\"<>"), max_size=12).map(
    lambda rest: "/" + rest
)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _read(message: RawRequestMessage) -> tuple[Any, ...]:
    url = message.url
    return (
        message.path,
        str(url),
        url.raw_path,
        url.path,
        url.raw_query_string,
        tuple(url.query.items()),
        url.raw_fragment,
    )


def _over_http1(loop: asyncio.AbstractEventLoop, method: str, target: str) -> Any:
    parser = HttpRequestParser(
        None,  # type: ignore[arg-type]  # no payload is made: no body is fed
        loop,
        2**16,
        response_with_body=False,
    )
    try:
        messages, _, _ = parser.feed_data(f"{method} {target} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
    except HttpProcessingError:
        return None
    return _read(messages[0][0])


@settings(max_examples=400, deadline=None)
@given(target=TARGETS)
@example(target="/v1/things/7#x")
@example(target="/v1/things/7?name=a#b")
@example(target="/a#b?c")
@example(target="/a?#")
def test_a_path_reads_as_the_same_target_over_http1(
    loop: asyncio.AbstractEventLoop, target: str
) -> None:
    over_http1 = _over_http1(loop, "GET", target)
    assume(over_http1 is not None)
    assert _read(h2_message("GET", target, CIMultiDict(host="b"), ())) == over_http1


def test_options_asterisk_reads_as_over_http1(loop: asyncio.AbstractEventLoop) -> None:
    over_h2c = _read(h2_message("OPTIONS", "*", CIMultiDict(host="b"), ()))
    assert over_h2c == _over_http1(loop, "OPTIONS", "*")
