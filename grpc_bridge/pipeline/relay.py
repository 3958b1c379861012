"""The streaming core: upstream messages become frames here, and every stream ends here.

Every framing (NDJSON, SSE, WebSocket; gRPC-Web or Connect later) is driven
by the same few functions, over a :class:`Sink` that knows only how to start
a response and send bytes:

- :func:`relay` reads the upstream stream and sends one frame per message,
  reading the next message only once the sink has taken the previous one
  (backpressure: the bridge holds at most one batch plus the socket's
  buffers per stream, and the upstream stream's own byte budget), then the
  framing's ``end``;
- :func:`send_error` is the two-phase error rule (grpc-gateway's
  ForwardResponseStream): before anything was sent, a sink that can still
  answer with a status raises the error for a plain error response; after,
  the error becomes the framing's in-band error frame;
- :func:`supervise` runs the upstream→client side next to the client→upstream
  side (request streams) and ends the stream when either fails, when the
  bridge shuts down (:class:`~grpc_bridge.errors.ShuttingDown`) or when no
  message passed either way for ``streams.idle_timeout_s``
  (:class:`~grpc_bridge.errors.StreamIdle`). Both sides are cancelled on the
  way out, whatever the reason — including the handler's own cancellation
  when the client disconnects — and the upstream call with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from aiohttp import web
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message

from grpc_bridge.codec.framing import Framing, Pairs, StreamEnd
from grpc_bridge.errors import BridgeError, ShuttingDown, StreamIdle, UpstreamError
from grpc_bridge.upstream.api import StreamCall

__all__ = [
    "ACTIVE_SINK",
    "Activity",
    "Pairs",
    "Sink",
    "deliver_one",
    "end_of",
    "relay",
    "send_error",
    "status_of",
    "supervise",
]

T = TypeVar("T")
SHUTDOWN_MESSAGE = "grpc-bridge is shutting down"
#: Messages taken at a time, and the bytes after which a batch is sent:
#: large writes mean fewer wake-ups for the client too, bounded so one write
#: never holds much more than the socket buffers would.
BATCH = 16
BATCH_BYTES = 64 * 1024


class Sink(Protocol):
    """Where a stream's frames go: an HTTP response body, or a WebSocket."""

    #: Before anything was sent, an error can still be a plain HTTP error response.
    plain_errors: bool
    #: Body bytes handed to the transport so far, as sent (compressed): the log's ``bytes_out``.
    bytes_sent: int

    @property
    def started(self) -> bool: ...

    async def start(self, initial: Pairs, trailing: Pairs = ()) -> None:
        """Commit the response (HTTP headers, with the upstream's metadata)."""

    async def send(self, frame: bytes) -> None:
        """Send one frame; returns once the transport took it (raises ClientGone if it can't)."""

    async def send_many(self, frames: list[bytes]) -> None:
        """Send several frames, in one write where the framing allows it."""

    async def abort(self, end: StreamEnd) -> web.StreamResponse:
        """End a started stream with an error after a bug; the response to hand back to aiohttp."""


#: The sink of a request whose stream may have started, for the outermost error handler.
ACTIVE_SINK = web.RequestKey("active_sink", Sink)


class Activity:
    """When a message last passed either way, for the idle timeout."""

    __slots__ = ("_loop", "last")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()

    def touch(self) -> None:
        self.last = self._loop.time()

    def idle_for(self) -> float:
        return self._loop.time() - self.last


def end_of(exc: BridgeError, pool: DescriptorPool | None) -> StreamEnd:
    """How a stream that failed with ``exc`` ends (the upstream's details and trailers kept)."""
    if isinstance(exc, UpstreamError):
        return StreamEnd(
            exc.code,
            exc.message,
            details_bin=exc.details_bin,
            trailing=exc.trailing_metadata,
            pool=pool,
        )
    return StreamEnd(exc.code, exc.message, details=exc.details, pool=pool)


def status_of(exc: BridgeError, pool: DescriptorPool | None) -> dict[str, Any]:
    """The Status JSON of an error, details rendered through the upstream's types."""
    return end_of(exc, pool).status()


async def _start(sink: Sink, framing: Framing, initial: Pairs, trailing: Pairs = ()) -> None:
    await sink.start(initial, trailing)
    if opening := framing.open():
        await sink.send(opening)


