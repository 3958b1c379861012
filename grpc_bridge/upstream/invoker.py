"""The invoker on the native HTTP/2 client: :class:`~grpc_bridge.upstream.api.CallInvoker`.

Per method, the ``:path`` field and the response parser are prepared once
(:mod:`~grpc_bridge.upstream.grpc_request`). Unary calls are retried as
:mod:`~grpc_bridge.upstream.retry` says; streaming calls are
:class:`~grpc_bridge.upstream.stream_call.Http2Call`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from google.protobuf.message import Message

from grpc_bridge.discovery.registry import MethodInfo
from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.api import UnaryResult, observe
from grpc_bridge.upstream.grpc_request import Prepared, RequestEncoder, previous_attempts
from grpc_bridge.upstream.h2 import frames, hpack_codec
from grpc_bridge.upstream.h2.connection import Connection, ConnectionClosed, HeadersTooLarge
from grpc_bridge.upstream.h2.inflate import Compressed
from grpc_bridge.upstream.h2.stream import Status, Stream
from grpc_bridge.upstream.metadata import Metadata
from grpc_bridge.upstream.pool import ConnectionPool
from grpc_bridge.upstream.retry import Attempts, Throttle
from grpc_bridge.upstream.slot import ConnectDeadline, Unreachable
from grpc_bridge.upstream.stream_call import (
    Deadlines,
    Http2Call,
    call_error,
    expire,
    parsed_response,
    single_message,
    single_response,
)

if TYPE_CHECKING:
    from grpc_bridge.metrics import Metrics

__all__ = ["Http2Call", "Invoker"]


class Invoker:
    def __init__(self, pool: ConnectionPool, metrics: Metrics | None = None) -> None:
        self._pool = pool
        self._metrics = metrics
        self._settings = pool.upstream
        self.encoder = RequestEncoder(pool.upstream)
        self._prepared_methods: dict[tuple[str, type[Message]], Prepared] = {}
        retries = pool.upstream.retries
        self._throttle = Throttle(retries.throttle.max_tokens, retries.throttle.token_ratio)
        self._deadlines = Deadlines()

    def forget(self) -> None:
        self._prepared_methods.clear()

    def _prepare(self, method: MethodInfo) -> Prepared:
        key = (method.path, method.output_class)
        prepared = self._prepared_methods.get(key)
        if prepared is None:
            prepared = Prepared(hpack_codec.path(method.path), method.output_class.FromString)
            self._prepared_methods[key] = prepared
        return prepared

    async def unary(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float
    ) -> UnaryResult:
        prepared = self._prepare(method)
        # Counted as started only with connections to start it on.
        self._pool.check_open()
        observer = observe(self._metrics, method)
        try:
            # Each step awaited only when it must wait: a coroutine per call fewer each.
            data = self.encoder.frame_now(request)
            if data is None:
                data = await self.encoder.frame(request)
            stream = await self._unary_call(prepared, data, metadata, timeout)
            try:
                status = stream.status
                assert status is not None
                if status.code != Code.OK:
                    raise call_error(status, stream)
                message = single_message(stream)
                if type(message) is Compressed:
                    response = await single_response(stream, prepared)
                else:
                    response = parsed_response(stream, prepared, message)
            finally:
                stream.release()  # (its message, counted in its client's budget till now)
        except UpstreamError as exc:
            if observer is not None:
                observer.unary_answered(exc.code)
            raise
        except asyncio.CancelledError:
            if observer is not None:
                observer.finish(Code.CANCELLED)
            raise
        if observer is not None:
            observer.unary_answered(Code.OK)
        return UnaryResult(response, stream.initial_metadata(), stream.trailing_metadata())

    async def _unary_call(
        self, prepared: Prepared, data: bytes, metadata: Metadata, timeout: float
    ) -> Stream:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        attempts: Attempts | None = None
        before = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UpstreamError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
            stream = None
            try:
                pool = self._pool
                slot = pool.pick()
                connection = pool.ready_now(slot) or await pool.connection_of(slot, deadline)
                block = self.encoder.block(self._pool.header_prefix, prepared, metadata, remaining)
                if before:
                    block += previous_attempts(before)
                stream = connection.open_stream(block, data, True)
            except ConnectDeadline:
                status = Status(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
            except HeadersTooLarge as exc:
                status = Status(Code.INTERNAL, str(exc))
            except (Unreachable, ConnectionClosed) as exc:
                status = Status(Code.UNAVAILABLE, str(exc), unprocessed=True)
            else:
                # The deadline's timer, inline: one coroutine fewer per call.
                deadlines = self._deadlines
                key = deadlines.add(stream, deadline, loop)
                try:
                    status = await stream.wait_closed()
                except asyncio.CancelledError:
                    stream.connection.reset(stream, frames.CANCEL)
                    stream.release()
                    raise
                finally:
                    deadlines.remove(stream, key)
            if status.code == Code.OK:
                self._throttle.succeeded()
                assert stream is not None
                return stream
            if stream is not None:
                # A failed attempt's messages go with it: out of its client's budget (an
                # h2c connection's calls share one: upstream/client_budget.py).
                stream.release()
            if attempts is None:
                attempts = Attempts(self._settings, self._throttle)
            if attempts.transparent(status, stream):
                continue
            delay = attempts.delay(status, stream)
            if delay is None or loop.time() + delay >= deadline:
                break
            await asyncio.sleep(delay)
            before = attempts.next()
        raise call_error(status, stream)

    def server_stream(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float | None
    ) -> Http2Call:
        self._pool.check_open()
        observer = observe(self._metrics, method)
        if observer is not None:
            observer.metrics.sent.inc()
        return Http2Call(self, self._prepare(method), metadata, timeout, request, observer)

    def request_stream(
        self, method: MethodInfo, *, metadata: Metadata, timeout: float | None
    ) -> Http2Call:
        assert method.kind.client_streams, method.kind
        self._pool.check_open()
        return Http2Call(
            self,
            self._prepare(method),
            metadata,
            timeout,
            None,
            observe(self._metrics, method),
        )

    async def open(
        self, prepared: Prepared, metadata: Metadata, deadline: float | None, data: bytes | None
    ) -> tuple[Connection, Stream, asyncio.TimerHandle | None]:
        """A new stream of a streaming call, the request sent when ``data`` is given.

        ``deadline`` is the loop's time the call must end by (None: none).
        """
        loop = asyncio.get_running_loop()
        timeout = None if deadline is None else deadline - loop.time()
        try:
            if timeout is not None and timeout <= 0:
                raise ConnectDeadline("deadline passed before the call could start")
            connection: Connection = await self._pool.connection(deadline)
            block = self.encoder.block(self._pool.header_prefix, prepared, metadata, timeout)
            stream = connection.open_stream(block, data, data is not None)
        except ConnectDeadline as exc:
            raise UpstreamError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded") from exc
        except HeadersTooLarge as exc:
            raise UpstreamError(Code.INTERNAL, str(exc)) from exc
        except (Unreachable, ConnectionClosed) as exc:
            raise UpstreamError(Code.UNAVAILABLE, str(exc)) from exc
        timer = None if deadline is None else loop.call_at(deadline, expire, stream)
        return connection, stream, timer
