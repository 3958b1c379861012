"""One HTTP/2 request stream, served by the proxy app as if it had come over HTTP/1.1.

edge/h2c.py runs the connection (the ``h2`` state machine); each request
stream becomes an aiohttp request here: its body an aiohttp ``StreamReader``
fed from the stream's DATA frames, its answer written through
:class:`H2Writer`, an ``AbstractStreamWriter`` that turns aiohttp's
``write_headers`` / ``write`` / ``write_eof`` into HEADERS, DATA and
END_STREAM. The request goes through the app's own handler and middleware
(edge/proxy.py, edge/middleware.py): every protocol module (JSON family,
gRPC-Web, Connect) serves HTTP/2 with the code that serves HTTP/1.1.

Bounds, as bytes arrive:

- request head: HTTP/1.1's limits (aiohttp's parser: ``max_line_size`` for the
  target, ``max_field_size`` a field, ``max_headers`` fields), which HPACK would
  let a header block pass: the same request gets the same 431 on both (and
  the same 400 for a field the parser takes once, repeated: ``Content-Type``,
  ``Content-Length``, ``Host``, ``User-Agent``..., and for a ``:path`` with a
  character other than visible ASCII, a ``:method`` or a field name that is
  not a token, or a value with a control character, which HTTP/2 carries and
  llhttp refuses;
  a head with several faults gets the answer to the one llhttp meets first);
- request body: the stream's receive window, and the connection's, are given
  back only for bytes the handler has read (once fewer than ``BODY_BUFFER``
  wait: aiohttp's reader calls ``resume_reading`` then), so a stream holds at
  most one window and a connection its connection window (edge/h2c_flow.py);
  the body limits are the protocol modules' own (``limits.max_request_bytes``);
- response: DATA goes out only within the peer's flow-control window, and
  only while the socket drains; a writer waits otherwise, and with it the
  upstream call, whose stream counts what it holds in the connection's budget
  (``CLIENT_BUDGET``, upstream/client_budget.py): a connection whose client
  reads nothing holds about one stream's ``stream_buffer_bytes`` in all.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    HttpProcessingError,
    InvalidURLError,
    LineTooLong,
)
from aiohttp.http_parser import SINGLETON_HEADERS
from aiohttp.streams import EMPTY_PAYLOAD
from multidict import CIMultiDict

from grpc_bridge.edge.aiohttp_compat import (
    TOO_MANY_HEADERS,
    body_reader,
    h2_message,
    h2_request,
    unread_bytes,
)
from grpc_bridge.log import get_logger
from grpc_bridge.pipeline.context import OVER_HTTP2
from grpc_bridge.upstream.client_budget import CLIENT_BUDGET

if TYPE_CHECKING:
    from grpc_bridge.edge.h2c import H2cConnection

log = get_logger("grpc_bridge.http")

#: Request body bytes a stream's reader may hold and its window still be given back.
BODY_BUFFER = 32 * 1024
#: Response headers HTTP/2 forbids (RFC 9113 §8.2.2): HTTP/1.1's connection framing.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"}
)

#: A field name llhttp takes (RFC 9110 §5.6.2's token), and a value character it refuses.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: Fields a head may carry once (aiohttp's parser refuses a second), by lower-case name:
#: the name as that parser's message quotes it (aiohttp's ``hdrs`` spelling).
_SINGLETONS = {
    name: str(getattr(hdrs, name.upper().replace("-", "_"))) for name in SINGLETON_HEADERS
}


class StreamGone(ConnectionResetError):
    """The stream was reset (by the client, or the connection is gone)."""


class H2Stream:
    """A request stream: its body's pacing (the reader's "protocol") and its state."""

    __slots__ = (
        "_held",
        "_reading_paused",
        "conn",
        "ended",
        "reader",
        "reset",
        "sent_end",
        "stream_id",
        "task",
        "window",
    )

    def __init__(
        self, conn: H2cConnection, stream_id: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.reader = body_reader(self, BODY_BUFFER, loop)
        self._reading_paused = False
        #: Body bytes received and not yet given back to the windows.
        self._held = 0
        self.ended = False  # the client's END_STREAM arrived
        self.sent_end = False
        self.reset = False
        self.task: asyncio.Task[None] | None = None
        #: Set when the peer opens this stream's (or the connection's) send window.
        self.window: asyncio.Future[None] | None = None

    # -- what aiohttp's StreamReader calls -------------------------------------------

    @property
    def connected(self) -> bool:
        return not self.reset

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self, resume_parser: bool = True) -> None:
        # Called as the handler reads, once fewer than BODY_BUFFER bytes wait.
        self._reading_paused = False
        read = self._held - unread_bytes(self.reader)
        if read > 0:
            self._held -= read
            self.conn.give_back(self, read)

    # -- fed by the connection --------------------------------------------------------

    def without_content(self, headers_ended_it: bool, headers: CIMultiDict[str]) -> None:
        """A request without content (END_STREAM on its HEADERS, or ``content-length: 0``,
        which h2 holds the DATA to) has no body for the handler, as over HTTP/1.1, where
        aiohttp gives such a request its empty payload: ``request.body_exists`` is false
        (a GET the JSON and Connect protocols refuse a body on is served)."""
        length = headers.get("content-length", "")
        if headers_ended_it or (length.isdigit() and int(length) == 0):
            self.reader = EMPTY_PAYLOAD

    def data(self, data: bytes, flow_controlled: int) -> None:
        self.reader.feed_data(data)
        self._held += len(data)
        if flow_controlled > len(data):  # padding: nothing to read
            self.conn.give_back(self, flow_controlled - len(data))

    def release(self) -> int:
        """The stream is done: the bytes it holds unread (their windows go back)."""
        held, self._held = self._held, 0
        return held

    def end(self) -> None:
        self.ended = True
        self.reader.feed_eof()

    def cancel(self) -> None:
        """The client reset the stream, or the connection is gone: the call is cancelled."""
        self.reset = True
        if not self.reader.is_eof():
            self.reader.set_exception(StreamGone("the client reset the HTTP/2 stream"))
        if self.task is not None:
            self.task.cancel()
        self.wake()

    def wake(self) -> None:
        if self.window is not None and not self.window.done():
            self.window.set_result(None)
        self.window = None


class _HandlerStandIn:
    """What an aiohttp request reads of its ``RequestHandler`` (edge/aiohttp_compat.py)."""

    ssl_context = None
    max_field_size = 8190
    max_headers = 128

    def __init__(self, conn: H2cConnection, stream: H2Stream) -> None:
        self._conn = conn
        self._stream = stream
        self.peername = conn.peername
        self.sockname = conn.sockname

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._conn.transport

    def force_close(self) -> None:
        """HTTP/1.1's "close after this answer": on HTTP/2 only this stream ends."""
        self._conn.close_stream_after(self._stream)


