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

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

from grpc_bridge.bridge import Bridge
from grpc_bridge.codec.framing import Framing, StreamEnd
from grpc_bridge.errors import BridgeError
from grpc_bridge.pipeline.compress import ACCEPT_ENCODING, StreamWriter
from grpc_bridge.pipeline.context import COMPRESSION, RequestContext
from grpc_bridge.pipeline.negotiate import stream_framing
from grpc_bridge.pipeline.relay import (
    ACTIVE_SINK,
    Activity,
    Pairs,
    relay,
    send_error,
    supervise,
)
from grpc_bridge.pipeline.responses import json_response
from grpc_bridge.protocol.json_request_stream import (
    ClientGone,
    check_request_stream,
    request_messages,
)
from grpc_bridge.protocol.json_transcode import (
    MessageDecoder,
    decode_request,
    message_response,
    stream_decoder,
    stream_encoder,
)
from grpc_bridge.protocol.json_unary import call_metadata, call_timeout
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.table import Match
from grpc_bridge.status import Code, code_name, status_body
from grpc_bridge.upstream.api import StreamCall
from grpc_bridge.upstream.deadlines import parse_timeout
from grpc_bridge.upstream.metadata import MetadataPolicy, to_headers

#: Proxies (nginx) buffer responses unless told not to; a stream must flow.
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _EncodedStream(web.StreamResponse):
    """A stream whose body is compressed write by write; the encoder's end goes before EOF."""

    def __init__(self, writer: StreamWriter, headers: Mapping[str, str]) -> None:
        super().__init__(headers=headers)
        self.writer = writer
        self._finished = False

    async def write_eof(self, data: bytes = b"") -> None:
        if not self._finished and self.prepared:
            self._finished = True
            end = await self.writer.chunk(data) if data else b""
            data = end + await self.writer.finish()
        await super().write_eof(data)


#: Upstream metadata → response headers, as a protocol places them.
HeadersOf = Callable[[Pairs, Pairs], list[tuple[str, str]]]


class HttpSink:
    """A chunked HTTP response body, started at the first frame (compressed when negotiated).

    ``headers_of`` places the upstream's metadata in the response head: the
    JSON protocol's ``Grpc-Metadata-*`` headers by default; gRPC-Web and
    Connect put it in plain headers.
    """

    def __init__(
        self, request: web.Request, framing: Framing, headers_of: HeadersOf = to_headers
    ) -> None:
        self._request = request
        self.framing = framing
        self.plain_errors = framing.plain_errors
        self._headers_of = headers_of
        self.response: web.StreamResponse | None = None
        self._writer: StreamWriter | None = None

    @property
    def started(self) -> bool:
        return self.response is not None

    def _response(self) -> web.StreamResponse:
        compression = self._request.app.get(COMPRESSION)
        if compression is None or not compression.enabled or not self.framing.compressible:
            return web.StreamResponse(headers=_STREAM_HEADERS)
        coding = compression.choose(self._request.headers.get(ACCEPT_ENCODING)).coding
        if coding is None:
            response = web.StreamResponse(headers=_STREAM_HEADERS)
        else:
            # Whatever a stream's size: it is unknown when the headers go out.
            self._writer = compression.stream(coding)
            response = _EncodedStream(self._writer, _STREAM_HEADERS)
            response.headers["Content-Encoding"] = coding
        response.headers["Vary"] = ACCEPT_ENCODING
        return response

    async def start(self, initial: Pairs, trailing: Pairs = ()) -> None:
        response = self._response()
        response.content_type = self.framing.content_type
        for name, value in self._headers_of(initial, trailing):
            response.headers.add(name, value)
        self.response = response
        try:
            await response.prepare(self._request)
        except ConnectionError as exc:
            raise ClientGone(str(exc)) from exc

    async def send(self, frame: bytes) -> None:
        assert self.response is not None
        if not frame:
            return
        if self._writer is not None:
            frame = await self._writer.chunk(frame)
        try:
            # Returns once the transport took the chunk (aiohttp drains past 64 KiB).
            await self.response.write(frame)
        except ConnectionError as exc:
            raise ClientGone(str(exc)) from exc

    async def send_many(self, frames: list[bytes]) -> None:
        # A byte stream: the frames of a batch go out in one write.
        await self.send(b"".join(frames))

    async def abort(self, end: StreamEnd) -> web.StreamResponse:
        assert self.response is not None
        await self.send(self.framing.error(end))
        return self.response


def stream_timeout(request: web.Request, plan: MethodPlan) -> float | None:
    """Streams have no default deadline (spec §7): only the client's, clamped."""
    requested = parse_timeout(
        request.headers.get("Grpc-Timeout"), request.headers.get("Connect-Timeout-Ms")
    )
    return None if requested is None else min(requested, plan.limits.max_timeout_s)


async def _feed_body(
    request: web.Request,
    feed: RequestFeed,
    bridge: Bridge,
    call: StreamCall,
    activity: Activity,
) -> None:
    """Request body → upstream, one message per line as lines arrive; the end half-closes."""
    limits = bridge.settings.limits
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


def _request_feed(request: web.Request, match: Match, bridge: Bridge) -> RequestFeed:
    # As handle_unary: whatever refuses the request is a plain HTTP error, and no call starts.
    media_type = check_request_stream(request, bridge.settings.limits.max_request_bytes)
    return RequestFeed(stream_decoder(request, match, bridge), media_type)


