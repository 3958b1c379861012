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
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message

from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.api import STATUS_DETAILS_KEY, CallObserver
from grpc_bridge.upstream.metadata import Metadata


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
