"""A streaming call on the native client: :class:`~grpc_bridge.upstream.api.StreamCall`.

The stream is opened when first used (``async with`` does it), because
finding a connection may wait for one to connect. A server-streaming call
whose stream the upstream refused before seeing it (REFUSED_STREAM, or
GOAWAY above it) is opened once more, transparently, within its deadline:
its request is known in full and nothing of it was processed. Client and bidi
streams are not: their requests are gone once written.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError, Message

from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.api import CallObserver
from grpc_bridge.upstream.grpc_request import Prepared
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.connection import Connection
from grpc_bridge.upstream.h2.inflate import Compressed
from grpc_bridge.upstream.h2.stream import MessageError, Status, Stream
from grpc_bridge.upstream.metadata import Metadata

if TYPE_CHECKING:
    from grpc_bridge.upstream.invoker import Invoker


def call_error(status: Status, stream: Stream | None) -> UpstreamError:
    return UpstreamError(
        status.code,
        status.message,
        details_bin=status.details_bin,
        initial_metadata=stream.initial_metadata() if stream is not None else (),
        trailing_metadata=stream.trailing_metadata() if stream is not None else (),
    )


def expire(stream: Stream) -> None:
    """The call's deadline passed: cancel the stream, DEADLINE_EXCEEDED."""
    if stream.status is None:
        stream.connection.reset(
            stream, frames.CANCEL, Status(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
        )


class Deadlines:
    """Unary calls' deadline timers: one event-loop timer per 50 ms of deadlines, not per call.

    A unary call mostly ends long before its deadline, and a timer of its own
    (armed, then cancelled: a libuv timer each on uvloop) cost ~1.1 µs a call.
    Calls wait in a bucket by deadline instead; the bucket's one timer fires at
    the bucket's start, before any deadline in it, and gives each call still
    open there a timer of its own at its deadline: a call expires exactly when it
    did with a timer from the start.
    """

    WIDTH = 0.05

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[int, dict[Stream, float]] = {}

    def add(self, stream: Stream, deadline: float, loop: asyncio.AbstractEventLoop) -> int:
        """``stream`` expires at ``deadline`` (loop time) unless :meth:`remove` d first."""
        key = int(deadline // self.WIDTH)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            loop.call_at(key * self.WIDTH, self._due, key, loop)
        bucket[stream] = deadline
        return key

    def remove(self, stream: Stream, key: int) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.pop(stream, None)

    def _due(self, key: int, loop: asyncio.AbstractEventLoop) -> None:
        for stream, deadline in self._buckets.pop(key, {}).items():
            if stream.status is None:
                # Left to run when the call ends first: expire() does nothing then.
                loop.call_at(deadline, expire, stream)


async def single_response(stream: Stream, prepared: Prepared) -> Message:
    """The one response message of a unary or client-streaming call that ended OK."""
    data = single_message(stream)
    if type(data) is Compressed:
        try:
            data = await stream.inflated(data)  # on a worker thread when large
        except (MessageError, DecodeError) as exc:
            raise _bad_response(exc, stream) from exc
    return parsed_response(stream, prepared, data)


def single_message(stream: Stream) -> bytes | Compressed:
    """The one message (still compressed, if it was) of a call that ended OK."""
    messages = stream.messages
    if len(messages) != 1:
        raise call_error(
            Status(
                Code.INTERNAL if messages else Code.UNIMPLEMENTED,
                f"upstream sent {len(messages)} response messages to a unary call",
            ),
            stream,
        )
    return messages[0]


def parsed_response(stream: Stream, prepared: Prepared, data: bytes) -> Message:
    """The response message of ``data`` (uncompressed): a bad one is the call's INTERNAL."""
    try:
        return prepared.parse(data)
    except (MessageError, DecodeError) as exc:
        raise _bad_response(exc, stream) from exc


def _bad_response(exc: MessageError | DecodeError, stream: Stream) -> UpstreamError:
    if isinstance(exc, MessageError):
        return call_error(exc.status, stream)
    return call_error(Status(Code.INTERNAL, f"cannot parse the upstream's response: {exc}"), stream)


class Http2Call:
    """See the module docstring."""

    __slots__ = (
        "_connection",
        "_deadline",
        "_error",
        "_invoker",
        "_metadata",
        "_observer",
        "_prepared",
        "_request",
        "_resend",
        "_stream",
        "_timer",
    )

    def __init__(
        self,
        invoker: Invoker,
        prepared: Prepared,
        metadata: Metadata,
        timeout: float | None,
        request: Message | None,
        observer: CallObserver | None,
    ) -> None:
        self._invoker = invoker
        self._prepared = prepared
        self._metadata = metadata
        self._deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        #: The request of a server-streaming call, framed when the stream opens.
        self._request = request
        #: A refused server stream may be opened once more (module docstring).
        self._resend = request is not None
        self._observer = observer
        self._error: UpstreamError | None = None
        self._connection: Connection | None = None
        self._stream: Stream | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def _start(self) -> Stream | None:
        if self._stream is None and self._error is None:
            try:
                request = self._request
                data = None if request is None else await self._invoker.encoder.frame(request)
                self._connection, self._stream, self._timer = await self._invoker.open(
                    self._prepared, self._metadata, self._deadline, data
                )
            except UpstreamError as exc:
                self._error = exc
        return self._stream

    async def _answered(self) -> Stream | None:
        """The stream once the upstream answered it (headers or the end), resent if refused."""
        stream = await self._start()
        if stream is not None and self._resend:
            self._resend = False
            await stream.wait_headers()
            status = stream.status
            if stream.headers is None and status is not None and status.unprocessed:
                # Refused before the upstream saw it: as safe to send again as a unary call.
                if self._timer is not None:
                    self._timer.cancel()
                self._stream = None
                stream = await self._start()
        return stream

    def _failed(self, error: UpstreamError) -> UpstreamError:
        if self._observer is not None:
            self._observer.finish(error.code)
        return error

    async def read(self) -> Message | None:
        stream = await self._answered() if self._resend else await self._start()
        if stream is None:
            assert self._error is not None
            raise self._failed(self._error)
        data = await stream.next_message()
        if data is None:
            status = stream.status
            if status is not None and status.code != Code.OK:
                raise self._failed(call_error(status, stream))
            if self._observer is not None:
                self._observer.finish(Code.OK)
            return None
        try:
            message = self._prepared.parse(data)
        except DecodeError as exc:
            stream.connection.reset(stream, frames.CANCEL)
            raise self._failed(
                call_error(
                    Status(Code.INTERNAL, f"cannot parse the upstream's message: {exc}"), stream
                )
            ) from exc
        if self._observer is not None:
            self._observer.metrics.received.inc()
        return message

    def read_buffered(self, limit: int, max_bytes: int) -> list[Message]:
        """Messages already received, parsed, up to ``limit`` or ``max_bytes``; never waits,
        never raises.

        A message that does not parse is left for :meth:`read`, which reports it.
        """
        stream = self._stream
        if stream is None:
            return []
        taken = stream.take(limit, max_bytes)
        parse = self._prepared.parse
        try:
            # map(), not a loop: no Python frame per message on a stream's hot path.
            out = list(map(parse, taken))
        except DecodeError:
            out = []
            for index, data in enumerate(taken):
                try:
                    out.append(parse(data))
                except DecodeError:
                    stream.give_back(taken[index:])
                    break
        if out and self._observer is not None:
            self._observer.metrics.received.inc(len(out))
        return out

    async def write(self, message: Message) -> bool:
        stream = await self._start()
        if stream is None:
            return False
        try:
            data = await self._invoker.encoder.frame(message)
        except UpstreamError as exc:
            stream.connection.reset(stream, frames.CANCEL, Status(exc.code, exc.message))
            return False
        assert self._connection is not None
        if not await self._connection.send(stream, data, False):
            return False
        if self._observer is not None:
            self._observer.metrics.sent.inc()
        return True

    async def done_writing(self) -> None:
        stream = await self._start()
        if stream is not None:
            assert self._connection is not None
            await self._connection.send(stream, b"", True)

    async def response(self) -> Message:
        # A unary call started with its request (the CLI's, which may have no deadline)
        # is resent when refused, as a server stream is.
        stream = await self._answered() if self._resend else await self._start()
        if stream is None:
            assert self._error is not None
            raise self._failed(self._error)
        status = await stream.wait_closed()
        if status.code != Code.OK:
            raise self._failed(call_error(status, stream))
        try:
            message = await single_response(stream, self._prepared)
        except UpstreamError as exc:
            raise self._failed(exc) from None
        if self._observer is not None:
            self._observer.metrics.received.inc()
            self._observer.finish(Code.OK)
        return message

    async def initial_metadata(self) -> Metadata:
        stream = await self._answered()
        if stream is None:
            return []
        await stream.wait_headers()
        return list(stream.initial_metadata())

    async def trailing_metadata(self) -> Metadata:
        stream = await self._answered()
        if stream is None:
            return []
        await stream.wait_closed()
        return list(stream.trailing_metadata())

    @property
    def done(self) -> bool:
        stream = self._stream
        return self._error is not None or (stream is not None and stream.status is not None)

    def cancel(self) -> None:
        stream = self._stream
        if stream is not None and stream.status is None:
            stream.connection.reset(stream, frames.CANCEL)

    async def __aenter__(self) -> Http2Call:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        stream = self._stream
        cancelled = stream is not None and stream.status is None
        if cancelled:
            assert stream is not None
            stream.connection.reset(stream, frames.CANCEL)
        if stream is not None:
            stream.release()
        observer = self._observer
        if observer is not None and not observer.done:
            if cancelled or exc is not None:
                observer.finish(Code.CANCELLED)
            elif self._error is not None:
                observer.finish(self._error.code)
            else:
                status = stream.status if stream is not None else None
                observer.finish(status.code if status is not None else Code.UNKNOWN)
