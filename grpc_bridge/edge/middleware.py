"""The outermost layer: turns every failure into the Status body, and logs one line per request.

This is the one place that catches broadly; everything below raises typed
BridgeErrors (or lets bugs through to here, where they become a 500).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from grpc_bridge.codec.framing import StreamEnd
from grpc_bridge.edge.steps import (
    INTERNAL_MESSAGE,
    REQUEST_ID_HEADER,
    error_answer,
    finish_headers,
    internal_error,
    log_request_line,
    new_context,
    request_done,
    request_started,
    trace_of,
)
from grpc_bridge.errors import BodyTimeout, BridgeError, HttpRefusal, NotAcceptable, shown
from grpc_bridge.log import get_logger
from grpc_bridge.pipeline.compress import ACCEPT_ENCODING, ResponseCompression, add_vary
from grpc_bridge.pipeline.context import COMPRESSION, CONTEXT, METRICS, RequestContext
from grpc_bridge.pipeline.relay import ACTIVE_SINK
from grpc_bridge.pipeline.responses import json_response
from grpc_bridge.protocol.base import PROTOCOL
from grpc_bridge.protocol.select import PROTOCOLS
from grpc_bridge.status import Code, code_name, status_body

log = get_logger("grpc_bridge.http")


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = new_context(request.headers, request.app.get(METRICS))
    request[CONTEXT] = ctx
    protocols = request.app.get(PROTOCOLS)
    if protocols is not None:
        # Chosen first: every error of the request, routing's included, is in its shape.
        protocol = protocols.of(request)
        request[PROTOCOL] = protocol
        ctx.protocol = protocol.name
    request_started(ctx)
    status = 499
    try:
        response = await _serve(request, handler, ctx)
        status = response.status
        return response
    finally:
        request_done(ctx, request.method, status)


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


async def _serve(request: web.Request, handler: Handler, ctx: RequestContext) -> web.StreamResponse:
    response: web.StreamResponse
    compression = request.app.get(COMPRESSION)
    protocol = request.get(PROTOCOL)
    try:
        _check_encoding(request, compression)
        response = await handler(request)
    except BodyTimeout as exc:
        response = error_answer(exc, ctx, protocol, request.headers)
        await _answer_then_close(request, response, ctx)
    except BridgeError as exc:
        response = error_answer(exc, ctx, protocol, request.headers)
    except web.HTTPException as exc:
        # aiohttp's own refusals (e.g. its body-size cap) get the same body shape.
        code = Code.RESOURCE_EXHAUSTED if exc.status == 413 else Code.INVALID_ARGUMENT
        if protocol is not None:
            refusal = HttpRefusal(code, exc.reason, exc.status)
            response = protocol.error_response(refusal, ctx, request.headers)
        else:
            response = json_response(status_body(code, exc.reason), status=exc.status)
        ctx.error = exc.reason
    except asyncio.CancelledError:
        # The client went away; the upstream call was cancelled with this task.
        _log_request(request, ctx, 499, 0)
        raise
    except Exception:
        sink = request.get(ACTIVE_SINK)
        if sink is not None and sink.started:
            # Headers are gone: the stream ends with an in-band error instead.
            path = request.rel_url.raw_path
            log.exception("unhandled_error", request_id=ctx.request_id, path=path)
            response = await sink.abort(StreamEnd(Code.INTERNAL, INTERNAL_MESSAGE))
            ctx.grpc_code = code_name(Code.INTERNAL)
        else:
            response = internal_error(ctx, request.rel_url.raw_path, protocol, request.headers)
    # Protocols that compress per message say no to a whole-body coding (protocol/base.py).
    body = _whole_body(request, response) if protocol is None or protocol.http_compression else None
    if body is not None:
        # A whole answer: the lean path (edge/fastpath_serve.py) finishes its own alike.
        assert isinstance(response, web.Response)
        accept_encoding = request.headers.get(ACCEPT_ENCODING)
        coding = finish_headers(
            response.headers, len(body), ctx.request_id, accept_encoding, compression
        )
        if coding is not None and compression is not None:
            response.body = await compression.compress(coding, body)
    else:
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = ctx.request_id
        if (
            compression is not None
            and compression.enabled
            and (protocol is None or protocol.http_compression)
            and _may_vary(response)
        ):
            add_vary(response.headers)
    # aiohttp sends no body for a HEAD, an error's included.
    bytes_out = 0 if request.method == "HEAD" else _bytes_out(request, response)
    _log_request(request, ctx, response.status, bytes_out)
    return response


def _may_vary(response: web.StreamResponse) -> bool:
    """A whole answer not encoded here (a HEAD's, or one encoded already) still varies."""
    return (
        not response.prepared
        and isinstance(response, web.Response)
        and response.status not in (204, 304)
    )


def _whole_body(request: web.Request, response: web.StreamResponse) -> bytes | None:
    """The body of an answer sent whole and not yet encoded; None for any other.

    Streams encode themselves (protocol/json_streaming.py); WebSocket never.
    """
    if not _may_vary(response) or request.method == "HEAD":
        return None
    assert isinstance(response, web.Response)
    body = response.body
    if not isinstance(body, bytes) or "Content-Encoding" in response.headers:
        return None
    return body


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


def _bytes_out(request: web.Request, response: web.StreamResponse) -> int:
    """Body bytes of a response not yet written, or what a stream sent (its sink counts:
    aiohttp's ``body_length`` is 0 until EOF, which comes after this, and then counts
    the head and the chunk framing too)."""
    if not response.prepared and isinstance(response, web.Response):
        body = response.body
        return len(body) if isinstance(body, (bytes, bytearray)) else 0
    sink = request.get(ACTIVE_SINK)
    return sink.bytes_sent if sink is not None else response.body_length


def _log_request(request: web.Request, ctx: RequestContext, status: int, bytes_out: int) -> None:
    log_request_line(
        ctx,
        request.method,
        # As received (still percent-encoded): what a front proxy's logs and ACLs saw.
        request.rel_url.raw_path,
        request.remote,
        trace_of(request.headers),
        status,
        bytes_out,
    )
