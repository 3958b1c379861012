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

from typing import NamedTuple

from aiohttp import web

from grpc_bridge.codec.framing import Framing
from grpc_bridge.codec.message import Codec
from grpc_bridge.discovery.registry import MethodKind
from grpc_bridge.errors import BridgeError, InvalidArgument
from grpc_bridge.pipeline.call import stream_deadline
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.relay import Activity
from grpc_bridge.pipeline.sink import HeadersOf, finish_stream, open_sink, relay_stream
from grpc_bridge.protocol.connect_wire import read_envelopes
from grpc_bridge.protocol.grpc_web_frames import TextDecoder, frame_message
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.upstream.api import StreamCall
from grpc_bridge.upstream.deadlines import effective_timeout
from grpc_bridge.upstream.metadata import Metadata


class StreamWire(NamedTuple):
    """How a request stream's frames read and its answer is written."""

    #: The messages' codec (``+json``: JSON; else protobuf bytes passed through).
    codec: Codec
    #: The request body is base64 text (``grpc-web-text``).
    text_request: bool
    framing: Framing
    leading: HeadersOf


async def _feed(
    request: web.Request,
    env: CallEnv,
    codec: Codec,
    plan: MethodPlan,
    text: bool,
    call: StreamCall,
    activity: Activity,
) -> None:
    """Request frames → upstream as they arrive; the end of the body half-closes."""
    limits = env.limits
    limit = limits.max_request_bytes
    coding = request.headers.get("Grpc-Encoding")
    frames = read_envelopes(
        request,
        limit,
        limits.body_read_timeout_s,
        whole_body=False,
        decoder=TextDecoder() if text else None,
    )
    async for flag, data, number in frames:
        activity.touch()
        payload = await frame_message(flag, data, coding, limit)
        try:
            message = codec.decode(plan, payload)
        except BridgeError as exc:
            raise InvalidArgument(f"request frame {number}: {exc.message}") from exc
        if not await call.write(message):
            return  # the call is over; the reading side reports how
    await call.done_writing()


async def serve_request_stream(
    request: web.Request,
    plan: MethodPlan,
    env: CallEnv,
    ctx: RequestContext,
    metadata: Metadata,
    requested: float | None,
    wire: StreamWire,
) -> web.StreamResponse:
    """A client- or bidi-streaming call, its frames read and written as ``wire`` says."""
    codec, text, framing, leading = wire
    timeout: float | None
    if plan.info.kind is MethodKind.CLIENT_STREAM:
        # One answer, as for unary: the upstream's default deadline applies.
        limits = plan.limits
        timeout = effective_timeout(requested, limits.timeout_s, limits.max_timeout_s)
    else:
        timeout = stream_deadline(requested, plan)
    sink = open_sink(request, ctx, framing, framing.name, leading)
    activity = Activity()
    async with env.invoker(plan.upstream).request_stream(
        codec.info(plan), metadata=metadata, timeout=timeout
    ) as call:
        feed = _feed(request, env, codec, plan, text, call, activity)
        outcome = await relay_stream(call, codec.encoder(plan), env, sink, framing, activity, feed)
    ctx.bytes_in = request.content.total_bytes
    return await finish_stream(sink, plan, ctx, outcome)
