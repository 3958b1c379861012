"""The proxy listener: one catch-all route that consults the current route table.

aiohttp's router is frozen once the app starts, but discovery can change the
routes at any time, so routing is ours (a pure table swapped on refresh) and
aiohttp only sees a single catch-all.
"""

from __future__ import annotations

from aiohttp import web

from grpc_bridge.bridge import Bridge
from grpc_bridge.discovery.registry import MethodKind
from grpc_bridge.errors import MethodNotAllowed, NotImplementedYet, RouteNotFound, UpstreamNotReady
from grpc_bridge.http.context import BRIDGE, CONTEXT
from grpc_bridge.http.middleware import edge_middleware
from grpc_bridge.http.unary import handle_unary
from grpc_bridge.routing.table import MatchKind
from grpc_bridge.upstream.metadata import MetadataPolicy

_POLICY = web.AppKey("metadata_policy", MetadataPolicy)


async def dispatch(request: web.Request) -> web.StreamResponse:
    bridge = request.app[BRIDGE]
    ctx = request[CONTEXT]
    match = bridge.routes.match(request.method, request.path)
    if match.kind is MatchKind.NONE:
        raise _no_route(bridge, request)
    plan = match.plan
    assert plan is not None
    ctx.route = match.route
    ctx.grpc_method = plan.info.full_name
    ctx.upstream = plan.upstream
    ctx.pool = plan.pool
    if match.kind is MatchKind.WRONG_METHOD:
        raise MethodNotAllowed(
            f"{request.method} is not allowed on {match.route}; use {' or '.join(match.allowed)}",
            allowed=match.allowed,
        )
    if plan.info.kind is MethodKind.UNARY:
        return await handle_unary(request, match, bridge, ctx, request.app[_POLICY])
    raise NotImplementedYet(
        f"{plan.info.full_name} is a {plan.info.kind.value.replace('_', '-')}ing method; "
        "this route serves unary methods only"
    )


def _no_route(bridge: Bridge, request: web.Request) -> Exception:
    pending = [s for s in bridge.upstreams.values() if s.schema is None]
    if pending:
        # Until every upstream is discovered, an unknown path may be a method we don't know yet.
        names = ", ".join(f"{s.name!r} ({s.error})" for s in pending)
        return UpstreamNotReady(
            f"no route for {request.method} {request.path} yet: upstream {names}"
        )
    return RouteNotFound(f"no route for {request.method} {request.path}")


def build_proxy_app(bridge: Bridge) -> web.Application:
    limits = bridge.settings.limits
    # Our own reader enforces max_request_bytes with a clear message; aiohttp's
    # cap stays as a backstop just above it.
    app = web.Application(
        middlewares=[edge_middleware], client_max_size=limits.max_request_bytes + 1
    )
    app[BRIDGE] = bridge
    app[_POLICY] = MetadataPolicy(
        forward_headers=frozenset(bridge.settings.metadata.forward_headers),
        max_bytes=limits.max_metadata_bytes,
    )
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
