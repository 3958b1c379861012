"""The outermost layer: turns every failure into the Status body, and logs one line per request.

This is the one place that catches broadly; everything below raises typed
BridgeErrors (or lets bugs through to here, where they become a 500).
"""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from grpc_bridge.codec.framing import StreamEnd
from grpc_bridge.errors import (
    BodyTimeout,
    BridgeError,
    HttpRefusal,
    InternalError,
    NotAcceptable,
    shown,
)
from grpc_bridge.http.compress import ACCEPT_ENCODING, ResponseCompression, add_vary
from grpc_bridge.http.context import COMPRESSION, CONTEXT, METRICS, RequestContext
from grpc_bridge.http.relay import ACTIVE_SINK
from grpc_bridge.http.responses import error_response, json_response
from grpc_bridge.log import get_logger, log_info
from grpc_bridge.metrics import Metrics
from grpc_bridge.protocol.base import PROTOCOL, WireProtocol
from grpc_bridge.protocol.select import PROTOCOLS
from grpc_bridge.status import Code, code_name, status_body
from grpc_bridge.upstream.metadata import new_request_id

log = get_logger("grpc_bridge.http")

REQUEST_ID_HEADER = "X-Request-Id"
INTERNAL_MESSAGE = "internal error in grpc-bridge; see its logs"
_PRINTABLE = re.compile(r"[\x20-\x7e]+")


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app.get(METRICS)
    ctx = RequestContext(request_id=_request_id(request), metrics=metrics)
    request[CONTEXT] = ctx
    protocols = request.app.get(PROTOCOLS)
    if protocols is not None:
        protocol = protocols.of(request)
        request[PROTOCOL] = protocol
        ctx.protocol = protocol.name
    if metrics is None:
        return await _serve(request, handler, ctx)
    # Lock-free series (metrics.py): plain float updates, cheaper than an inc() call.
    in_flight = metrics.http_in_flight
    in_flight.value += 1
    status = 499
    try:
        response = await _serve(request, handler, ctx)
        status = response.status
        return response
    finally:
        in_flight.value -= 1
        if ctx.stream_open and ctx.framing is not None:
            metrics.stream_gauge(ctx.framing).dec()
        count_request(metrics, ctx, request.method, status)


def count_request(metrics: Metrics, ctx: RequestContext, method: str, status: int) -> None:
    """The request and its duration in the HTTP metrics, by route (also for the fast path)."""
    metrics.protocol(ctx.protocol).value += 1
    route = metrics.route(ctx.route)
    route.request(method, status).value += 1
    route.duration.observe(time.perf_counter() - ctx.started)


def error_answer(
    exc: BridgeError, ctx: RequestContext, protocol: WireProtocol | None = None
) -> web.Response:
    """The error response of an expected failure, in the request's protocol (the Status
    body of the JSON routes by default); the rejection counted, the context noted."""
    if exc.reject_reason and ctx.metrics is not None:
        ctx.metrics.reject(exc.reject_reason)
    ctx.grpc_code = ctx.grpc_code or code_name(exc.code)
    ctx.error = exc.message
    if protocol is not None:
        return protocol.error_response(exc, ctx)
    return error_response(exc, ctx.pool)


def _refuse_encoding(accept_encoding: str) -> NotAcceptable:
    """The 406 of an ``Accept-Encoding`` that refuses identity and every coding we have."""
    return NotAcceptable(
        f"Accept-Encoding {shown(accept_encoding)} refuses identity and every coding "
        "grpc-bridge can send"
    )


def _check_encoding(request: web.Request, compression: ResponseCompression | None) -> None:
    """Refuse before any work when no answer could be acceptable (RFC 9110 §12.5.3)."""
    if compression is None:
        return
    accept_encoding = request.headers.get(ACCEPT_ENCODING)
    if (
        accept_encoding is not None
        and compression.choose(accept_encoding).refused
        # A preflight or an upgrade carries no body to encode.
        and request.method != "OPTIONS"
        and "Upgrade" not in request.headers
    ):
        raise _refuse_encoding(accept_encoding)


def _encoding(
    request: web.Request, response: web.StreamResponse, compression: ResponseCompression
) -> str | None:
    """``Vary`` on every whole answer that could be compressed; the coding for this one.

    Synchronous: an answer sent as it is (no ``Accept-Encoding``) awaits nothing.
    """
    if response.prepared or not isinstance(response, web.Response) or response.status in (204, 304):
        return None  # streams encode themselves (http/streaming.py); WebSocket never
    headers = response.headers
    body = response.body
    if request.method == "HEAD" or not isinstance(body, bytes) or "Content-Encoding" in headers:
        if compression.enabled:
            add_vary(headers)
        return None
    coding, added = compression.plan(
        request.headers.get(ACCEPT_ENCODING), response.content_type, len(body)
    )
    for name, value in added:
        if name == "Vary":
            add_vary(headers)
        else:
            headers[name] = value
    return coding


