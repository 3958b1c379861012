"""The proxy listener: one catch-all route that consults the current route table.

aiohttp's router is frozen once the app starts, but discovery can change the
routes at any time, so routing is ours (a pure table swapped on refresh) and
aiohttp only sees a single catch-all. Dispatch picks the handler from the
request (CORS preflight, WebSocket upgrade) and the method's kind; the
framing of a streamed answer is negotiated by the streaming handlers.

Handlers are cancelled when their client disconnects (aiohttp's
``handler_cancellation``), which cancels the upstream call at once — a
stream would otherwise run on until its next write failed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from grpc_bridge.bridge import Bridge
from grpc_bridge.edge.cors import CorsPolicy, is_preflight
from grpc_bridge.edge.fastpath import FastPath
from grpc_bridge.edge.fastpath_serve import LeanEdge
from grpc_bridge.edge.middleware import edge_middleware
from grpc_bridge.edge.parse_errors import RefuseMethod
from grpc_bridge.edge.steps import prepare_headers
from grpc_bridge.errors import BridgeError, MethodNotAllowed, RouteNotFound, UpstreamNotReady
from grpc_bridge.pipeline.compress import ResponseCompression
from grpc_bridge.pipeline.context import BRIDGE, COMPRESSION, CONTEXT, METRICS, RequestContext
from grpc_bridge.pipeline.env import CALL_ENV, call_env
from grpc_bridge.protocol.base import PROTOCOL
from grpc_bridge.protocol.json_streaming import head_of_stream
from grpc_bridge.protocol.json_websocket import is_websocket
from grpc_bridge.protocol.select import PROTOCOLS, build_protocols
from grpc_bridge.routing.table import Lookup, Match, MatchKind
from grpc_bridge.upstream.metadata import MetadataPolicy

#: RFC 9110 token: what an HTTP method may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_POLICY = web.AppKey("metadata_policy", MetadataPolicy)
_CORS = web.AppKey("cors_policy", CorsPolicy)


def _routed(request: web.Request, found: Lookup, ctx: RequestContext) -> Match:
    """The match, recorded in the request context; raise for no route."""
    if found.kind is MatchKind.NONE:
        raise _no_route(request.app[BRIDGE], request)
    ctx.record_match(found)
    return found


async def dispatch(request: web.Request) -> web.StreamResponse:
    bridge = request.app[BRIDGE]
    ctx = request[CONTEXT]
    # Raw: REST variables decode %2F per HttpRule only if they see it encoded. rel_url,
    # not raw_path: an absolute-form target (GET http://host/path) carries scheme and host.
    raw_path = request.rel_url.raw_path
    if is_preflight(request):
        wanted = request.headers["Access-Control-Request-Method"]
        match = _routed(request, bridge.routes.match(wanted, raw_path), ctx)
        if match.kind is MatchKind.WRONG_METHOD:
            raise _not_allowed(wanted, match)
        return request.app[_CORS].preflight(request, match.allowed)
    protocol = request[PROTOCOL]
    if is_websocket(request):
        match = _routed(request, bridge.routes.websocket(raw_path), ctx)
        return await protocol.serve(request, match, request.app[CALL_ENV], ctx)
    match = _routed(request, bridge.routes.match(request.method, raw_path), ctx)
    if match.kind is MatchKind.WRONG_METHOD:
        raise _not_allowed(request.method, match)
    return await protocol.serve(request, match, request.app[CALL_ENV], ctx)


async def dispatch_head(request: web.Request) -> web.StreamResponse:
    """HEAD: what GET would answer, without the body (RFC 9110 §9.3.2), wherever GET is served.

    A method answering one message is called as for GET (its status, headers and
    Content-Length need the answer). A streamed answer is not started: the stream
    may never end, and a server-streaming method may have side effects GET's
    caller accepted but a HEAD (a link checker, a monitor) did not. The request
    is checked as GET checks it, and the stream's status and headers answered.
    aiohttp has a route of its own for HEAD, so ``dispatch`` pays nothing for it.
    """
    bridge = request.app[BRIDGE]
    ctx = request[CONTEXT]
    match = _routed(request, bridge.routes.match("HEAD", request.rel_url.raw_path), ctx)
    if match.kind is MatchKind.WRONG_METHOD:
        raise _not_allowed("HEAD", match)
    kind = match.plan.info.kind
    # The handlers read a GET (query string, no body); the answer goes out for the HEAD.
    as_get = request.clone(method="GET")
    policy, env = request.app[_POLICY], request.app[CALL_ENV]
    if kind.server_streams:
        return await head_of_stream(as_get, match, env, ctx, policy)
    response = await request.app[PROTOCOLS].json.serve(as_get, match, env, ctx)
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        # Content-Length as for GET; no body kept, so none is logged as sent either.
        response.headers["Content-Length"] = str(len(response.body))
        response.body = None
    return response


def _not_allowed(method: str, match: Match) -> MethodNotAllowed:
    # A preflight's method comes from a header, with any bytes in it: quote all but tokens.
    shown = method if _TOKEN.fullmatch(method) else repr(method)
    return MethodNotAllowed(
        f"{shown} is not allowed on {match.route}; use {' or '.join(match.allowed)}",
        allowed=match.allowed,
    )


def refuse_method(bridge: Bridge) -> RefuseMethod:
    """For a method token aiohttp's parser refuses (``FOO``): the route table's 405, or 404."""

    def refuse(method: str, target: str) -> BridgeError:
        match = bridge.routes.match(method, target)
        if match.kind is MatchKind.NONE:
            return RouteNotFound(f"no route for {method} {target.partition('?')[0]}")
        return _not_allowed(method, match)

    return refuse


def _no_route(bridge: Bridge, request: web.Request) -> Exception:
    pending = [s for s in bridge.upstreams.values() if s.schema is None]
    if pending:
        # Until every upstream is discovered, an unknown path may be a method we don't know yet.
        names = ", ".join(f"{s.name!r} ({s.error})" for s in pending)
        return UpstreamNotReady(
            f"no route for {request.method} {request.rel_url.raw_path} yet: upstream {names}"
        )
    return RouteNotFound(f"no route for {request.method} {request.rel_url.raw_path}")


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response carries, streams and errors alike, set just before sending.

    One callback rather than several: each is a coroutine call per response. The
    lean path (edge/fastpath_serve.py) calls the same :func:`prepare_headers`.
    """
    ctx = request.get(CONTEXT)
    # While draining, keep-alive clients are asked to reconnect (to another
    # replica); not on an upgrade, whose handshake Connection: close would fail.
    close = request.app[BRIDGE].draining and not isinstance(response, web.WebSocketResponse)
    request_id = None if ctx is None else ctx.request_id
    origin = request.headers.get("Origin")
    protocol = request.get(PROTOCOL) or request.app[PROTOCOLS].json
    cors = request.app[_CORS]
    prepare_headers(response.headers, request_id, cors, origin, close, protocol.exposed)
    if close:
        response.force_close()


