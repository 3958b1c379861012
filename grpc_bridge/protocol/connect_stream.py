"""Connect streams: ``application/connect+json`` / ``connect+proto``, enveloped both ways.

- Server streaming: the body is one envelope (the request message), read
  whole within ``limits.body_read_timeout_s``; the answer is HTTP 200, one
  envelope per response message, flushed as it comes (pipeline/relay.py), then
  the end-of-stream envelope (flag 0x02) ``{}`` / ``{"metadata": ...}``, or
  ``{"error": ..., "metadata": ...}`` when the call failed, before or after
  the first message alike: a Connect stream's status is always 200.
- Client streaming, half-duplex over HTTP/1.1: request envelopes are
  forwarded upstream as they arrive (each bounded by
  ``limits.max_request_bytes`` from its length prefix, and due within
  ``limits.body_read_timeout_s`` of its first byte); the end of the body
  half-closes the call; then the answer, one message and the end envelope.
- Bidi streaming needs HTTP/2 end to end (the client sends while it reads):
  over HTTP/2 (h2c on the proxy port, edge/h2c.py) request envelopes go
  upstream as they arrive while the response envelopes come back, each
  bounded as for client streaming; over HTTP/1.1 a bidi call is answered with
  ``unimplemented`` saying so.
- Compression: request envelopes flagged 0x01 are gunzipped when
  ``Connect-Content-Encoding: gzip`` was sent; response envelopes of
  ``compression.min_bytes`` or more are gzipped (flag 0x01,
  ``Connect-Content-Encoding: gzip``) when ``Connect-Accept-Encoding``
  names gzip and compression is on.
"""

from __future__ import annotations

import gzip

from aiohttp import web

from grpc_bridge.codec.framing import Pairs, StreamEnd
from grpc_bridge.codec.message import Codec
from grpc_bridge.discovery.registry import MethodKind
from grpc_bridge.errors import (
    BridgeError,
    ClientGone,
    InvalidArgument,
    UnsupportedMediaType,
    UpstreamError,
    grpc_family_code,
)
from grpc_bridge.pipeline.call import OpenCall, open_call, open_stream_call
from grpc_bridge.pipeline.context import OVER_HTTP2, RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.relay import Activity, deliver_one, end_of
from grpc_bridge.pipeline.sink import (
    HttpSink,
    finish_stream,
    open_sink,
    relay_stream,
    supervised,
)
from grpc_bridge.protocol.connect_errors import end_stream_json
from grpc_bridge.protocol.connect_wire import (
    COMPRESSED,
    END_STREAM,
    accepts_gzip,
    check_content_encoding,
    envelope,
    envelope_message,
    read_envelopes,
    stream_type,
)
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.table import Match
from grpc_bridge.settings import Settings
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.api import StreamCall
from grpc_bridge.upstream.metadata import MetadataPolicy, prefixed_headers

FRAMING = "connect"
CONTENT_ENCODING = "Connect-Content-Encoding"
ACCEPT_ENCODING = "Connect-Accept-Encoding"
BIDI_NEEDS_HTTP2 = (
    "bidirectional streaming over Connect needs HTTP/2 end to end, and this request came "
    "over HTTP/1.1: call {method} over HTTP/2 (h2c, prior knowledge, on the same port), "
    "over gRPC, or through the JSON routes (NDJSON request body or WebSocket), which "
    "stream both ways over HTTP/1.1"
)


class ConnectFraming:
    """Response envelopes: one per message, the end-of-stream envelope last."""

    name = FRAMING
    plain_errors = False
    # Connect compresses envelope by envelope (flag 0x01), never the HTTP body.
    compressible = False

    def __init__(self, content_type: str, gzip_from: int | None, level: int = 6) -> None:
        self.content_type = content_type
        #: Messages of this many bytes or more are gzipped; None: none are.
        self._gzip_from = gzip_from
        self._level = level

    def open(self) -> bytes:
        return b""

    def message(self, payload: bytes) -> bytes:
        if self._gzip_from is not None and len(payload) >= self._gzip_from:
            return envelope(COMPRESSED, gzip.compress(payload, self._level, mtime=0))
        return envelope(0, payload)

    def error(self, end: StreamEnd) -> bytes:
        return envelope(END_STREAM, end_stream_json(end))

    def end(self, end: StreamEnd) -> bytes:
        return envelope(END_STREAM, end_stream_json(end))


