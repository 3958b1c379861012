"""Every aiohttp internal the bridge relies on, in one place.

aiohttp gives no public hook for four things the bridge needs: its own
answer to a request the parser refuses (edge/parse_errors.py), a listening
socket whose connections start on another protocol (the lean HTTP/1.1 path,
edge/fastpath.py), the parser aiohttp's handlers parse with, for that lean path
to read a head exactly as aiohttp would, and the port a site bound. What is
used for them, and why:

==================================  ==========================================================
internal                            relied on for
==================================  ==========================================================
``web_protocol._ErrInfo``           a parse error queued in ``RequestHandler._messages``
                                    (``.exc`` the ``HttpProcessingError``)
``RequestHandler._messages``        the queue of ``(message, payload)`` the parser fills
                                    during ``data_received``: a new ``_ErrInfo`` there while a
                                    body is open is an error inside that body
``RequestHandler._current_request`` the request being handled, whose body that is
``RequestHandler._close``           True: close the connection after the current answer
``RequestHandler._waiter``          pending while the handler awaits the next request (what
                                    aiohttp's own keep-alive check calls idle)
``BaseProtocol._upgraded``          True once the connection carries another protocol
                                    (a WebSocket): no more heads are read
``BaseProtocol._parser``            the handler's parser, asked whether it holds part of a
                                    head (:func:`end_unfinished_head`); the pure-Python one's
``HttpRequestParserPy._lines``,     ``_lines`` and ``_tail`` are the head lines read so far
``._tail``
``BaseRequest._cache``              ``"keep_alive"`` cached there: False sends
                                    ``Connection: close`` on the answer
``BaseRequest._version``            the version of the placeholder request aiohttp makes
                                    for a parse error (HTTP/1.0); the answer is HTTP/1.1
``AppRunner._make_server``          the ``web.Server`` aiohttp builds at ``setup()`` (app
                                    start-up, handler arguments), remade with our protocol
``web.Server._loop``, ``._kwargs``  what ``Server.__call__`` passes to ``RequestHandler``
``BaseSite.start`` (unbound),       a TCP site listening with another protocol factory:
``BaseSite._server``,               ``BaseSite.start`` registers the site with the runner,
``TCPSite._host``, ``._port``,      the rest is what ``TCPSite.start`` passes to
``._backlog``, ``._reuse_address``, ``loop.create_server``; ``_server`` is what ``stop()``
``._reuse_port``                    closes and where the bound port is read
``http_parser.HttpRequestParser``   the parser ``RequestHandler`` builds (llhttp, aiohttp's C
(the C one, ``_http_parser``)       extension), made with the same limits by :func:`head_parser`
``http_writer._serialize_headers``  what aiohttp's writer makes a response head with, so that
                                    the lean path's heads are aiohttp's bytes
``BaseRequest(protocol=...)``       an HTTP/2 stream's request (edge/h2c_stream.py) is made
                                    with a stand-in for the ``RequestHandler``: the request
                                    reads ``ssl_context``, ``peername``, ``sockname``,
                                    ``transport``, ``force_close()`` of it
``StreamReader(protocol=...)``      the body of an HTTP/2 stream: the reader calls
                                    ``pause_reading()`` above twice its limit,
                                    ``resume_reading()`` below it, and reads ``connected``
==================================  ==========================================================

Behaviour relied on: a ``RequestHandler`` adopts a live transport handed to it
mid-connection (``set_protocol``, ``connection_made``, then the bytes already
read), and serves it as if it had been there from the start; the parser's
message for a head over ``max_headers`` fields is :data:`TOO_MANY_HEADERS`, and
its ``BadHttpMethod`` message quotes the request line (``b'FOO /path HTTP/1.1'``),
which edge/parse_errors.py reads back to answer an unknown method with a 405.
The C parser's ``feed_eof()`` between requests does nothing and returns None;
part of a head read, it makes a message of it (or raises): that is how
edge/head_deadline.py learns that a head is unfinished when its deadline is up.
The C parser made with ``response_with_body=False`` ends each request at its
head (llhttp's "skip body"): fed one head it returns its ``RawRequestMessage``
and is ready for the next head, so the lean path reads the body itself and
never feeds it one. The pure-Python parser (``AIOHTTP_NO_EXTENSIONS``) does
not work that way: without the C one, :func:`head_parser` is None and the lean
path is off.

tests/test_aiohttp_compat.py checks each of these on the installed aiohttp and
names the one that changed; pyproject.toml pins aiohttp to the releases it
passes on. Nothing outside this module touches an aiohttp name that starts
with ``_``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpProcessingError, HttpVersion, HttpVersion11, RawRequestMessage
from aiohttp.http_parser import HttpRequestParser, HttpRequestParserPy
from aiohttp.http_writer import _serialize_headers
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import _ErrInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = [
    "TOO_MANY_HEADERS",
    "ErrInfo",
    "HeadParser",
    "HttpProcessingError",
    "ProtocolSite",
    "RawRequestMessage",
    "RemadeServerRunner",
    "adopt_connection",
    "answer_as_http11",
    "body_reader",
    "bound_port",
    "close_after_answer",
    "current_request",
    "end_unfinished_head",
    "h2_message",
    "h2_request",
    "head_limits",
    "head_parser",
    "queued_messages",
    "serialize_head",
    "server_kwargs",
    "server_loop",
    "unread_bytes",
    "upgraded",
    "waiting_for_request",
]

#: A parse error in the handler's message queue (its ``exc`` is what the parser raised).
ErrInfo = _ErrInfo

#: aiohttp's message (both parsers) for a head with more than ``max_headers`` fields.
TOO_MANY_HEADERS = "Too many headers received"


def queued_messages(handler: web.RequestHandler) -> deque[tuple[Any, Any]]:
    """The ``(message, payload)`` pairs parsed and not yet handled."""
    return handler._messages


def current_request(handler: web.RequestHandler) -> web.BaseRequest | None:
    return handler._current_request


def close_after_answer(handler: web.RequestHandler, request: web.BaseRequest) -> None:
    """``Connection: close`` on the answer to ``request``, then the connection closes."""
    request._cache["keep_alive"] = False
    handler._close = True


def waiting_for_request(handler: web.RequestHandler) -> bool:
    """Whether ``handler`` is idle: awaiting the next request, none queued."""
    waiter = handler._waiter
    return waiter is not None and not waiter.done() and not handler._messages


def upgraded(handler: web.RequestHandler) -> bool:
    """Whether the connection carries another protocol now (a WebSocket): no heads."""
    return handler._upgraded


def end_unfinished_head(handler: web.RequestHandler) -> bool:
    """True when ``handler``'s parser holds part of a request head: its input is ended
    then, and the connection must close. Between requests it is left as it was.

    (Only for an idle handler: a body still being read would be ended too.)
    """
    parser: Any = handler._parser
    if parser is None:
        return False
    if isinstance(parser, HttpRequestParserPy):
        return bool(parser._lines or parser._tail)
    try:
        return parser.feed_eof() is not None
    except Exception:
        return True  # what it had read so far is no head


def answer_as_http11(request: web.BaseRequest) -> None:
    """The answer's status line says HTTP/1.1 (aiohttp's parse-error placeholder is 1.0)."""
    request._version = HttpVersion11


def server_loop(server: web.Server) -> asyncio.AbstractEventLoop:
    return server._loop


def server_kwargs(server: web.Server) -> dict[str, Any]:
    """The ``RequestHandler`` arguments ``server`` was made with (the runner's kwargs)."""
    return server._kwargs


class RemadeServerRunner(web.AppRunner):
    """``web.AppRunner`` whose ``web.Server`` is :meth:`remake_server` of aiohttp's own."""

    async def _make_server(self) -> web.Server:
        return self.remake_server(await super()._make_server())

    def remake_server(self, made: web.Server) -> web.Server:
        return made


class ProtocolSite(web.TCPSite):
    """aiohttp's TCP site whose connections start on ``protocol`` instead of the runner's."""

    def __init__(
        self,
        runner: web.AppRunner,
        protocol: Callable[[], asyncio.Protocol],
        host: str,
        port: int,
        *,
        reuse_port: bool | None,
    ) -> None:
        super().__init__(runner, host, port, reuse_port=reuse_port)
        self._protocol = protocol

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )


