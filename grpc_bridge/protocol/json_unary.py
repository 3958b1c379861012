"""Unary calls: one JSON message in, one out.

The steps are functions on plain values (headers, body bytes), so that the lean
HTTP/1.1 edge (edge/fastpath_serve.py) calls the very same ones:
:func:`metadata_for`, :func:`timeout_for`, ``transcode.message_of`` and
:func:`unary_reply`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web
from google.protobuf.message import Message
from multidict import istr

from grpc_bridge.bridge import Bridge
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.protocol.json_transcode import decode_request, reply_parts
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
_GRPC_TIMEOUT, _CONNECT_TIMEOUT = istr("Grpc-Timeout"), istr("Connect-Timeout-Ms")


def metadata_for(
    headers: Iterable[tuple[str, str]], client: ClientInfo, request_id: str, policy: MetadataPolicy
) -> Metadata:
    """The call's metadata from the request's headers (as parsed: name, value pairs)."""
    return to_metadata(headers, policy, client, request_id)


def call_metadata(request: web.Request, ctx: RequestContext, policy: MetadataPolicy) -> Metadata:
    client = ClientInfo(peer=request.remote, host=request.host, scheme=request.scheme)
    return metadata_for(request.headers.items(), client, ctx.request_id, policy)


def timeout_for(plan: MethodPlan, headers: Mapping[str, str]) -> float:
    """The deadline of a call from its (case-insensitive) timeout headers."""
    requested = parse_timeout(headers.get(_GRPC_TIMEOUT), headers.get(_CONNECT_TIMEOUT))
    return effective_timeout(requested, plan.limits.timeout_s, plan.limits.max_timeout_s)


def call_timeout(request: web.Request, plan: MethodPlan) -> float:
    return timeout_for(plan, request.headers)


async def unary_reply(
    bridge: Bridge,
    match: Match,
    message: Message,
    metadata: Metadata,
    timeout: float,
    ctx: RequestContext,
) -> tuple[bytes, list[tuple[str, str]]]:
    """The upstream's answer as the ``200``'s body and headers (a failure raises)."""
    plan = match.plan
    assert plan is not None
    result = await bridge.invoker(plan.upstream).unary(
        plan.info, message, metadata=metadata, timeout=timeout
    )
    ctx.grpc_code = _OK
    return reply_parts(
        match, result.response, to_headers(result.initial_metadata, result.trailing_metadata)
    )


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
    body, headers = await unary_reply(bridge, match, message, metadata, timeout, ctx)
    return web.Response(body=body, headers=headers)
