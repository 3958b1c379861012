"""Requests aiohttp's HTTP parser refuses, answered with the Status body like every other error.

aiohttp answers a request it cannot parse (a bad header line or chunk, a line
over its limits, an invalid method, ...) from ``RequestHandler.handle_error``
before any middleware runs, in plain text, over HTTP/1.0. Its protocol class
is fixed inside ``web.Server``, so the proxy and admin listeners run a
``Server`` that makes ``JsonErrorHandler`` instead; the fast path hands its
connections to the same one (edge/fastpath.py), so both paths answer alike.

Only the error path differs from aiohttp's: no per-request cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong

from grpc_bridge.edge.aiohttp_compat import (
    TOO_MANY_HEADERS,
    ErrInfo,
    RemadeServerRunner,
    answer_as_http11,
    close_after_answer,
    current_request,
    queued_messages,
    server_kwargs,
    server_loop,
)
from grpc_bridge.edge.cut_off import CutOffServer
from grpc_bridge.edge.head_deadline import HeadDeadlineHandler
from grpc_bridge.edge.steps import (
    INTERNAL_MESSAGE,
    REQUEST_ID_HEADER,
    count_request,
    error_answer,
    log_request_line,
)
from grpc_bridge.errors import BridgeError, HeadersTooLarge, InvalidArgument
from grpc_bridge.log import get_logger
from grpc_bridge.metrics import Metrics
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.responses import json_response
from grpc_bridge.status import Code, status_body
from grpc_bridge.upstream.metadata import new_request_id

log = get_logger("grpc_bridge.http")

#: What the log line and metrics call the method of a request that never parsed
#: (aiohttp's own placeholder request says the same).
UNPARSED_METHOD = "UNKNOWN"
#: Where aiohttp's messages start echoing the input: the bytes' repr, or a caret line.
_ECHO = re.compile(r"\s*:?\s*(?:b['\"]|bytearray\(|\n\n).*", re.DOTALL)
_MAX_REASON = 120
#: The request line aiohttp quotes when its parser (llhttp) refuses a method it does not
#: know: a valid token there is a method this server does not implement, not garbage.
_UNKNOWN_METHOD = re.compile(
    r"""b'([!#$%&*+.^_`|~0-9A-Za-z-]{1,64}) (/[!-~]{0,8000}?) HTTP/1\.[01]'"""
)

#: What a listener answers to a method it does not know, on a path: ``(method, target)``
#: to the 405 (with the path's ``Allow``) or 404 its router would give.
RefuseMethod = Callable[[str, str], BridgeError]


def parse_error(
    exc: HttpProcessingError, max_headers: int, refuse_method: RefuseMethod | None = None
) -> BridgeError:
    """The bridge's error for a parse failure: what went wrong, never the input itself.

    431 for a head over aiohttp's limits, as grpc-gateway (Go's net/http) and
    Envoy answer; 400 for anything malformed; for a well-formed method token
    the parser does not know (``FOO``), what ``refuse_method`` says: the 405 or
    404 any other method would get there.
    """
    if isinstance(exc, BadHttpMethod) and refuse_method is not None:
        unknown = _UNKNOWN_METHOD.search(exc.message)
        if unknown is not None:
            return refuse_method(unknown[1], unknown[2])
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "the limit"
        return HeadersTooLarge(
            "request head too large: the request line or a header field is longer than "
            f"{limit} bytes",
            reason="head_too_large",
        )
    if exc.message == TOO_MANY_HEADERS:
        return HeadersTooLarge(
            f"request head too large: more than {max_headers} header fields",
            reason="head_too_large",
        )
    return InvalidArgument(
        f"malformed HTTP request: {_reason(exc.message)}", reason="malformed_request"
    )


def _reason(message: str) -> str:
    """aiohttp's description of the problem, without the bytes it quotes."""
    text = " ".join(_ECHO.sub("", message).split()).rstrip(":. ")
    text = "".join(c if " " <= c <= "~" else "?" for c in text[:_MAX_REASON])
    if len(text) > 1 and text[1].islower():
        text = text[0].lower() + text[1:]
    return text or "unparseable request"


