"""One streaming call to an upstream, with grpc's errors translated at this seam.

:class:`StreamCall` wraps a grpc.aio call of any streaming kind behind one
small interface, so the HTTP layer drives server-, client- and bidi-streaming
calls the same way and never sees a grpc type:

- ``read()`` returns the next response message, ``None`` at a clean end, and
  raises :class:`~grpc_bridge.errors.UpstreamError` when the call failed;
- ``write()`` sends one request message and says whether the call still takes
  them. It never raises for the call's own failure: the reading side
  (``read()`` or ``response()``) reports the final status, so it is reported
  once;
- ``done_writing()`` half-closes the request stream;
- used as ``async with``, the call is cancelled on the way out unless it
  finished: whatever ends a stream early (client gone, bridge shutdown, a bad
  request line), the upstream sees the cancellation at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import grpc.aio
from google.protobuf.message import Message

from grpc_bridge.discovery.registry import MethodInfo
from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.metadata import Metadata

if TYPE_CHECKING:
    # Annotations only: a call needs no prometheus_client unless metrics are on
    # (the command-line client drives GrpcStreamCall without them).
    from grpc_bridge.metrics import MethodMetrics, Metrics

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def translate(exc: grpc.aio.AioRpcError) -> UpstreamError:
    code = exc.code()
    number = code.value[0] if isinstance(code, grpc.StatusCode) else int(Code.UNKNOWN)
    trailing = tuple(exc.trailing_metadata() or ())
    details_bin = next(
        (v for k, v in trailing if k == STATUS_DETAILS_KEY and isinstance(v, bytes)), None
    )
    return UpstreamError(
        number,
        exc.details() or "",
        details_bin=details_bin,
        initial_metadata=tuple(exc.initial_metadata() or ()),
        trailing_metadata=trailing,
    )


class CallObserver:
    """go-grpc-prometheus accounting of one call: started, messages, handled once."""

    __slots__ = ("_done", "_started", "metrics")

    def __init__(self, metrics: MethodMetrics) -> None:
        self.metrics = metrics
        self._started = time.perf_counter()
        self._done = False
        # Lock-free series (metrics.py): plain float updates, cheaper than an inc() call.
        metrics.started.value += 1

    @property
    def done(self) -> bool:
        return self._done

    def finish(self, code: int) -> None:
        if not self._done:
            self._done = True
            metrics = self.metrics
            metrics.handled(code).value += 1
            metrics.handling.observe(time.perf_counter() - self._started)

    def unary_answered(self, code: int) -> None:
        """A unary call ended with ``code`` from the upstream: its request was sent, and
        with OK its one response received (a cancelled call is ``finish(CANCELLED)``)."""
        self.metrics.sent.value += 1
        if code == Code.OK:
            self.metrics.received.value += 1
        self.finish(code)


def observe(metrics: Metrics | None, method: MethodInfo) -> CallObserver | None:
    """An observer for a call of ``method``, counted as started; None without metrics."""
    return None if metrics is None else CallObserver(metrics.method(method))


class StreamCall(Protocol):
    """What the HTTP layer drives: a grpc.aio call or a native one; see the module docstring."""

    async def read(self) -> Message | None: ...
    def read_buffered(self, limit: int, max_bytes: int) -> list[Message]:
        """Messages already received, without waiting (for batching writes): up to
        ``limit`` of them, stopping once about ``max_bytes`` are taken."""
        ...

    async def write(self, message: Message) -> bool: ...
    async def done_writing(self) -> None: ...
    async def response(self) -> Message: ...
    async def initial_metadata(self) -> Metadata: ...
    async def trailing_metadata(self) -> Metadata: ...
    @property
    def done(self) -> bool: ...
    def cancel(self) -> None: ...
    async def __aenter__(self) -> StreamCall: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class GrpcStreamCall:
    """A started grpc.aio streaming call; see the module docstring."""

    __slots__ = ("_call", "_observer")

    def __init__(self, call: Any, observer: CallObserver | None = None) -> None:
        self._call = call
        self._observer = observer

    def _failed(self, exc: grpc.aio.AioRpcError) -> UpstreamError:
        error = translate(exc)
        if self._observer is not None:
            self._observer.finish(error.code)
        return error

    async def read(self) -> Message | None:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        if message is grpc.aio.EOF:
            if self._observer is not None:
                self._observer.finish(Code.OK)
            return None
        assert isinstance(message, Message)
        if self._observer is not None:
            self._observer.metrics.received.inc()
        return message

    def read_buffered(self, limit: int, max_bytes: int) -> list[Message]:
        # grpc.aio has no way to take a message without a hand-off.
        return []

    async def write(self, message: Message) -> bool:
        """Send one message; ``False`` once the call is over and takes no more."""
        try:
            await self._call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            # The call finished (the upstream answered or failed early): the
            # reading side raises its status.
            return False
        if self._observer is not None:
            self._observer.metrics.sent.inc()
        return True

    async def done_writing(self) -> None:
        # A failure here is reported by the reading side, as for write().
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self._call.done_writing()

    async def response(self) -> Message:
        """The one response of a client-streaming call."""
        try:
            message = await self._call
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        assert isinstance(message, Message)
        if self._observer is not None:
            self._observer.metrics.received.inc()
            self._observer.finish(Code.OK)
        return message

    async def initial_metadata(self) -> Metadata:
        try:
            return list(await self._call.initial_metadata() or ())
        except grpc.aio.AioRpcError as exc:
            return list(exc.initial_metadata() or ())

    async def trailing_metadata(self) -> Metadata:
        try:
            return list(await self._call.trailing_metadata() or ())
        except grpc.aio.AioRpcError as exc:
            return list(exc.trailing_metadata() or ())

    @property
    def done(self) -> bool:
        return bool(self._call.done())

    def cancel(self) -> None:
        self._call.cancel()

    async def __aenter__(self) -> GrpcStreamCall:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cancelled = not self._call.done()
        if cancelled:
            self._call.cancel()
        observer = self._observer
        if observer is not None and not observer.done:
            # Ended early (client gone, shutdown, bad input) or the status was never read.
            if cancelled or exc is not None:
                observer.finish(Code.CANCELLED)
            else:
                code = await self._call.code()
                observer.finish(
                    code.value[0] if isinstance(code, grpc.StatusCode) else Code.UNKNOWN
                )