class H2Writer(AbstractStreamWriter):
    """aiohttp's response writer on one HTTP/2 stream."""

    def __init__(self, conn: H2cConnection, stream: H2Stream) -> None:
        self._conn = conn
        self._stream = stream
        self.buffer_size = 0
        self.output_size = 0
        self.length = None

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        status = status_line.split(" ", 2)[1]
        fields = [(":status", status)]
        fields += [
            (name.lower(), value)
            for name, value in headers.items()
            if name.lower() not in _HOP_BY_HOP
        ]
        self._conn.send_headers(self._stream, fields)

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if chunk:
            self.output_size += len(chunk)
            await self._conn.send_data(self._stream, bytes(chunk), end=False)

    async def write_eof(self, chunk: bytes = b"") -> None:
        if self._stream.sent_end:
            return
        self.output_size += len(chunk)
        await self._conn.send_data(self._stream, bytes(chunk), end=True)

    async def drain(self) -> None:
        await self._conn.drained()

    def enable_compression(self, encoding: str = "deflate", strategy: int | None = None) -> None:
        # The bridge encodes whole answers itself (pipeline/compress.py); nothing calls this.
        raise NotImplementedError("the HTTP/2 edge does not compress on the fly")

    def enable_chunking(self) -> None:
        """HTTP/2 frames the body itself (aiohttp asks for chunks on an unsized answer)."""