class JsonErrorHandler(HeadDeadlineHandler):
    """aiohttp's connection protocol, with its error answers in the bridge's error shape
    (and a deadline on request heads: edge/head_deadline.py).

    ``metrics`` set: a refused request is counted and logged like the ones the
    edge middleware refuses (the proxy listener); None: neither (admin listeners).
    """

    __slots__ = ("_metrics", "_observe", "_refuse_method")

    def __init__(
        self,
        manager: web.Server,
        *,
        metrics: Metrics | None,
        observe: bool,
        refuse_method: RefuseMethod | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._metrics = metrics
        self._observe = observe
        self._refuse_method = refuse_method

    def data_received(self, data: bytes) -> None:
        messages = queued_messages(self)
        queued = len(messages)
        super().data_received(data)
        if len(messages) > queued:
            self._fail_current_body()

    def _fail_current_body(self) -> None:
        """A parse error inside the body of the request being handled fails that body.

        aiohttp's C parser, failing inside a body whose head it already
        delivered, queues the error as the next message but leaves the body
        open: the handler would wait for the rest of it until the client gave
        up. The body now raises the parse error (the handler answers 400 as for
        any bad body) and the connection closes after that answer instead of
        sending a second one. A body already complete means the error is the
        next pipelined request's, answered in its turn as before.
        """
        messages = queued_messages(self)
        message, _ = messages[-1]
        current = current_request(self)
        if not isinstance(message, ErrInfo) or current is None or current.content.is_eof():
            return
        exc = message.exc
        reason = _reason(exc.message) if isinstance(exc, HttpProcessingError) else "unparseable"
        messages.pop()
        current.content.set_exception(
            InvalidArgument(f"malformed HTTP request body: {reason}", reason="malformed_request")
        )
        # And ended: aiohttp's lingering close would otherwise read it again after the
        # answer, get the error back and log it as an unhandled exception.
        current.content.feed_eof()
        # No keep-alive after it: "Connection: close" on the answer, then the close.
        close_after_answer(self, current)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # As aiohttp: part of an answer is out, another can't follow.
            raise ConnectionError("response already started, cannot send an error response")
        if isinstance(exc, HttpProcessingError):
            response = self._parse_error_answer(request, exc)
        else:
            # A failure outside the edge middleware, which catches everything else.
            log.error("unhandled_error", status=status, exc_info=exc)
            code = Code.DEADLINE_EXCEEDED if status == 504 else Code.INTERNAL
            response = json_response(status_body(code, INTERNAL_MESSAGE), status=status)
            response.headers[REQUEST_ID_HEADER] = new_request_id()
        response.headers["Connection"] = "close"
        response.force_close()
        return response

    def _parse_error_answer(
        self, request: web.BaseRequest, exc: HttpProcessingError
    ) -> web.Response:
        ctx = RequestContext(request_id=new_request_id(), metrics=self._metrics)
        response = error_answer(parse_error(exc, self.max_headers, self._refuse_method), ctx)
        response.headers[REQUEST_ID_HEADER] = ctx.request_id
        # aiohttp makes the request of a parse error from an HTTP/1.0 placeholder;
        # the status line is the HTTP/1.1 server's we are, as on every other answer.
        answer_as_http11(request)
        if self._observe:
            body = response.body
            size = len(body) if isinstance(body, bytes) else 0
            peer = request.remote
            log_request_line(ctx, UNPARSED_METHOD, None, peer, (None, None), response.status, size)
            if self._metrics is not None:
                count_request(self._metrics, ctx, UNPARSED_METHOD, response.status)
        return response


class JsonErrorServer(CutOffServer):
    """aiohttp's low-level server, making ``JsonErrorHandler`` connections (and cutting
    off at shutdown those that read nothing: edge/cut_off.py)."""

    def __init__(
        self,
        made: web.Server,
        *,
        metrics: Metrics | None,
        observe: bool,
        refuse_method: RefuseMethod | None,
        head_timeout: float | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **kwargs,
        )
        self._metrics = metrics
        self._observe = observe
        self._refuse_method = refuse_method
        self._head_timeout = head_timeout

    def __call__(self) -> web.RequestHandler:
        return JsonErrorHandler(
            self,
            loop=server_loop(self),
            metrics=self._metrics,
            observe=self._observe,
            refuse_method=self._refuse_method,
            head_timeout=self._head_timeout,
            **server_kwargs(self),
        )


class JsonErrorRunner(RemadeServerRunner):
    """``web.AppRunner`` whose connections answer parse errors with the Status body.

    ``observe``: log and count refused requests (with ``metrics``), as the proxy does;
    ``refuse_method``: the answer to a method token the parser does not know;
    ``head_timeout``: how long a request head may take from its first byte (None: no limit).
    """

    def __init__(
        self,
        app: web.Application,
        *,
        metrics: Metrics | None = None,
        observe: bool = False,
        refuse_method: RefuseMethod | None = None,
        head_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._metrics = metrics
        self._observe = observe
        self._refuse_method = refuse_method
        self._head_timeout = head_timeout

    async def cleanup(self) -> None:
        server = self.server
        await super().cleanup()
        if isinstance(server, CutOffServer):
            await server.cut_off()

    def remake_server(self, made: web.Server) -> web.Server:
        # aiohttp's own (app start-up, handler arguments), remade with our protocol class.
        return JsonErrorServer(
            made,
            metrics=self._metrics,
            observe=self._observe,
            refuse_method=self._refuse_method,
            head_timeout=self._head_timeout,
            **server_kwargs(made),
        )