def bound_port(runner: web.BaseRunner) -> int:
    """The port the runner's first site listens on (0 before it started)."""
    for site in runner.sites:
        server: Any = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or ():
            return int(sock.getsockname()[1])
    return 0


def adopt_connection(
    handler: asyncio.Protocol, transport: asyncio.Transport, data: bytes, *, paused: bool
) -> None:
    """``handler`` (a ``RequestHandler``) takes over a live connection, ``data`` already read."""
    transport.set_protocol(handler)
    handler.connection_made(transport)
    if paused:
        transport.resume_reading()
    if data:
        handler.data_received(data)


#: What :func:`head_parser` makes (aiohttp's C ``HttpRequestParser``).
HeadParser = HttpRequestParser

#: The limits ``RequestHandler`` gives its parser, with its defaults (read off its signature).
_PARSER_LIMITS = {
    name: param.default
    for name, param in inspect.signature(web.RequestHandler.__init__).parameters.items()
    if name in ("max_line_size", "max_field_size", "max_headers")
}


def head_limits(server: web.Server) -> tuple[int, int, int]:
    """``(max_line_size, max_field_size, max_headers)`` of ``server``'s parsers."""
    kwargs = server_kwargs(server)
    limits = {name: int(kwargs.get(name, default)) for name, default in _PARSER_LIMITS.items()}
    return limits["max_line_size"], limits["max_field_size"], limits["max_headers"]


