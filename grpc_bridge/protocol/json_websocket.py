"""WebSocket on a method's path: every method kind, full duplex (spec §4).

Client → bridge: each text frame is one request message; an empty text frame
half-closes the request stream. Unary and server-streaming methods take one
request: the first frame is it, and the bridge half-closes by itself. On a
REST binding's path each frame is the binding's body, with the path variables
and query merged in (``transcode.stream_decoder``, as for HTTP request streams).

Bridge → client: ``{"result": <message>}`` per response message; on failure
one last ``{"error": <Status>}`` frame. Close codes:

======  =======================================================================
1000    the call succeeded
4000+n  the call failed with gRPC code n (after the error frame): 4003 for a
        malformed frame, 4004 for an idle stream, 4005 for NOT_FOUND ...
1001    the bridge is shutting down (after an error frame with code 14)
1009    a frame over ``websocket.max_message_size`` (aiohttp refuses it
        before reading it, so no error frame)
======  =======================================================================

A malformed frame (not JSON, not the message's JSON shape, binary, a second
request for a method that takes one, a message after the half-close) ends
the stream like a bad NDJSON line ends an HTTP request stream: error frame
with code 3, upstream call cancelled, close 4003. Keeping the stream alive
after it would leave the client unsure which of its messages were sent.

A client that closes (or loses) the socket cancels the upstream call at once:
the frame reader runs for the whole session, so a close frame is seen even
while the upstream is quiet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from google.protobuf.message import Message

from grpc_bridge.codec.framing import WEBSOCKET_FRAMING, StreamEnd
from grpc_bridge.codec.message import JSON_CODEC
from grpc_bridge.discovery.registry import MethodKind
from grpc_bridge.errors import (
    BridgeError,
    ClientGone,
    InvalidArgument,
    OriginNotAllowed,
    ShuttingDown,
)
from grpc_bridge.pipeline.call import OpenCall, open_call, open_stream_call
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.relay import (
    ACTIVE_SINK,
    Activity,
    Pairs,
    deliver_one,
    relay,
    send_error,
)
from grpc_bridge.pipeline.sink import supervised
from grpc_bridge.protocol.json_transcode import MessageDecoder, stream_decoder, stream_encoder
from grpc_bridge.routing.table import Match
from grpc_bridge.settings import Cors
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.api import StreamCall
from grpc_bridge.upstream.metadata import MetadataPolicy

CLOSE_OK = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_STATUS_BASE = 4000
#: RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
_MAX_REASON = 123
#: How long to wait for the client's answer to our close frame.
_CLOSE_TIMEOUT_S = 2.0


def is_websocket(request: web.Request) -> bool:
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


def check_origin(request: web.Request, cors: Cors) -> None:
    """Browsers don't apply CORS to WebSockets, so the bridge checks ``Origin`` itself.

    Passes: no Origin (not a browser), an allowed origin (or ``*``), and a
    same-origin page (Origin's host is the Host the request was sent to).
    """
    origin = request.headers.get("Origin")
    if origin is None or "*" in cors.allowed_origins or origin in cors.allowed_origins:
        return
    try:
        netloc: str | None = urlsplit(origin).netloc.lower()
    except ValueError:  # "http://[": not a URL, so not this host either
        netloc = None
    if netloc == request.host.lower():
        return
    raise OriginNotAllowed(
        f"origin {origin!r} may not open WebSockets here: it is not in cors.allowed_origins"
    )


class WebSocketSink:
    """Frames as text messages; everything is in-band once the socket is open."""

    plain_errors = False
    started = True

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self.bytes_sent = 0

    async def start(self, initial: Pairs, trailing: Pairs = ()) -> None:
        return None

    async def send(self, frame: bytes) -> None:
        if not frame:
            return
        try:
            # aiohttp drains the socket once 64 KiB are buffered: bounded, as for HTTP.
            # Frames are UTF-8 JSON already: no str round trip as send_str would make.
            await self._ws.send_frame(frame, WSMsgType.TEXT)
        except ConnectionError as exc:
            raise ClientGone(str(exc)) from exc
        self.bytes_sent += len(frame)

    async def send_many(self, frames: list[bytes]) -> None:
        # One WebSocket message per frame: a client parses each message as one JSON value.
        for frame in frames:
            await self.send(frame)

    async def abort(self, end: StreamEnd) -> web.StreamResponse:
        try:
            await self.send(WEBSOCKET_FRAMING.error(end))
            await self._ws.close(code=CLOSE_STATUS_BASE + end.code)
        except ClientGone:
            pass  # nobody left to tell
        return self._ws


class FrameReader:
    """Text frames → request messages; ``None`` for the empty frame that half-closes."""

    def __init__(
        self, ws: web.WebSocketResponse, codec: MessageDecoder, activity: Activity
    ) -> None:
        self._ws = ws
        self._codec = codec
        self._activity = activity
        self._count = 0

    async def _frame(self) -> str:
        msg = await self._ws.receive()
        if msg.type is WSMsgType.TEXT:
            self._count += 1
            self._activity.touch()
            return str(msg.data)
        if msg.type is WSMsgType.BINARY:
            raise InvalidArgument(
                f"frame {self._count + 1} is binary: send each message as a JSON text frame"
            )
        if msg.type is WSMsgType.ERROR:
            raise ClientGone(f"WebSocket error: {msg.data}")
        raise ClientGone(f"WebSocket closed by the client (code {self._ws.close_code})")

    async def next_message(self) -> Message | None:
        text = await self._frame()
        if not text:
            return None
        try:
            return self._codec.decode(text.encode())
        except BridgeError as exc:
            raise InvalidArgument(f"frame {self._count}: {exc.message}") from exc

    async def after_half_close(self, why: str) -> None:
        """Keep reading (pings, the client's close) until cancelled; any message is an error."""
        while True:
            if await self._frame():
                raise InvalidArgument(f"frame {self._count}: {why}")


async def _feed_frames(frames: FrameReader, call: StreamCall) -> None:
    while (message := await frames.next_message()) is not None:
        if not await call.write(message):
            break  # the call is over; the reading side reports how
    await call.done_writing()
    await frames.after_half_close("the request stream is already half-closed")


async def _one_request(frames: FrameReader, kind: MethodKind) -> Message:
    message = await frames.next_message()
    if message is None:
        raise InvalidArgument(
            f"the request stream was half-closed before the request: a {kind.value} method "
            "takes exactly one request message"
        )
    return message


class _Session:
    """One WebSocket: a frame reader and the upstream call, run under ``supervise``."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        match: Match,
        env: CallEnv,
        start: OpenCall[float] | OpenCall[float | None],
        decoder: MessageDecoder,
    ) -> None:
        self.plan = match.plan
        #: The method as called upstream (the JSON codec's: codec/message.py).
        self.info = JSON_CODEC.info(match.plan)
        self.env = env
        self.invoker = start.invoker
        self.metadata = start.metadata
        self.timeout = start.timeout
        self.sink = WebSocketSink(ws)
        self.encode = stream_encoder(match)
        self.activity = Activity()
        self.frames = FrameReader(ws, decoder, self.activity)

    def _supervise(
        self, main: Coroutine[Any, Any, None], feeder: Coroutine[Any, Any, None]
    ) -> Coroutine[Any, Any, None]:
        return supervised(main, feeder, self.env, self.activity)

    async def run(self) -> None:
        kind = self.plan.info.kind
        invoker = self.invoker
        if kind.client_streams:
            async with invoker.request_stream(
                self.info, metadata=self.metadata, timeout=self.timeout
            ) as call:
                replies = self._relay(call) if kind.server_streams else self._one_response(call)
                await self._supervise(replies, _feed_frames(self.frames, call))
            return
        first: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def feed() -> None:
            first.set_result(await _one_request(self.frames, kind))
            await self.frames.after_half_close(
                f"a {kind.value} method takes one request message, and it was sent"
            )

        async def main() -> None:
            request = await first
            if kind is MethodKind.UNARY:
                assert self.timeout is not None  # unary calls always have a deadline
                result = await invoker.unary(
                    self.info, request, metadata=self.metadata, timeout=self.timeout
                )
                payload = self.encode(result.response)
                await deliver_one(
                    self.sink,
                    WEBSOCKET_FRAMING,
                    payload,
                    result.initial_metadata,
                    result.trailing_metadata,
                )
                return
            async with invoker.server_stream(
                self.info, request, metadata=self.metadata, timeout=self.timeout
            ) as call:
                await self._relay(call)

        await self._supervise(main(), feed())

    async def _relay(self, call: StreamCall) -> None:
        await relay(call, WEBSOCKET_FRAMING, self.sink, self.encode, self.activity)

    async def _one_response(self, call: StreamCall) -> None:
        response = await call.response()
        self.activity.touch()
        await deliver_one(
            self.sink,
            WEBSOCKET_FRAMING,
            self.encode(response),
            await call.initial_metadata(),
            await call.trailing_metadata(),
        )


def _reason(message: str) -> bytes:
    return message.encode()[:_MAX_REASON].decode(errors="ignore").encode()


async def handle_websocket(
    request: web.Request,
    match: Match,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.StreamResponse:
    plan = match.plan
    # Everything that can refuse the call is checked before the upgrade, as a plain HTTP error.
    check_origin(request, env.cors)
    start = (
        open_call(request, plan, env, ctx, policy)
        if plan.info.kind in (MethodKind.UNARY, MethodKind.CLIENT_STREAM)
        else open_stream_call(request, plan, env, ctx, policy)
    )
    # A REST binding's path and query join every frame's message (a bad one is a 400 here).
    decoder = stream_decoder(request, match, env)
    ws = web.WebSocketResponse(
        heartbeat=env.websocket.heartbeat_s,
        max_msg_size=env.websocket.max_message_size,
        timeout=_CLOSE_TIMEOUT_S,
        compress=env.websocket.permessage_deflate,
    )
    await ws.prepare(request)
    ctx.open_stream(WEBSOCKET_FRAMING.name)
    session = _Session(ws, match, env, start, decoder)
    request[ACTIVE_SINK] = session.sink
    try:
        await session.run()
    except ClientGone as exc:
        ctx.grpc_code, ctx.error = code_name(Code.CANCELLED), str(exc)
        await ws.close()
        return ws
    except BridgeError as exc:
        ctx.grpc_code, ctx.error = code_name(exc.code), exc.message
        try:
            await send_error(session.sink, WEBSOCKET_FRAMING, exc, plan.pool)
        except ClientGone:
            return ws
        code = CLOSE_GOING_AWAY if isinstance(exc, ShuttingDown) else CLOSE_STATUS_BASE + exc.code
        await ws.close(code=code, message=_reason(exc.message))
        return ws
    ctx.grpc_code = code_name(Code.OK)
    await ws.close(code=CLOSE_OK)
    return ws
