"""The HTTP response side of every protocol's streams: a chunked body, the relay, the end.

A protocol gives its :class:`~grpc_bridge.codec.framing.Framing` and where the
upstream's metadata goes in the head (``headers_of``); :class:`HttpSink`
starts the response at the first frame (compressed when the framing allows
and the client asked), :func:`relay_stream` runs the upstream call's messages
through it (and, with a feeder, the request body upstream) under the
supervision of :mod:`~grpc_bridge.pipeline.relay`, and :func:`finish_stream`
writes the end or the in-band error once the call is over.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from contextlib import suppress
from typing import Any, TypeVar

from aiohttp import web
from google.protobuf.message import Message

from grpc_bridge.codec.framing import Framing, Pairs, StreamEnd
from grpc_bridge.errors import BridgeError, ClientGone
from grpc_bridge.pipeline.compress import ACCEPT_ENCODING, StreamWriter
from grpc_bridge.pipeline.context import COMPRESSION, RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.relay import ACTIVE_SINK, Activity, relay, send_error, supervise
from grpc_bridge.pipeline.responses import json_response
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.status import Code, code_name, status_body
from grpc_bridge.upstream.api import StreamCall
from grpc_bridge.upstream.metadata import to_headers

T = TypeVar("T")


#: Proxies (nginx) buffer responses unless told not to; a stream must flow.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _EncodedStream(web.StreamResponse):
    """A stream whose body is compressed write by write; the encoder's end goes before EOF."""

    def __init__(self, writer: StreamWriter, headers: Mapping[str, str]) -> None:
        super().__init__(headers=headers)
        self.writer = writer
        self._finished = False

    async def write_eof(self, data: bytes = b"") -> None:
        if self.prepared:
            end = await self.writer.chunk(data) if data else b""
            data = end + await self.finish_body()
        await super().write_eof(data)

    async def finish_body(self) -> bytes:
        """The encoder's last bytes, once (then nothing)."""
        if self._finished:
            return b""
        self._finished = True
        return await self.writer.finish()


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
        self.bytes_sent = 0

    @property
    def started(self) -> bool:
        return self.response is not None

    def _response(self) -> web.StreamResponse:
        compression = self._request.app.get(COMPRESSION)
        if compression is None or not compression.enabled or not self.framing.compressible:
            return web.StreamResponse(headers=STREAM_HEADERS)
        coding = compression.choose(self._request.headers.get(ACCEPT_ENCODING)).coding
        if coding is None:
            response = web.StreamResponse(headers=STREAM_HEADERS)
        else:
            # Whatever a stream's size: it is unknown when the headers go out.
            self._writer = compression.stream(coding)
            response = _EncodedStream(self._writer, STREAM_HEADERS)
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
        await self._write(frame)

    async def _write(self, data: bytes) -> None:
        assert self.response is not None
        try:
            # Returns once the transport took the chunk (aiohttp drains past 64 KiB).
            await self.response.write(data)
        except ConnectionError as exc:
            raise ClientGone(str(exc)) from exc
        self.bytes_sent += len(data)

    async def end(self) -> None:
        """A compressed body's last bytes, sent (and counted) before the response is logged."""
        if isinstance(self.response, _EncodedStream):
            tail = await self.response.finish_body()
            if tail:
                await self._write(tail)

    async def send_many(self, frames: list[bytes]) -> None:
        # A byte stream: the frames of a batch go out in one write.
        await self.send(b"".join(frames))

    async def abort(self, end: StreamEnd) -> web.StreamResponse:
        assert self.response is not None
        with suppress(ClientGone):  # nobody left to tell
            await self.send(self.framing.error(end))
            await self.end()
        return self.response


def open_sink(
    request: web.Request,
    ctx: RequestContext,
    framing: Framing,
    label: str,
    headers_of: HeadersOf = to_headers,
) -> HttpSink:
    """The sink of a response stream about to start, counted open under ``label`` and
    kept on the request (``ACTIVE_SINK``) for the edge's shutdown and error paths."""
    ctx.open_stream(label)
    sink = HttpSink(request, framing, headers_of)
    request[ACTIVE_SINK] = sink
    return sink


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
    with suppress(ClientGone):  # its last bytes had nobody to go to
        await sink.end()
    return sink.response


async def relay_stream(
    call: StreamCall,
    encode: Callable[[Message], bytes],
    env: CallEnv,
    sink: HttpSink,
    framing: Framing,
    activity: Activity,
    feed: Coroutine[Any, Any, None] | None,
) -> BridgeError | ClientGone | None:
    """Upstream messages to the client (and, with ``feed``, the body upstream) until either ends;
    how it ended (for :func:`finish_stream`). Every protocol's response streams run here."""
    return await _ended(
        supervised(relay(call, framing, sink, encode, activity), feed, env, activity)
    )


def supervised(
    main: Coroutine[Any, Any, T],
    feed: Coroutine[Any, Any, None] | None,
    env: CallEnv,
    activity: Activity,
) -> Coroutine[Any, Any, T]:
    """:func:`~grpc_bridge.pipeline.relay.supervise` as every call is: ended by the
    bridge's shutdown and by ``streams.idle_timeout_s`` without a message."""
    return supervise(
        main, feed, closing=env.closing, idle_timeout_s=env.idle_timeout_s, activity=activity
    )