async def relay(
    call: StreamCall,
    framing: Framing,
    sink: Sink,
    encode: Callable[[Message], bytes],
    activity: Activity,
) -> None:
    """Upstream messages → frames, then the end frame; raises UpstreamError if the call fails.

    Messages that arrived together leave together: one write for all of them
    (up to ``BATCH_BYTES``) instead of a write, and a system call, per message.
    """
    frame = framing.message
    while (message := await call.read()) is not None:
        activity.touch()
        if not sink.started:
            await _start(sink, framing, await call.initial_metadata())
        first = frame(encode(message))
        size = len(first)
        # Only what fits one batch is taken off the upstream stream: a message
        # taken is one the stream hands window back for, so taking more would
        # read ahead of a client that stopped reading.
        more = call.read_buffered(BATCH, BATCH_BYTES - size) if size < BATCH_BYTES else None
        if not more:
            await sink.send(first)
            continue
        out = [first]
        while more:
            for m in more:
                data = frame(encode(m))
                out.append(data)
                size += len(data)
            if size >= BATCH_BYTES:
                break
            more = call.read_buffered(BATCH, BATCH_BYTES - size)
        await sink.send_many(out)
    if not sink.started:
        # Nothing was streamed: headers can still carry the trailers (the end frame
        # gets them too, for the protocols that send them there: Connect).
        trailing = await call.trailing_metadata()
        await _start(sink, framing, await call.initial_metadata(), trailing)
        await sink.send(framing.end(StreamEnd(0, trailing=trailing)))
        return
    await sink.send(framing.end(StreamEnd(0, trailing=await call.trailing_metadata())))


async def deliver_one(
    sink: Sink, framing: Framing, payload: bytes, initial: Pairs, trailing: Pairs
) -> None:
    """A single response (unary or client-streaming over a framing) and the end frame."""
    if not sink.started:
        await _start(sink, framing, initial, trailing)
    await sink.send(framing.message(payload))
    await sink.send(framing.end(StreamEnd(0, trailing=trailing)))


async def send_error(
    sink: Sink, framing: Framing, exc: BridgeError, pool: DescriptorPool | None
) -> None:
    """The stream's terminal error; raises ``exc`` itself if it can still be a plain response."""
    if not sink.started:
        if sink.plain_errors:
            raise exc
        initial = exc.initial_metadata if isinstance(exc, UpstreamError) else ()
        await _start(sink, framing, initial)
    await sink.send(framing.error(end_of(exc, pool)))


async def supervise(
    main: Coroutine[Any, Any, T],
    feeder: Coroutine[Any, Any, None] | None,
    *,
    closing: asyncio.Event,
    idle_timeout_s: float,
    activity: Activity,
) -> T:
    """Run ``main`` (upstream → client) and ``feeder`` (client → upstream) until ``main`` ends.

    Returns what ``main`` returns. Raises what ended the stream instead:
    ``main``'s own error, the feeder's (a bad request line; ClientGone), or
    ShuttingDown / StreamIdle. A feeder that returns has half-closed the
    request stream, and ``main`` goes on.
    """
    main_task = asyncio.ensure_future(main)
    feeder_task = asyncio.ensure_future(feeder) if feeder is not None else None
    closing_task = asyncio.ensure_future(closing.wait())
    try:
        while True:
            timeout = None
            if idle_timeout_s:
                timeout = idle_timeout_s - activity.idle_for()
                if timeout <= 0:
                    raise StreamIdle(
                        f"no message in either direction for {idle_timeout_s:g} s "
                        "(streams.idle_timeout_s)"
                    )
            waiting = {main_task, closing_task}
            if feeder_task is not None:
                waiting.add(feeder_task)
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if main_task in done:
                return main_task.result()
            if feeder_task is not None and feeder_task in done:
                feeder_task.result()
                feeder_task = None
            if closing_task in done:
                raise ShuttingDown(SHUTDOWN_MESSAGE)
    finally:
        tasks = [t for t in (main_task, feeder_task, closing_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        for task in tasks:
            # Retrieved so a second failure (both sides at once) is not logged as lost.
            if not task.cancelled():
                task.exception()
