"""The outermost layer: turns every failure into the Status body, and logs one line per request.

This is the one place that catches broadly; everything below raises typed
BridgeErrors (or lets bugs through to here, where they become a 500).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from grpc_bridge.errors import BridgeError
from grpc_bridge.http.context import CONTEXT, RequestContext
from grpc_bridge.http.responses import error_response, json_response
from grpc_bridge.log import get_logger
from grpc_bridge.status import Code, code_name, status_body
from grpc_bridge.upstream.metadata import request_id_of

log = get_logger("grpc_bridge.http")

REQUEST_ID_HEADER = "X-Request-Id"


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = RequestContext(request_id=request_id_of(request.headers.items()))
    request[CONTEXT] = ctx
    response: web.StreamResponse
    try:
        response = await handler(request)
    except BridgeError as exc:
        response = error_response(exc, ctx.pool)
        ctx.grpc_code = ctx.grpc_code or code_name(exc.code)
        ctx.error = exc.message
    except web.HTTPException as exc:
        # aiohttp's own refusals (e.g. its body-size cap) get the same body shape.
        code = Code.RESOURCE_EXHAUSTED if exc.status == 413 else Code.INVALID_ARGUMENT
        response = json_response(status_body(code, exc.reason), status=exc.status)
        ctx.error = exc.reason
    except asyncio.CancelledError:
        # The client went away; the upstream call was cancelled with this task.
        _log_request(request, ctx, 499)
        raise
    except Exception:
        log.exception("unhandled_error", request_id=ctx.request_id, path=request.path)
        response = json_response(
            status_body(Code.INTERNAL, "internal error in grpc-bridge; see its logs"), status=500
        )
        ctx.grpc_code = code_name(Code.INTERNAL)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = ctx.request_id
    _log_request(request, ctx, response.status)
    return response


def _log_request(request: web.Request, ctx: RequestContext, status: int) -> None:
    log.info(
        "request",
        request_id=ctx.request_id,
        http_method=request.method,
        path=request.path,
        route=ctx.route,
        grpc_method=ctx.grpc_method,
        upstream=ctx.upstream,
        grpc_code=ctx.grpc_code,
        http_status=status,
        duration_ms=round((time.perf_counter() - ctx.started) * 1000, 3),
        bytes_in=ctx.bytes_in,
        peer=request.remote,
        traceparent=request.headers.get("traceparent"),
        error=ctx.error,
    )