def fast_path(app: web.Application, server: web.Server) -> FastPath | None:
    """The lean path in front of ``app`` (edge/fastpath.py), unless configured off."""
    bridge = app[BRIDGE]
    if not bridge.settings.listen.fast_path:
        return None
    edge = LeanEdge(
        bridge,
        app[CALL_ENV],
        app.get(METRICS),
        app[_POLICY],
        app[COMPRESSION],
        app[_CORS],
        app[PROTOCOLS],
    )
    return FastPath.start(edge, server)


def build_proxy_app(bridge: Bridge, outer: Sequence[Middleware] = ()) -> web.Application:
    """The proxy app; ``outer`` middlewares wrap the edge middleware (the tracing hook)."""
    settings = bridge.settings
    limits = settings.limits
    # Our own reader enforces max_request_bytes with a clear message; aiohttp's
    # cap stays as a backstop just above it.
    app = web.Application(
        middlewares=[*outer, edge_middleware],
        client_max_size=limits.max_request_bytes + 1,
        handler_args={"handler_cancellation": True},
    )
    app[BRIDGE] = bridge
    app[CALL_ENV] = call_env(bridge)
    app[_POLICY] = MetadataPolicy(
        forward_headers=frozenset(settings.metadata.forward_headers),
        max_bytes=limits.max_metadata_bytes,
        trust_forwarded_for=settings.metadata.trust_forwarded_for,
    )
    protocols = build_protocols(settings, app[_POLICY])
    app[PROTOCOLS] = protocols
    app[_CORS] = CorsPolicy(
        settings.cors, settings.metadata.forward_headers, protocols.cors_allow_headers
    )
    app[COMPRESSION] = ResponseCompression(settings.compression)
    app.on_response_prepare.append(_on_prepare)
    # HEAD first: aiohttp looks a route up by method, then falls back to "*".
    # [\s\S], not ".": every path reaches the route table, a decoded newline included
    # (aiohttp's own 404 would answer it otherwise, unlike the lean path).
    app.router.add_route("HEAD", r"/{tail:[\s\S]*}", dispatch_head)
    app.router.add_route("*", r"/{tail:[\s\S]*}", dispatch)
    return app