def _field(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def request_parts(
    fields: list[tuple[bytes, bytes]],
) -> tuple[str, str, CIMultiDict[str], tuple[tuple[bytes, bytes], ...]] | str:
    """``(method, path, headers, raw)`` of a request's header block; a str: why it is refused.

    (``h2`` checked the pseudo-headers are there once, first, and lower-case names.)
    """
    method = path = authority = ""
    headers: CIMultiDict[str] = CIMultiDict()
    raw: list[tuple[bytes, bytes]] = []
    cookies: list[str] = []
    for name, value in fields:
        if name.startswith(b":"):
            if name == b":method":
                method = _field(value)
            elif name == b":path":
                path = _field(value)
            elif name == b":authority":
                authority = _field(value)
            continue
        raw.append((name, value))
        if name == b"cookie":
            cookies.append(_field(value))  # RFC 9113 §8.2.3: joined again with "; "
        else:
            headers.add(_field(name), _field(value))
    if cookies:
        headers["cookie"] = "; ".join(cookies)
    # RFC 9113 §8.3.1: origin form, or "*" for a server-wide OPTIONS (HTTP/1.1's
    # asterisk form, which aiohttp takes too).
    if method == "CONNECT" or not (path.startswith("/") or (path == "*" and method == "OPTIONS")):
        return f"the bridge serves origin-form :path only, not {path!r} ({method})"
    if "host" not in headers and authority:
        headers["host"] = authority
    return method, path, headers, tuple(raw)


#: ``(max_line_size, max_field_size, max_headers)``: an HTTP/1.1 head's limits.
HeadLimits = tuple[int, int, int]


def over_head_limits(
    method: str, path: str, headers: CIMultiDict[str], limits: HeadLimits
) -> HttpProcessingError | None:
    """What aiohttp's parser raises for this head over HTTP/1.1 (None: it takes it)."""
    max_line, max_field, max_headers = limits
    if not _TOKEN.fullmatch(method):
        # h2 takes any :method; llhttp a token (a token it does not know is a 405 or 404).
        return BadHttpMethod(error="Invalid method encountered")
    if not path.isascii() or not path.isprintable() or " " in path:
        # HPACK carries any byte but NUL, CR and LF; a target is visible ASCII (RFC 3986),
        # and llhttp refuses the rest (percent-encoded, they are served alike).
        return InvalidURLError(_invalid_url(path))
    if len(path) > max_line:
        return LineTooLong("Status line is too long", str(max_line), str(len(path)))
    # In the order the parser meets them as the bytes arrive: a name or a value too
    # long as it is read; a field repeated, or one past ``max_headers``, once it is
    # over, which the parser learns at the next field's name (or the head's end).
    seen: set[str] = set()
    ended: str | None = None
    for count, (name, value) in enumerate(headers.items()):
        if not _TOKEN.fullmatch(name):
            # h2 let through what HTTP/2 allows in a name (RFC 9113 §8.2.1); not a token.
            return BadHttpMessage("Invalid header token")
        if len(name) > max_field:
            return LineTooLong("Header name is too long", str(max_field), str(len(name)))
        if ended is not None and (refused := _field_over(ended, count, seen, max_headers)):
            return refused
        if _CONTROL.search(value):
            # HTTP/2 refuses NUL, CR and LF only; HTTP/1.1 any control but HTAB.
            return BadHttpMessage("Invalid header value char")
        if len(value) > max_field:
            return LineTooLong("Header value is too long", str(max_field), str(len(value)))
        ended = name
    return None if ended is None else _field_over(ended, len(headers), seen, max_headers)


def _field_over(name: str, count: int, seen: set[str], max_headers: int) -> BadHttpMessage | None:
    """The parser's refusal of the ``count``-th field, ``name``, once it is over: a
    single-use field seen before, or one field too many (None: taken)."""
    singleton = _SINGLETONS.get(name)
    if singleton is not None:
        if singleton in seen:
            return BadHttpMessage(f"Duplicate '{singleton}' header found.")
        seen.add(singleton)
    return BadHttpMessage(TOO_MANY_HEADERS) if count > max_headers else None


def _invalid_url(path: str) -> str:
    """llhttp's reason for the first character of ``path`` a target cannot hold."""
    at = next(i for i, c in enumerate(path) if not ("!" <= c <= "~"))
    if path[at] in "\t\f":
        return "Invalid characters in url"
    return f"Invalid char in url {'query' if '?' in path[:at] else 'path'}"


async def serve_stream(
    conn: H2cConnection,
    stream: H2Stream,
    server: web.Server,
    parts: tuple[str, str, CIMultiDict[str], tuple[tuple[bytes, bytes], ...]],
    limits: HeadLimits,
    on_done: Callable[[H2Stream], None],
) -> None:
    """Run the app on one request and send its answer; a reset stream cancels this task."""
    # The call's upstream stream counts what it holds in the connection's budget (set in
    # this task's own context: upstream/client_budget.py).
    CLIENT_BUDGET.set(conn.answers)
    method, path, headers, raw = parts
    refused = over_head_limits(method, path, headers, limits)
    task = asyncio.current_task()
    assert task is not None
    writer = H2Writer(conn, stream)
    message = h2_message(method, path, headers, raw)
    request = h2_request(
        server, message, stream.reader, _HandlerStandIn(conn, stream), writer, task
    )
    request[OVER_HTTP2] = True
    try:
        response: Any
        if refused is not None:
            # Answered as the HTTP/1.1 edges answer the parser's refusal (edge/parse_errors.py).
            response = server().handle_error(request, 400, refused)
        else:
            try:
                response = await server.request_handler(request)
            except web.HTTPException as exc:
                response = exc
        await response.prepare(request)
        await response.write_eof()
    except (asyncio.CancelledError, StreamGone):
        pass  # the client reset the stream: the upstream call was cancelled with this task
    except Exception as exc:
        log.error("h2_stream_error", error=repr(exc), path=path.partition("?")[0])
        conn.reset_stream(stream)
    finally:
        on_done(stream)