def _leading(initial: Pairs, trailing: Pairs) -> list[tuple[str, str]]:
    # Trailers go in the end-of-stream message, never in the head.
    return [*prefixed_headers((("", initial),)), (ACCEPT_ENCODING, "gzip")]


def _leading_gzip(initial: Pairs, trailing: Pairs) -> list[tuple[str, str]]:
    return [*_leading(initial, trailing), (CONTENT_ENCODING, "gzip")]


class StreamWire:
    """One stream codec's framings (plain and gzipped) and error answer, built once."""

    def __init__(self, codec: Codec, settings: Settings) -> None:
        self.codec = codec
        #: ``application/connect+<codec>``: what names this wire, and its answers' type.
        self.media_type = stream_type(codec)
        compression = settings.compression
        self.plain = ConnectFraming(self.media_type, None)
        self.gzipped = (
            ConnectFraming(self.media_type, compression.min_bytes, compression.gzip_level)
            if compression.enabled
            else None
        )

    def error_response(self, exc: BridgeError, ctx: RequestContext) -> web.Response:
        """An error before the stream started: HTTP 200 and the end-of-stream envelope alone."""
        initial = exc.initial_metadata if isinstance(exc, UpstreamError) else ()
        end = end_of(exc, ctx.pool)
        end.code = grpc_family_code(exc)
        response = web.Response(
            body=self.plain.error(end),
            headers=prefixed_headers((("", initial),)),
        )
        response.content_type = self.media_type
        return response


async def _single_message(
    request: web.Request, plan: MethodPlan, env: CallEnv, compressed: bool
) -> bytes:
    """The one request message of a server-streaming call."""
    limits = env.limits
    found: bytes | None = None
    async for flags, data, number in read_envelopes(
        request, limits.max_request_bytes, limits.body_read_timeout_s, whole_body=True
    ):
        if found is not None:
            raise InvalidArgument(
                f"{plan.full_name} is server-streaming: it takes one request message, "
                f"and envelope {number} is another"
            )
        found = await envelope_message(flags, data, compressed, limits.max_request_bytes, number)
    if found is None:
        raise InvalidArgument(
            f"{plan.full_name} is server-streaming: it takes one request message, "
            "and the body has none"
        )
    return found


async def _feed(
    request: web.Request,
    codec: Codec,
    plan: MethodPlan,
    env: CallEnv,
    call: StreamCall,
    activity: Activity,
    compressed: bool,
) -> None:
    """Request envelopes → upstream as they arrive; the end of the body half-closes."""
    limits = env.limits
    limit = limits.max_request_bytes
    async for flags, data, number in read_envelopes(
        request, limit, limits.body_read_timeout_s, whole_body=False
    ):
        activity.touch()
        message = await envelope_message(flags, data, compressed, limit, number)
        try:
            decoded = codec.decode(plan, message)
        except BridgeError as exc:
            raise InvalidArgument(f"request envelope {number}: {exc.message}") from exc
        if not await call.write(decoded):
            return  # the call is over; the reading side reports how
    await call.done_writing()


def _sink(
    request: web.Request, ctx: RequestContext, wire: StreamWire
) -> tuple[HttpSink, ConnectFraming]:
    gzipped = wire.gzipped is not None and accepts_gzip(request.headers.get(ACCEPT_ENCODING))
    framing = wire.gzipped if gzipped and wire.gzipped is not None else wire.plain
    headers_of = _leading_gzip if gzipped else _leading
    return open_sink(request, ctx, framing, FRAMING, headers_of), framing


def check_stream(request: web.Request, plan: MethodPlan) -> None:
    """Refuse what can't be a Connect stream before any upstream call."""
    kind = plan.info.kind
    if request.method != "POST":
        raise InvalidArgument(f"a Connect stream is a POST, not {request.method}")
    if kind is MethodKind.UNARY:
        raise UnsupportedMediaType(
            f"{plan.full_name} is unary: send application/json or application/proto "
            "(application/connect+* is for streaming methods)"
        )
    if kind is MethodKind.BIDI_STREAM and not request.get(OVER_HTTP2, False):
        raise _BidiNeedsHttp2(BIDI_NEEDS_HTTP2.format(method=plan.full_name))


