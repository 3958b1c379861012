"""Server reflection answered by the bridge itself, as an upstream behind the upstream API.

The route table sends ``grpc.reflection.v1(alpha).ServerReflection/
ServerReflectionInfo`` to :data:`LOCAL_UPSTREAM`, whose invoker is a
:class:`LocalReflection`: every protocol that carries the call (Connect and
gRPC-Web streams, WebSocket, NDJSON, a single JSON request) reaches it as it
reaches a real upstream, with no code of its own. Answers come from the
:class:`~grpc_bridge.discovery.reflection_index.ReflectionIndex` of what the
bridge exposes at the moment the stream starts (``index``: a future, as it
may still be building; requests wait for it, writes are held as below); the
answering itself is :mod:`~grpc_bridge.upstream.reflection_answers`. A call
whose index was cancelled (the bridge stops) ends UNAVAILABLE; one whose index
failed to build (a bug, logged where it is built) INTERNAL.

A call holds at most :data:`PENDING` requests its reader has not taken the
answers of: a writer waits for the reader, as HTTP/2 flow control makes it
wait for a real upstream. A request is answered when its answer is read, so
a client that stops reading leaves small requests held, not answers (each
up to the message bound: a large file, sent again for each request). The
deadline, cancellation and accounting are those of any call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError, Message

from grpc_bridge.discovery.reflection_index import ReflectionIndex
from grpc_bridge.discovery.registry import MethodInfo
from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.api import CallObserver, UnaryResult, observe
from grpc_bridge.upstream.metadata import Metadata
from grpc_bridge.upstream.reflection_answers import InvalidRequest, Request, StreamAnswers

if TYPE_CHECKING:
    from grpc_bridge.metrics import Metrics

__all__ = ["LOCAL_UPSTREAM", "PENDING", "LocalReflection", "LocalReflectionCall"]

#: The upstream name of the bridge's own services: no configured upstream can have it
#: (names are letters, digits, ``_.-``). Logged as the call's upstream.
LOCAL_UPSTREAM = "(bridge)"

#: Requests a call keeps unanswered for its reader before a write waits.
PENDING = 4


class LocalReflection:
    """The :class:`~grpc_bridge.upstream.api.CallInvoker` of :data:`LOCAL_UPSTREAM`."""

    def __init__(
        self,
        index: Callable[[], asyncio.Future[ReflectionIndex]],
        *,
        max_message_bytes: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._index = index
        self._max_bytes = max_message_bytes
        self._metrics = metrics

    def _call(self, method: MethodInfo, timeout: float | None) -> LocalReflectionCall:
        index = self._index()
        observer = observe(self._metrics, method)
        return LocalReflectionCall(method, index, self._max_bytes, timeout, observer)

    async def unary(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float
    ) -> UnaryResult:
        async with self._call(method, timeout) as call:
            await call.write(request)
            await call.done_writing()
            response = await call.response()
        return UnaryResult(response, (), ())

    def server_stream(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float | None
    ) -> LocalReflectionCall:
        call = self._call(method, timeout)
        call.first_request = request
        return call

    def request_stream(
        self, method: MethodInfo, *, metadata: Metadata, timeout: float | None
    ) -> LocalReflectionCall:
        return self._call(method, timeout)

    def forget(self) -> None:
        """Nothing is prepared per method."""


class LocalReflectionCall:
    """One ServerReflectionInfo stream: a :class:`~grpc_bridge.upstream.api.StreamCall`."""

    def __init__(
        self,
        method: MethodInfo,
        index: asyncio.Future[ReflectionIndex],
        max_bytes: int,
        timeout: float | None,
        observer: CallObserver | None,
    ) -> None:
        #: The request of a server-streaming call, answered when the call starts.
        self.first_request: Message | None = None
        self._parse = method.output_class.FromString
        self._index = index
        self._max_bytes = max_bytes
        #: Made once the index is built.
        self._answers: StreamAnswers | None = None
        self._observer = observer
        #: Requests (grpcio-reflection's messages) to answer when read.
        self._pending: deque[Any] = deque()
        self._half_closed = False
        #: Ends the call once the answers before it are read (a bad request).
        self._failure: UpstreamError | None = None
        #: Ends the call at once (deadline, cancellation).
        self._abort: UpstreamError | None = None
        self._finished = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        index.add_done_callback(self._wake)
        self._timer = (
            None
            if timeout is None
            else asyncio.get_running_loop().call_later(max(timeout, 0.0), self._expire)
        )

    def _wake(self, _: object) -> None:
        self._readable.set()

    def _built(self) -> bool:
        """Whether the index is built, or failed to be (:meth:`_answer_next` says which)."""
        index = self._index
        if not index.done():
            return False
        if self._answers is None and not index.cancelled() and index.exception() is None:
            self._answers = StreamAnswers(index.result(), self._max_bytes)
        return True

    def _expire(self) -> None:
        self._end(UpstreamError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded"))

    def _end(self, error: UpstreamError) -> None:
        if not self.done:
            self._abort = error
            self._pending.clear()
            self._readable.set()
            self._writable.set()

    def _finish(self, code: int) -> None:
        self._finished = True
        if self._observer is not None:
            self._observer.finish(code)

    async def write(self, message: Message) -> bool:
        if self.done or self._half_closed or self._failure is not None:
            return False
        while len(self._pending) >= PENDING and self._abort is None:
            self._writable.clear()
            await self._writable.wait()
        if self._abort is not None or self._failure is not None:
            return False  # the requests after one that ends the call are dropped
        if self._observer is not None:
            self._observer.metrics.sent.inc()
        try:
            # Bytes on the binary protocols, a v1 or v1alpha message on JSON: one form.
            request = Request.FromString(message.SerializeToString())
        except DecodeError as exc:
            self._failure = UpstreamError(Code.INVALID_ARGUMENT, f"malformed request: {exc}")
            self._readable.set()
            return False
        self._pending.append(request)
        self._readable.set()
        return True

    def _answer_next(self) -> Message | None:
        """The answer to the oldest pending request; None when that request ends the call
        (``_failure`` is set, the requests after it dropped)."""
        answers = self._answers
        if answers is None:
            if self._index.cancelled():
                self._failure = UpstreamError(Code.UNAVAILABLE, "the bridge is stopping")
            else:
                self._failure = UpstreamError(Code.INTERNAL, "the reflection index was not built")
            self._pending.clear()
            self._writable.set()
            return None
        request = self._pending.popleft()
        self._writable.set()
        try:
            answer = answers.answer(request)
        except InvalidRequest as exc:
            self._failure = UpstreamError(exc.code, str(exc))
            self._pending.clear()
            return None
        return self._parse(answer.SerializeToString())

    async def done_writing(self) -> None:
        self._half_closed = True
        self._readable.set()

    async def read(self) -> Message | None:
        while True:
            if self._abort is not None:
                raise self._failed(self._abort)
            if self._pending and not self._built():
                self._readable.clear()
                await self._readable.wait()
                continue
            if self._pending:
                message = self._answer_next()
                if message is None:
                    continue
                if self._observer is not None:
                    self._observer.metrics.received.inc()
                return message
            if self._failure is not None:
                raise self._failed(self._failure)
            if self._half_closed:
                if not self._finished:
                    self._finish(Code.OK)
                return None
            self._readable.clear()
            await self._readable.wait()

    def _failed(self, error: UpstreamError) -> UpstreamError:
        if not self._finished:
            self._finish(error.code)
        return error

    def read_buffered(self, limit: int, max_bytes: int) -> list[Message]:
        out: list[Message] = []
        size = 0
        while (
            self._pending
            and len(out) < limit
            and size < max_bytes
            and self._abort is None
            and self._built()
        ):
            message = self._answer_next()
            if message is None:
                break  # read() reports it
            size += message.ByteSize()
            out.append(message)
        if out and self._observer is not None:
            self._observer.metrics.received.inc(len(out))
        return out

    async def response(self) -> Message:
        first = await self.read()
        if first is None:
            raise self._failed(UpstreamError(Code.INTERNAL, "no response to the request"))
        self._finish(Code.OK)
        return first

    async def initial_metadata(self) -> Metadata:
        return []

    async def trailing_metadata(self) -> Metadata:
        return []

    @property
    def done(self) -> bool:
        if self._abort is not None or self._finished:
            return True
        return not self._pending and (self._failure is not None or self._half_closed)

    def cancel(self) -> None:
        self._end(UpstreamError(Code.CANCELLED, "Cancelled"))

    async def __aenter__(self) -> LocalReflectionCall:
        request = self.first_request
        if request is not None:
            self.first_request = None
            await self.write(request)
            await self.done_writing()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._index.remove_done_callback(self._wake)
        if self._timer is not None:
            self._timer.cancel()
        if not self._finished:
            code = Code.CANCELLED if exc is not None or not self.done else Code.OK
            if self._abort is not None:
                code = Code(self._abort.code)
            elif self._failure is not None:
                code = Code(self._failure.code)
            self._finish(code)
        self._end(UpstreamError(Code.CANCELLED, "Cancelled"))
