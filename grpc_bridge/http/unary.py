"""Unary calls: one JSON message in, one out."""

from __future__ import annotations

from aiohttp import web

from grpc_bridge.bridge import Bridge
from grpc_bridge.http.context import RequestContext
from grpc_bridge.http.transcode import decode_request, message_response
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.table import Match
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.deadlines import effective_timeout, parse_timeout
from grpc_bridge.upstream.metadata import (
    ClientInfo,
    Metadata,
    MetadataPolicy,
    to_headers,
    to_metadata,
)

_OK = code_name(Code.OK)


def call_metadata(request: web.Request, ctx: RequestContext, policy: MetadataPolicy) -> Metadata:
    client = ClientInfo(peer=request.remote, host=request.host, scheme=request.scheme)
    return to_metadata(request.headers.items(), policy, client, ctx.request_id)


def call_timeout(request: web.Request, plan: MethodPlan) -> float:
    headers = request.headers
    return timeout_for(plan, headers.get("Grpc-Timeout"), headers.get("Connect-Timeout-Ms"))


def timeout_for(
    plan: MethodPlan, grpc_timeout: str | None, connect_timeout_ms: str | None
) -> float:
    """The deadline of a unary call from its timeout headers (also for the fast path)."""
    requested = parse_timeout(grpc_timeout, connect_timeout_ms)
    return effective_timeout(requested, plan.limits.timeout_s, plan.limits.max_timeout_s)


async def handle_unary(
    request: web.Request,
    match: Match,
    bridge: Bridge,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.Response:
    plan = match.plan
    assert plan is not None
    # Headers are checked before the body is read: a bad header costs no upload.
    metadata = call_metadata(request, ctx, policy)
    timeout = call_timeout(request, plan)
    message = await decode_request(request, match, bridge, ctx)
    result = await bridge.invoker(plan.upstream).unary(
        plan.info, message, metadata=metadata, timeout=timeout
    )
    ctx.grpc_code = _OK
    return message_response(
        match,
        result.response,
        headers=to_headers(result.initial_metadata, result.trailing_metadata),
    )