class _BidiNeedsHttp2(BridgeError):
    code = Code.UNIMPLEMENTED
    reject_reason = "method_not_allowed"


async def serve_stream(
    request: web.Request,
    match: Match,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
    wire: StreamWire,
) -> web.StreamResponse:
    plan = match.plan
    check_stream(request, plan)
    compressed = check_content_encoding(
        request.headers.getall(CONTENT_ENCODING, ()), CONTENT_ENCODING
    )
    try:
        if plan.info.kind is MethodKind.BIDI_STREAM:
            streamed = open_stream_call(request, plan, env, ctx, policy)
            return await _bidi_stream(request, plan, env, ctx, wire, streamed, compressed)
        if plan.info.kind.client_streams:
            start = open_call(request, plan, env, ctx, policy)
            return await _client_stream(request, plan, env, ctx, wire, start, compressed)
        streamed = open_stream_call(request, plan, env, ctx, policy)
        return await _server_stream(request, plan, env, ctx, wire, streamed, compressed)
    except ClientGone as exc:
        # Nobody is left to read an answer; the upstream call was cancelled on the way out.
        ctx.grpc_code, ctx.error = code_name(Code.CANCELLED), f"client went away: {exc}"
        return web.Response(status=499)


async def _server_stream(
    request: web.Request,
    plan: MethodPlan,
    env: CallEnv,
    ctx: RequestContext,
    wire: StreamWire,
    start: OpenCall[float | None],
    compressed: bool,
) -> web.StreamResponse:
    """One request message, then the response envelopes as they come."""
    codec = wire.codec
    data = await _single_message(request, plan, env, compressed)
    ctx.bytes_in = request.content.total_bytes
    message = codec.decode(plan, data)
    sink, framing = _sink(request, ctx, wire)
    async with start.invoker.server_stream(
        codec.info(plan), message, metadata=start.metadata, timeout=start.timeout
    ) as call:
        outcome = await relay_stream(
            call, codec.encoder(plan), env, sink, framing, Activity(), None
        )
    return await finish_stream(sink, plan, ctx, outcome)


async def _client_stream(
    request: web.Request,
    plan: MethodPlan,
    env: CallEnv,
    ctx: RequestContext,
    wire: StreamWire,
    start: OpenCall[float],
    compressed: bool,
) -> web.StreamResponse:
    """Half-duplex: request envelopes upstream as they arrive, then the one answer."""
    codec = wire.codec
    activity = Activity()
    async with start.invoker.request_stream(
        codec.info(plan), metadata=start.metadata, timeout=start.timeout
    ) as call:
        try:
            response = await supervised(
                call.response(),
                _feed(request, codec, plan, env, call, activity, compressed),
                env,
                activity,
            )
        finally:
            ctx.bytes_in = request.content.total_bytes
        initial = await call.initial_metadata()
        trailing = await call.trailing_metadata()
    sink, framing = _sink(request, ctx, wire)
    await deliver_one(sink, framing, codec.encoder(plan)(response), initial, trailing)
    ctx.grpc_code = code_name(Code.OK)
    assert sink.response is not None
    return sink.response


async def _bidi_stream(
    request: web.Request,
    plan: MethodPlan,
    env: CallEnv,
    ctx: RequestContext,
    wire: StreamWire,
    start: OpenCall[float | None],
    compressed: bool,
) -> web.StreamResponse:
    """Full duplex (HTTP/2 only, :func:`check_stream`): request envelopes upstream as
    they arrive while the response envelopes come back."""
    codec = wire.codec
    activity = Activity()
    sink, framing = _sink(request, ctx, wire)
    async with start.invoker.request_stream(
        codec.info(plan), metadata=start.metadata, timeout=start.timeout
    ) as call:
        feed = _feed(request, codec, plan, env, call, activity, compressed)
        outcome = await relay_stream(call, codec.encoder(plan), env, sink, framing, activity, feed)
    ctx.bytes_in = request.content.total_bytes
    return await finish_stream(sink, plan, ctx, outcome)
