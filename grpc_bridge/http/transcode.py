"""HTTP request → request message, response message → HTTP body.

The one place every handler (unary, streaming, WebSocket, REST bindings)
builds its first request message and encodes responses, so path variables,
``body:`` fields and ``response_body`` are handled once.
"""

from __future__ import annotations

from aiohttp import web
from google.protobuf.message import Message

from grpc_bridge.bridge import Bridge
from grpc_bridge.codec.query import query_to_value
from grpc_bridge.http.body import check_media_type, read_body
from grpc_bridge.http.context import RequestContext
from grpc_bridge.routing.table import Match


def message_from_query(request: web.Request, match: Match, bridge: Bridge) -> Message:
    plan = match.plan
    assert plan is not None
    value = query_to_value(
        plan.info.input_type,
        request.query.items(),
        ignore_unknown=bridge.settings.rest.ignore_unknown_query_parameters,
    )
    return plan.request_codec.decode_value(value)


async def decode_request(
    request: web.Request, match: Match, bridge: Bridge, ctx: RequestContext
) -> Message:
    """The request message: from the query string for GET, else from the JSON body."""
    plan = match.plan
    assert plan is not None
    if request.method == "GET":
        return message_from_query(request, match, bridge)
    check_media_type(request)
    body = await read_body(request, bridge.settings.limits.max_request_bytes)
    ctx.bytes_in = len(body)
    return plan.request_codec.decode(body)


def encode_response(match: Match, message: Message) -> bytes:
    plan = match.plan
    assert plan is not None
    return plan.response_codec.encode(message)
