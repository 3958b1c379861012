"""Unary calls: one JSON message in, one out."""

from __future__ import annotations

from aiohttp import web
from google.protobuf.message import Message

from grpc_bridge.bridge import Bridge
from grpc_bridge.codec.query import query_to_value
from grpc_bridge.http.body import check_media_type, read_body
from grpc_bridge.http.context import RequestContext
from grpc_bridge.http.responses import json_response
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.deadlines import effective_timeout, parse_timeout
from grpc_bridge.upstream.metadata import (
    ClientInfo,
    Metadata,
    MetadataPolicy,
    to_headers,
    to_metadata,
)


async def decode_request(
    request: web.Request, plan: MethodPlan, bridge: Bridge, ctx: RequestContext
) -> Message:
    """The request message: from the query string for GET, else from the JSON body."""
    if request.method == "GET":
        value = query_to_value(
            plan.info.input_type,
            request.query.items(),
            ignore_unknown=bridge.settings.rest.ignore_unknown_query_parameters,
        )
        return plan.request_codec.decode_value(value)
    check_media_type(request)
    body = await read_body(request, bridge.settings.limits.max_request_bytes)
    ctx.bytes_in = len(body)
    return plan.request_codec.decode(body)


def call_metadata(
    request: web.Request, bridge: Bridge, ctx: RequestContext, policy: MetadataPolicy
) -> Metadata:
    client = ClientInfo(peer=request.remote, host=request.host, scheme=request.scheme)
    return to_metadata(request.headers.items(), policy, client, ctx.request_id)


def call_timeout(request: web.Request, plan: MethodPlan) -> float:
    requested = parse_timeout(
        request.headers.get("Grpc-Timeout"), request.headers.get("Connect-Timeout-Ms")
    )
    return effective_timeout(requested, plan.limits.timeout_s, plan.limits.max_timeout_s)


async def handle_unary(
    request: web.Request,
    plan: MethodPlan,
    bridge: Bridge,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.Response:
    metadata = call_metadata(request, bridge, ctx, policy)
    timeout = call_timeout(request, plan)
    message = await decode_request(request, plan, bridge, ctx)
    result = await bridge.invoker(plan.upstream).unary(
        plan.info, message, metadata=metadata, timeout=timeout
    )
    ctx.grpc_code = code_name(Code.OK)
    return json_response(
        plan.response_codec.encode(result.response),
        headers=to_headers(result.initial_metadata, result.trailing_metadata),
    )
