"""Unary calls: one JSON message in, one out.

The steps are functions on plain values (headers, body bytes), so that the lean
HTTP/1.1 edge (edge/fastpath_serve.py) calls the very same ones:
``pipeline.call``'s ``metadata_for`` and ``timeout_for``,
``json_transcode.message_of`` and :func:`unary_reply`.
"""

from __future__ import annotations

from aiohttp import web
from google.protobuf.message import Message

from grpc_bridge.codec.message import JSON_CODEC
from grpc_bridge.pipeline.call import open_call
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.protocol.json_transcode import decode_request, reply_parts
from grpc_bridge.routing.table import Match
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.metadata import (
    Metadata,
    MetadataPolicy,
    to_headers,
)

_OK = code_name(Code.OK)


async def unary_reply(
    env: CallEnv,
    match: Match,
    message: Message,
    metadata: Metadata,
    timeout: float,
    ctx: RequestContext,
) -> tuple[bytes, list[tuple[str, str]]]:
    """The upstream's answer as the ``200``'s body and headers (a failure raises)."""
    plan = match.plan
    result = await env.invoker(plan.upstream).unary(
        JSON_CODEC.info(plan), message, metadata=metadata, timeout=timeout
    )
    ctx.grpc_code = _OK
    return reply_parts(
        match, result.response, to_headers(result.initial_metadata, result.trailing_metadata)
    )


async def handle_unary(
    request: web.Request,
    match: Match,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.Response:
    start = open_call(request, match.plan, env, ctx, policy)
    message = await decode_request(request, match, env, ctx)
    body, headers = await unary_reply(env, match, message, start.metadata, start.timeout, ctx)
    return web.Response(body=body, headers=headers)
