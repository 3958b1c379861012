"""gRPC-Web request streams (client and bidi streaming), over HTTP/2 only.

gRPC-Web as browsers speak it has no request streams: fetch sends a body
whole before the answer starts. Clients on HTTP/2 do stream both ways over
it (connect-go's gRPC-Web client, and with it ``buf curl --protocol grpcweb``,
whose server reflection is a bidi call), so a request that came over HTTP/2
(h2c on the proxy port, edge/h2c.py) may call a client- or bidi-streaming
method: its message frames go upstream as they arrive, each bounded by
``limits.max_request_bytes`` from its length prefix and due within
``limits.body_read_timeout_s`` of its first byte, compressed ones inflated per
``grpc-encoding``; the end of the body half-closes the call. The answer is
what a server stream's is (protocol/grpc_web.py): a frame per message, then
the trailer frame. Over HTTP/1.1 these methods stay UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from google.protobuf.message import Message

from grpc_bridge.codec.framing import Framing
from grpc_bridge.codec.raw import raw, raw_bytes
from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import BridgeError, InvalidArgument
from grpc_bridge.pipeline.body import BodyReader
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.relay import Activity
from grpc_bridge.pipeline.sink import ClientGone, HeadersOf, finish_stream, open_sink, relay_stream
from grpc_bridge.protocol.connect_wire import EnvelopeParser
from grpc_bridge.protocol.grpc_web_frames import TextDecoder, frame_message
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.upstream.api import StreamCall
from grpc_bridge.upstream.deadlines import effective_timeout
from grpc_bridge.upstream.metadata import Metadata

Decode = Callable[[bytes], Message]


def _codec(plan: MethodPlan, json: bool) -> tuple[MethodInfo, Decode, Callable[[Message], bytes]]:
    """The method, request decoder and response encoder: raw bytes for protobuf."""
    if json:
        return plan.info, plan.request_codec.decode, plan.response_codec.encode
    return plan.raw_info, raw, raw_bytes


async def _feed(
    request: web.Request,
    env: CallEnv,
    decode: Decode,
    text: bool,
    call: StreamCall,
    activity: Activity,
) -> None:
    """Request frames → upstream as they arrive; the end of the body half-closes."""
    limits = env.limits
    limit, timeout = limits.max_request_bytes, limits.body_read_timeout_s
    loop = asyncio.get_running_loop()
    reader = BodyReader(request, timeout, None)
    parser = EnvelopeParser(limit)
    decoder = TextDecoder() if text else None
    coding = request.headers.get("Grpc-Encoding")
    while True:
        try:
            chunk = await reader.read()
        except ConnectionError as exc:
            raise ClientGone(str(exc)) from exc
        if not chunk:
            break
        if decoder is not None:
            chunk = decoder.feed(chunk)
        first = parser.count + 1
        for index, (flag, data) in enumerate(parser.feed(chunk)):
            activity.touch()
            payload = await frame_message(flag, data, coding, limit)
            try:
                message = decode(payload)
            except BridgeError as exc:
                raise InvalidArgument(f"request frame {first + index}: {exc.message}") from exc
            if not await call.write(message):
                return  # the call is over; the reading side reports how
        reader.deadline = parser.deadline(reader.deadline, timeout, loop.time())
    if decoder is not None:
        decoder.finish()
    parser.finish()
    await call.done_writing()


async def serve_request_stream(
    request: web.Request,
    plan: MethodPlan,
    env: CallEnv,
    ctx: RequestContext,
    metadata: Metadata,
    requested: float | None,
    answer: tuple[bool, bool, Framing, HeadersOf],
) -> web.StreamResponse:
    """A client- or bidi-streaming call; ``answer`` is (JSON messages, text request,
    the response framing, its leading headers)."""
    json, text, framing, leading = answer
    info, decode, encode = _codec(plan, json)
    limits = plan.limits
    timeout: float | None
    if plan.info.kind is MethodKind.CLIENT_STREAM:
        # One answer, as for unary: the upstream's default deadline applies.
        timeout = effective_timeout(requested, limits.timeout_s, limits.max_timeout_s)
    else:
        # Streams have no default deadline (spec §7): only the client's, clamped.
        timeout = None if requested is None else min(requested, limits.max_timeout_s)
    sink = open_sink(request, ctx, framing, framing.name, leading)
    activity = Activity()
    async with env.invoker(plan.upstream).request_stream(
        info, metadata=metadata, timeout=timeout
    ) as call:
        feed = _feed(request, env, decode, text, call, activity)
        outcome = await relay_stream(call, encode, env, sink, framing, activity, feed)
    ctx.bytes_in = request.content.total_bytes
    return await finish_stream(sink, plan, ctx, outcome)