def head_parser(server: web.Server) -> Callable[[], HeadParser] | None:
    """What makes parsers that read request heads as ``server``'s handlers do.

    Each reads one head per ``feed_data(head)``, which returns
    ``([(message, payload)], upgraded, tail)``, and raises
    :class:`HttpProcessingError` where aiohttp would answer 400 or 431. None when
    aiohttp runs its pure-Python parser (see the module docstring).
    """
    if HttpRequestParser is HttpRequestParserPy:
        return None
    kwargs = server_kwargs(server)
    limits = {name: kwargs.get(name, default) for name, default in _PARSER_LIMITS.items()}
    return functools.partial(
        HttpRequestParser,
        None,  # the payload's protocol: no payload is ever made (no body is fed)
        server_loop(server),
        2**16,  # the payload's buffer limit, likewise
        response_with_body=False,
        **limits,
    )


def serialize_head(status_line: str, headers: CIMultiDict[str]) -> bytes:
    """A response head as aiohttp's writer sends it (it refuses CR or LF in a value)."""
    return _serialize_headers(status_line, headers)


def h2_message(
    method: str, path: str, headers: CIMultiDict[str], raw: tuple[tuple[bytes, bytes], ...]
) -> RawRequestMessage:
    """The message of an HTTP/2 request (``path`` the ``:path``; origin form, checked)."""
    # Cut as aiohttp's parser cuts an origin-form target (_http_parser.pyx): the query
    # from the first "?", then a fragment from the first "#" after it. An HTTP/2
    # client should send none (RFC 9113 §8.3.1); one that does is served as over HTTP/1.1.
    target, mark, query = path.partition("?")
    if mark:
        query, _, fragment = query.partition("#")
    else:
        target, _, fragment = target.partition("#")
    url = URL.build(path=target, query_string=query, fragment=fragment, encoded=True)
    return RawRequestMessage(
        method,
        path,
        HttpVersion(2, 0),
        CIMultiDictProxy(headers),
        raw,
        False,  # should_close: HTTP/2 has no per-request connection close
        None,  # compression: the bridge inflates bodies itself (auto_decompress off)
        False,
        False,
        url,
    )


def body_reader(pacer: object, limit: int, loop: asyncio.AbstractEventLoop) -> StreamReader:
    """aiohttp's body reader, paced by ``pacer`` (``pause_reading``, ``resume_reading``,
    ``connected``): an HTTP/2 stream's request body, fed from its DATA frames."""
    return StreamReader(cast("BaseProtocol", pacer), limit, loop=loop)


def unread_bytes(reader: StreamReader) -> int:
    """Bytes fed to ``reader`` that nothing has read yet."""
    return reader._size


def h2_request(
    server: web.Server,
    message: RawRequestMessage,
    payload: StreamReader,
    handler: object,
    writer: AbstractStreamWriter,
    task: asyncio.Task[None],
) -> web.BaseRequest:
    """The app's request (``server.request_factory``, the app's own ``_make_request``)
    for a request that did not come through a ``RequestHandler``: ``handler`` stands in."""
    return server.request_factory(
        message, payload, cast("web.RequestHandler", handler), writer, task
    )
