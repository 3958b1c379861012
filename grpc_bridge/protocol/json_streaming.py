"""Streaming methods over plain HTTP/1.1: NDJSON and SSE responses, NDJSON / JSON-array requests.

=================  ===================================  ==============================
method kind        request                              response
=================  ===================================  ==============================
server-streaming   one JSON message (body, or query     NDJSON, or SSE for
                   string for GET)                      ``Accept: text/event-stream``
client-streaming   NDJSON lines or a JSON array         one JSON message, like unary
bidi               NDJSON lines or a JSON array         NDJSON or SSE
=================  ===================================  ==============================

Request lines are forwarded upstream as they arrive, and the response streams
while the body is still coming in (full duplex over HTTP/1.1, for clients
that read and write at once). The end of the body half-closes the request
stream.

Errors follow the two-phase rule of ``relay.py``. NDJSON answers a failure
before the first message with the mapped status and the plain Status body;
SSE always answers 200 and reports every outcome in its ``end`` event,
because a browser's EventSource can't read the body of a non-200 answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from grpc_bridge.codec.framing import Framing
from grpc_bridge.codec.message import JSON_CODEC
from grpc_bridge.errors import ClientGone
from grpc_bridge.pipeline.call import open_call, open_stream_call
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.negotiate import stream_framing
from grpc_bridge.pipeline.relay import Activity
from grpc_bridge.pipeline.responses import json_response
from grpc_bridge.pipeline.sink import (
    STREAM_HEADERS,
    HttpSink,
    finish_stream,
    open_sink,
    relay_stream,
    supervised,
)
from grpc_bridge.protocol.json_request_stream import check_request_stream, request_messages
from grpc_bridge.protocol.json_transcode import (
    MessageDecoder,
    decode_request,
    message_response,
    stream_decoder,
    stream_encoder,
)
from grpc_bridge.routing.table import Match
from grpc_bridge.status import Code, code_name, status_body
from grpc_bridge.upstream.api import StreamCall
from grpc_bridge.upstream.metadata import MetadataPolicy, to_headers


async def _feed_body(
    request: web.Request,
    feed: RequestFeed,
    env: CallEnv,
    call: StreamCall,
    activity: Activity,
) -> None:
    """Request body → upstream, one message per line as lines arrive; the end half-closes."""
    limits = env.limits
    async for message in request_messages(
        request,
        feed.decoder,
        feed.media_type,
        limit=limits.max_request_bytes,
        max_depth=limits.max_json_depth,
        timeout=limits.body_read_timeout_s,
    ):
        activity.touch()
        if not await call.write(message):
            return  # the call is over; the reading side reports how
    await call.done_writing()


@dataclass(frozen=True, slots=True)
class RequestFeed:
    """A request stream checked before its upstream call opens: media type, size, path, query."""

    decoder: MessageDecoder
    media_type: str


def _request_feed(request: web.Request, match: Match, env: CallEnv) -> RequestFeed:
    # As handle_unary: whatever refuses the request is a plain HTTP error, and no call starts.
    media_type = check_request_stream(request, env.limits.max_request_bytes)
    return RequestFeed(stream_decoder(request, match, env), media_type)


def _stream_sink(request: web.Request, ctx: RequestContext) -> tuple[HttpSink, Framing]:
    framing = stream_framing(request.headers.get("Accept"))
    return open_sink(request, ctx, framing, framing.name), framing


async def handle_server_stream(
    request: web.Request,
    match: Match,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.StreamResponse:
    plan = match.plan
    start = open_stream_call(request, plan, env, ctx, policy)
    message = await decode_request(request, match, env, ctx)
    sink, framing = _stream_sink(request, ctx)
    async with start.invoker.server_stream(
        JSON_CODEC.info(plan), message, metadata=start.metadata, timeout=start.timeout
    ) as call:
        outcome = await relay_stream(
            call, stream_encoder(match), env, sink, framing, Activity(), None
        )
    return await finish_stream(sink, plan, ctx, outcome)


async def head_of_stream(
    request: web.Request,
    match: Match,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.StreamResponse:
    """A HEAD of a streamed answer (edge/proxy.py ``dispatch_head``): no upstream call.

    ``request`` is the GET it stands for: whatever GET would refuse before its
    call starts is refused alike; otherwise the headers a stream starts with.
    """
    plan = match.plan
    open_stream_call(request, plan, env, ctx, policy)
    if plan.info.kind.client_streams:
        _request_feed(request, match, env)
    else:
        await decode_request(request, match, env, ctx)
    framing = stream_framing(request.headers.get("Accept"))
    ctx.framing = framing.name
    response = web.Response(headers=STREAM_HEADERS)
    response.content_type = framing.content_type
    return response


async def handle_bidi_stream(
    request: web.Request,
    match: Match,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.StreamResponse:
    plan = match.plan
    start = open_stream_call(request, plan, env, ctx, policy)
    request_feed = _request_feed(request, match, env)
    sink, framing = _stream_sink(request, ctx)
    activity = Activity()
    async with start.invoker.request_stream(
        JSON_CODEC.info(plan), metadata=start.metadata, timeout=start.timeout
    ) as call:
        feed = _feed_body(request, request_feed, env, call, activity)
        outcome = await relay_stream(
            call, stream_encoder(match), env, sink, framing, activity, feed
        )
    ctx.bytes_in = request.content.total_bytes
    return await finish_stream(sink, plan, ctx, outcome)


async def handle_client_stream(
    request: web.Request,
    match: Match,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.StreamResponse:
    """Request lines in, one JSON message out with metadata headers, like unary."""
    plan = match.plan
    start = open_call(request, plan, env, ctx, policy)
    request_feed = _request_feed(request, match, env)
    activity = Activity()
    async with start.invoker.request_stream(
        JSON_CODEC.info(plan), metadata=start.metadata, timeout=start.timeout
    ) as call:
        try:
            response = await supervised(
                call.response(),
                _feed_body(request, request_feed, env, call, activity),
                env,
                activity,
            )
        except ClientGone as exc:
            ctx.grpc_code, ctx.error = code_name(Code.CANCELLED), f"client went away: {exc}"
            return json_response(status_body(Code.CANCELLED, "client went away"), status=499)
        finally:
            ctx.bytes_in = request.content.total_bytes
        initial = await call.initial_metadata()
        trailing = await call.trailing_metadata()
    ctx.grpc_code = code_name(Code.OK)
    return message_response(match, response, headers=to_headers(initial, trailing))
