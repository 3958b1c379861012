"""The steps both HTTP/1.1 edges take around a call, on plain values, written once.

The aiohttp edge (edge/middleware.py, edge/proxy.py's response-prepare callback)
and the lean one (edge/fastpath_serve.py) call these same functions, in the
same order, on the same ``CIMultiDict`` of response headers, so that both send
the same bytes:

1. :func:`new_context`: the request id (the client's, if printable) and the context;
   :func:`request_started` once the call is to be made;
2. the call (protocol/json_unary.py's :func:`~grpc_bridge.protocol.json_unary.unary_reply`), or
   :func:`error_answer` / :func:`internal_error`;
3. :func:`finish_headers`: ``X-Request-Id``, then response compression's headers;
4. (the writer adds ``Content-Length``, ``Date``, ``Server``, ``Connection: close``)
5. :func:`prepare_headers`: CORS headers, and ``Connection: close`` while draining;
6. :func:`request_done` and :func:`log_request_line`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

from aiohttp import hdrs, web
from multidict import CIMultiDict, istr

from grpc_bridge.edge.cors import CorsPolicy
from grpc_bridge.errors import BridgeError, InternalError
from grpc_bridge.log import get_logger, log_info
from grpc_bridge.metrics import Metrics
from grpc_bridge.pipeline.compress import ResponseCompression, add_vary
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.responses import error_response, json_response
from grpc_bridge.protocol.base import WireProtocol
from grpc_bridge.status import Code, code_name, status_body
from grpc_bridge.upstream.metadata import new_request_id

log = get_logger("grpc_bridge.http")

# Header names as istr: a case-insensitive lookup without folding the name each time.
REQUEST_ID_HEADER = istr("X-Request-Id")
_TRACEPARENT, _TRACESTATE = istr("traceparent"), istr("tracestate")
INTERNAL_MESSAGE = "internal error in grpc-bridge; see its logs"
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_INTERNAL = code_name(Code.INTERNAL)
_NO_HEADERS: Mapping[str, str] = CIMultiDict()


def request_id_from(value: str | None) -> str:
    """The client's X-Request-Id when it is printable ASCII, else a fresh one.

    It goes into logs and a response header: bytes aiohttp decoded with
    surrogateescape, or control characters, must not reach either.
    """
    if value and _PRINTABLE.fullmatch(value):
        return value
    return new_request_id()


def new_context(headers: Mapping[str, str], metrics: Metrics | None) -> RequestContext:
    """The context of a request with these (case-insensitive) headers."""
    # One case-insensitive lookup instead of a scan of every header, per request.
    request_id = request_id_from(headers.get(REQUEST_ID_HEADER))
    return RequestContext(request_id=request_id, metrics=metrics)


def request_started(ctx: RequestContext) -> None:
    """The request in flight (until :func:`request_done`)."""
    if ctx.metrics is not None:
        # Lock-free series (metrics.py): plain float updates, cheaper than an inc() call.
        ctx.metrics.http_in_flight.value += 1


def request_done(ctx: RequestContext, method: str, status: int) -> None:
    """The request no longer in flight (nor its stream open); counted."""
    metrics = ctx.metrics
    if metrics is None:
        return
    metrics.http_in_flight.value -= 1
    if ctx.stream_open and ctx.framing is not None:
        metrics.stream_gauge(ctx.framing).dec()
    count_request(metrics, ctx, method, status)


def count_request(metrics: Metrics, ctx: RequestContext, method: str, status: int) -> None:
    """The request and its duration in the HTTP metrics, by route and wire protocol."""
    metrics.protocol(ctx.protocol).value += 1
    route = metrics.route(ctx.route)
    route.request(method, status).value += 1
    route.duration.observe(time.perf_counter() - ctx.started)


def error_answer(
    exc: BridgeError,
    ctx: RequestContext,
    protocol: WireProtocol | None = None,
    headers: Mapping[str, str] = _NO_HEADERS,
) -> web.Response:
    """The error response of an expected failure, in the request's protocol given its
    (case-insensitive) ``headers`` (the Status body of the JSON routes without one: a
    head aiohttp refused); the rejection counted, the context noted."""
    if exc.reject_reason and ctx.metrics is not None:
        ctx.metrics.reject(exc.reject_reason)
    ctx.grpc_code = ctx.grpc_code or code_name(exc.code)
    ctx.error = exc.message
    if protocol is not None:
        return protocol.error_response(exc, ctx, headers)
    return error_response(exc, ctx.pool)


def internal_error(
    ctx: RequestContext,
    path: str | None,
    protocol: WireProtocol | None = None,
    headers: Mapping[str, str] = _NO_HEADERS,
) -> web.Response:
    """The 500 of a bug (logged with its traceback): the one thing not raised as a BridgeError."""
    log.exception("unhandled_error", request_id=ctx.request_id, path=path)
    ctx.grpc_code = _INTERNAL
    if protocol is not None:
        return protocol.error_response(InternalError(INTERNAL_MESSAGE), ctx, headers)
    return json_response(status_body(Code.INTERNAL, INTERNAL_MESSAGE), status=500)


def plan_encoding(
    headers: CIMultiDict[str],
    accept_encoding: str | None,
    size: int,
    compression: ResponseCompression,
) -> str | None:
    """The coding for a whole answer of ``size`` bytes; its ``Vary`` and
    ``Content-Encoding`` added to ``headers``. Synchronous: no ``Accept-Encoding``
    awaits nothing."""
    coding, added = compression.plan(accept_encoding, headers.get(hdrs.CONTENT_TYPE), size)
    for name, value in added:
        if name == "Vary":
            add_vary(headers)
        else:
            headers[name] = value
    return coding


def finish_headers(
    headers: CIMultiDict[str],
    size: int,
    request_id: str,
    accept_encoding: str | None,
    compression: ResponseCompression | None,
) -> str | None:
    """A whole answer's request id header, and the coding its body is sent in
    (None: as it is); its ``Vary`` and ``Content-Encoding`` added. Synchronous, so
    that an answer sent as it is awaits nothing; the caller compresses."""
    headers[REQUEST_ID_HEADER] = request_id
    if compression is None:
        return None
    return plan_encoding(headers, accept_encoding, size, compression)


def prepare_headers(
    headers: CIMultiDict[str],
    request_id: str | None,
    cors: CorsPolicy,
    origin: str | None,
    close: bool,
    exposed: Callable[[str], bool],
) -> None:
    """Headers every answer carries, streams and errors alike, set just before sending.

    ``close``: the bridge is draining, keep-alive clients are asked to reconnect
    (to another replica); the caller closes the connection after the answer.
    """
    if request_id is not None and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id
    cors.decorate(headers, origin, exposed)
    if close:
        headers["Connection"] = "close"


def trace_of(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The W3C trace context a request carried, for its log line."""
    return headers.get(_TRACEPARENT), headers.get(_TRACESTATE)


def log_request_line(
    ctx: RequestContext,
    method: str,
    path: str | None,
    peer: str | None,
    trace: tuple[str | None, str | None],
    status: int,
    bytes_out: int,
) -> None:
    """The canonical request line .

    ``path`` is None for a request aiohttp's parser refused (edge/parse_errors.py).
    """
    log_info(
        log,
        "request",
        {
            "request_id": ctx.request_id,
            "http_method": method,
            "path": path,
            "route": ctx.route,
            "protocol": ctx.protocol,
            "framing": ctx.framing,
            "grpc_method": ctx.grpc_method,
            "upstream": ctx.upstream,
            "grpc_code": ctx.grpc_code,
            "http_status": status,
            "duration_ms": round((time.perf_counter() - ctx.started) * 1000, 3),
            "bytes_in": ctx.bytes_in,
            "bytes_out": bytes_out,
            "peer": peer,
            "traceparent": trace[0],
            "tracestate": trace[1],
            "error": ctx.error,
        },
    )