async def _ended(stream: Coroutine[Any, Any, None]) -> BridgeError | ClientGone | None:
    """How a supervised stream ended: None for success, else what ended it."""
    try:
        await stream
    except (BridgeError, ClientGone) as exc:
        return exc
    return None


async def finish_stream(
    sink: HttpSink,
    plan: MethodPlan,
    ctx: RequestContext,
    outcome: BridgeError | ClientGone | None,
) -> web.StreamResponse:
    """The terminal frame of a stream whose upstream call is over (or cancelled); the response.

    Called after the call's ``async with``: a stream ended by the bridge
    (shutdown, idle, a bad request line) has its upstream call cancelled
    before the last frame is written to a client that may be slow to take it.
    """
    if isinstance(outcome, ClientGone):
        ctx.grpc_code, ctx.error = code_name(Code.CANCELLED), f"client went away: {outcome}"
        if sink.response is None:
            return json_response(status_body(Code.CANCELLED, "client went away"), status=499)
        return sink.response
    if outcome is not None:
        ctx.grpc_code, ctx.error = code_name(outcome.code), outcome.message
        await send_error(sink, sink.framing, outcome, plan.pool)  # raises it when it can be plain
    else:
        ctx.grpc_code = code_name(Code.OK)
    assert sink.response is not None
    return sink.response


def _stream_sink(request: web.Request, ctx: RequestContext) -> tuple[HttpSink, Framing]:
    framing = stream_framing(request.headers.get("Accept"))
    ctx.open_stream(framing.name)
    sink = HttpSink(request, framing)
    request[ACTIVE_SINK] = sink
    return sink, framing


async def relay_stream(
    call: StreamCall,
    encode: Callable[[Message], bytes],
    bridge: Bridge,
    sink: HttpSink,
    framing: Framing,
    activity: Activity,
    feed: Coroutine[Any, Any, None] | None,
) -> BridgeError | ClientGone | None:
    """Upstream messages to the client (and, with ``feed``, the body upstream) until either ends;
    how it ended (for :func:`finish_stream`). Every protocol's response streams run here."""
    return await _ended(
        supervise(
            relay(call, framing, sink, encode, activity),
            feed,
            closing=bridge.closing,
            idle_timeout_s=bridge.settings.streams.idle_timeout_s,
            activity=activity,
        )
    )


async def handle_server_stream(
    request: web.Request,
    match: Match,
    bridge: Bridge,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.StreamResponse:
    plan = match.plan
    assert plan is not None
    metadata = call_metadata(request, ctx, policy)
    timeout = stream_timeout(request, plan)
    message = await decode_request(request, match, bridge, ctx)
    sink, framing = _stream_sink(request, ctx)
    activity = Activity()
    invoker = bridge.invoker(plan.upstream)
    async with invoker.server_stream(
        plan.info, message, metadata=metadata, timeout=timeout
    ) as call:
        outcome = await relay_stream(
            call, stream_encoder(match), bridge, sink, framing, activity, None
        )
    return await finish_stream(sink, plan, ctx, outcome)


async def head_of_stream(
    request: web.Request,
    match: Match,
    bridge: Bridge,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.StreamResponse:
    """A HEAD of a streamed answer (edge/proxy.py ``dispatch_head``): no upstream call.

    ``request`` is the GET it stands for: whatever GET would refuse before its
    call starts is refused alike; otherwise the headers a stream starts with.
    """
    plan = match.plan
    assert plan is not None
    call_metadata(request, ctx, policy)
    stream_timeout(request, plan)
    if plan.info.kind.client_streams:
        _request_feed(request, match, bridge)
    else:
        await decode_request(request, match, bridge, ctx)
    framing = stream_framing(request.headers.get("Accept"))
    ctx.framing = framing.name
    response = web.Response(headers=_STREAM_HEADERS)
    response.content_type = framing.content_type
    return response


async def handle_bidi_stream(
    request: web.Request,
    match: Match,
    bridge: Bridge,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.StreamResponse:
    plan = match.plan
    assert plan is not None
    metadata = call_metadata(request, ctx, policy)
    timeout = stream_timeout(request, plan)
    request_feed = _request_feed(request, match, bridge)
    sink, framing = _stream_sink(request, ctx)
    activity = Activity()
    invoker = bridge.invoker(plan.upstream)
    async with invoker.request_stream(plan.info, metadata=metadata, timeout=timeout) as call:
        feed = _feed_body(request, request_feed, bridge, call, activity)
        outcome = await relay_stream(
            call, stream_encoder(match), bridge, sink, framing, activity, feed
        )
    ctx.bytes_in = request.content.total_bytes
    return await finish_stream(sink, plan, ctx, outcome)


async def handle_client_stream(
    request: web.Request,
    match: Match,
    bridge: Bridge,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.StreamResponse:
    """Request lines in, one JSON message out with metadata headers, like unary."""
    plan = match.plan
    assert plan is not None
    metadata = call_metadata(request, ctx, policy)
    timeout = call_timeout(request, plan)
    request_feed = _request_feed(request, match, bridge)
    activity = Activity()
    invoker = bridge.invoker(plan.upstream)
    async with invoker.request_stream(plan.info, metadata=metadata, timeout=timeout) as call:
        try:
            response = await supervise(
                call.response(),
                _feed_body(request, request_feed, bridge, call, activity),
                closing=bridge.closing,
                idle_timeout_s=bridge.settings.streams.idle_timeout_s,
                activity=activity,
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