async def _serve(request: web.Request, handler: Handler, ctx: RequestContext) -> web.StreamResponse:
    response: web.StreamResponse
    compression = request.app.get(COMPRESSION)
    protocol = request.get(PROTOCOL)
    try:
        _check_encoding(request, compression)
        response = await handler(request)
    except BodyTimeout as exc:
        response = error_answer(exc, ctx, protocol)
        await _answer_then_close(request, response, ctx)
    except BridgeError as exc:
        response = error_answer(exc, ctx, protocol)
    except web.HTTPException as exc:
        # aiohttp's own refusals (e.g. its body-size cap) get the same body shape.
        code = Code.RESOURCE_EXHAUSTED if exc.status == 413 else Code.INVALID_ARGUMENT
        if protocol is not None:
            response = protocol.error_response(HttpRefusal(code, exc.reason, exc.status), ctx)
        else:
            response = json_response(status_body(code, exc.reason), status=exc.status)
        ctx.error = exc.reason
    except asyncio.CancelledError:
        # The client went away; the upstream call was cancelled with this task.
        _log_request(request, ctx, 499, 0)
        raise
    except Exception:
        log.exception("unhandled_error", request_id=ctx.request_id, path=request.rel_url.raw_path)
        sink = request.get(ACTIVE_SINK)
        if sink is not None and sink.started:
            # Headers are gone: the stream ends with an in-band error instead.
            response = await sink.abort(StreamEnd(Code.INTERNAL, INTERNAL_MESSAGE))
        elif protocol is not None:
            response = protocol.error_response(InternalError(INTERNAL_MESSAGE), ctx)
        else:
            response = json_response(status_body(Code.INTERNAL, INTERNAL_MESSAGE), status=500)
        ctx.grpc_code = code_name(Code.INTERNAL)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = ctx.request_id
    if (
        compression is not None
        and (protocol is None or protocol.http_compression)
        and (coding := _encoding(request, response, compression))
    ):
        assert isinstance(response, web.Response) and isinstance(response.body, bytes)
        response.body = await compression.compress(coding, response.body)
    # aiohttp sends no body for a HEAD, an error's included.
    bytes_out = 0 if request.method == "HEAD" else _bytes_out(response)
    _log_request(request, ctx, response.status, bytes_out)
    return response


async def _answer_then_close(
    request: web.Request, response: web.StreamResponse, ctx: RequestContext
) -> None:
    """Send ``response`` now and close the connection: the rest of the body is not awaited.

    (aiohttp would otherwise keep reading the slow body for its lingering time.)
    """
    response.headers[REQUEST_ID_HEADER] = ctx.request_id
    response.force_close()
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        pass  # the client left meanwhile: closed all the same
    if request.protocol is not None:
        request.protocol.force_close()


def _request_id(request: web.Request) -> str:
    # One case-insensitive lookup instead of a scan of every header, per request.
    return request_id_from(request.headers.get(REQUEST_ID_HEADER))


def request_id_from(value: str | None) -> str:
    """The client's X-Request-Id when it is printable ASCII, else a fresh one.

    It goes into logs and a response header: bytes aiohttp decoded with
    surrogateescape, or control characters, must not reach either.
    """
    if value and _PRINTABLE.fullmatch(value):
        return value
    return new_request_id()


def _bytes_out(response: web.StreamResponse) -> int:
    """Body bytes of a response not yet written, or what a finished stream wrote."""
    if not response.prepared and isinstance(response, web.Response):
        body = response.body
        return len(body) if isinstance(body, (bytes, bytearray)) else 0
    return response.body_length


def _log_request(request: web.Request, ctx: RequestContext, status: int, bytes_out: int) -> None:
    headers = request.headers
    log_request_line(
        ctx,
        request.method,
        # As received (still percent-encoded): what a front proxy's logs and ACLs saw.
        request.rel_url.raw_path,
        request.remote,
        (headers.get("traceparent"), headers.get("tracestate")),
        status,
        bytes_out,
    )


def log_request_line(
    ctx: RequestContext,
    method: str,
    path: str | None,
    peer: str | None,
    trace: tuple[str | None, str | None],
    status: int,
    bytes_out: int,
) -> None:
    """The canonical request line (also written by the fast path, http/fastpath.py).

    ``path`` is None for a request aiohttp's parser refused (http/parse_errors.py).
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
