"""The server span of each HTTP request: an aiohttp middleware outside the edge middleware.

OpenTelemetry HTTP server conventions: kind SERVER, named ``METHOD route``
(the route template once the request matched one, else just the method),
``http.request.method``, ``url.path``, ``url.scheme``, ``http.route``,
``http.response.status_code``, ``client.address``, ``user_agent.original``
and ``network.protocol.version``. A 5xx answer sets the span's status to
ERROR with the error the request's log line carries (4xx answers are the
client's error, not the server's, by the same conventions).

The parent is the request's W3C trace context (``traceparent`` /
``tracestate``). The span is current while the request is served, so the
upstream call's client span is its child; its ids are bound into structlog's
context for the request, so the canonical request line (and any other line
logged while serving) carries ``trace_id`` and ``span_id``.

It sits outside ``edge_middleware`` (which turns every failure into a
response), so it sees the status actually sent.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    format_span_id,
    format_trace_id,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from grpc_bridge.pipeline.context import CONTEXT
from grpc_bridge.routing.table import UNMATCHED

_PROPAGATOR = TraceContextTextMapPropagator()
#: The methods the HTTP conventions name; any other is recorded as ``_OTHER``.
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
#: The status of a request whose client left first, as the log line and metrics count it.
_CLIENT_GONE = 499


class _Headers:
    """A getter over aiohttp's case-insensitive headers for the propagator."""

    @staticmethod
    def get(carrier: web.Request, key: str) -> list[str] | None:
        value = carrier.headers.getall(key, None)
        return list(value) if value else None

    @staticmethod
    def keys(carrier: web.Request) -> list[str]:
        return list(carrier.headers.keys())


_GETTER = _Headers()


def server_span_middleware(tracer: Tracer) -> Middleware:
    """The middleware that gives each request its server span (see the module docstring)."""

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        parent = _PROPAGATOR.extract(request, getter=_GETTER)  # type: ignore[arg-type]
        method = request.method
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
            "url.path": request.path,
            "url.scheme": request.scheme,
            "network.protocol.version": f"{request.version.major}.{request.version.minor}",
        }
        if method not in _KNOWN_METHODS:
            attributes["http.request.method_original"] = method
        if request.remote:
            attributes["client.address"] = request.remote
        agent = request.headers.get("User-Agent")
        if agent:
            attributes["user_agent.original"] = agent
        name = method if method in _KNOWN_METHODS else "HTTP"
        span = tracer.start_span(name, parent, kind=SpanKind.SERVER, attributes=attributes)
        span_context = span.get_span_context()
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        bound = structlog.contextvars.bind_contextvars(
            trace_id=format_trace_id(span_context.trace_id),
            span_id=format_span_id(span_context.span_id),
        )
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = _CLIENT_GONE
            raise
        finally:
            structlog.contextvars.reset_contextvars(**bound)
            otel_context.detach(token)
            ctx = request.get(CONTEXT)
            route = ctx.route if ctx is not None else UNMATCHED
            if route != UNMATCHED:
                span.set_attribute("http.route", route)
                span.update_name(f"{name} {route}")
            span.set_attribute("http.response.status_code", status)
            if status >= 500 and status != _CLIENT_GONE:
                span.set_attribute("error.type", str(status))
                error = ctx.error if ctx is not None else None
                span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status}"))
            span.end()

    return traced
