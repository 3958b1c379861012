"""The invoker on the native HTTP/2 client: same interface as the grpc.aio one.

Per method, the ``:path`` field and the response parser are prepared once;
per call the header block is the pool's prefix, the method's path, fixed
fields, ``grpc-timeout`` and the metadata, joined once.

Retries of unary calls follow gRPC's A6 retry policy as the grpc.aio invoker
configures it: UNAVAILABLE is retried up to ``retries.max_attempts`` with
exponential backoff and jitter, only while the upstream has not sent response
headers (the call is not committed), under a token-bucket throttle; a call the
upstream never saw (refused stream, GOAWAY above it) is retried once more,
transparently, whatever the policy.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from google.protobuf.message import DecodeError, Message

from grpc_bridge import __version__
from grpc_bridge.discovery.registry import MethodInfo
from grpc_bridge.errors import UpstreamError
from grpc_bridge.metrics import Metrics
from grpc_bridge.settings import Upstream
from grpc_bridge.status import Code
from grpc_bridge.upstream.api import CallObserver, UnaryResult, observe
from grpc_bridge.upstream.h2 import frames, hpack_codec
from grpc_bridge.upstream.h2.connection import Connection, ConnectionClosed, HeadersTooLarge
from grpc_bridge.upstream.h2.stream import MessageError, Status, Stream
from grpc_bridge.upstream.metadata import Metadata
from grpc_bridge.upstream.native_pool import ConnectDeadline, NativePool, Unreachable

_USER_AGENT = f"grpc-bridge/{__version__} (native http2)"
#: Messages above this are gzipped on a worker thread: ~1 ms of deflate on the loop at most.
_OFF_LOOP_BYTES = 64 * 1024


def _fixed_fields(compression: str) -> bytes:
    fields = (
        hpack_codec.content_type(b"application/grpc")
        + hpack_codec.literal(b"te", b"trailers")
        + hpack_codec.user_agent(_USER_AGENT)
        + hpack_codec.literal(b"grpc-accept-encoding", b"identity,deflate,gzip")
    )
    if compression == "gzip":
        fields += hpack_codec.literal(b"grpc-encoding", b"gzip")
    return fields


def grpc_timeout(seconds: float) -> bytes:
    """The ``grpc-timeout`` value: at most 8 digits, rounded up so the upstream never gets more."""
    millis = math.ceil(seconds * 1000)
    if millis < 100_000_000:
        return b"%dm" % max(millis, 1)
    return b"%dS" % math.ceil(seconds)


def _metadata_block(metadata: Metadata) -> bytes:
    parts = []
    for name, value in metadata:
        if isinstance(value, bytes):
            data = base64.b64encode(value).rstrip(b"=")
        else:
            data = value.encode("ascii")
        parts.append(hpack_codec.literal(name.encode("ascii"), data))
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class _Prepared:
    path: bytes
    parse: Callable[[bytes], Message]


class _Throttle:
    """A6 retryThrottling: retries stop while tokens <= max_tokens / 2."""

    __slots__ = ("_max", "_ratio", "_tokens")

    def __init__(self, max_tokens: int, ratio: float) -> None:
        self._max = float(max_tokens)
        self._ratio = ratio
        self._tokens = float(max_tokens)

    def failed(self) -> bool:
        """Count a retryable failure; True when a retry is allowed."""
        self._tokens = max(0.0, self._tokens - 1)
        return self._tokens > self._max / 2

    def succeeded(self) -> None:
        self._tokens = min(self._max, self._tokens + self._ratio)


def _error(status: Status, stream: Stream | None) -> UpstreamError:
    return UpstreamError(
        status.code,
        status.message,
        details_bin=status.details_bin,
        initial_metadata=stream.initial_metadata() if stream is not None else (),
        trailing_metadata=stream.trailing_metadata() if stream is not None else (),
    )


def _pushback_s(stream: Stream | None) -> float | None:
    """A6 ``grpc-retry-pushback-ms``: seconds to wait, -1 for "do not retry", None if absent."""
    if stream is None or stream.trailers is None:
        return None
    for name, value in stream.trailers:
        if name == "grpc-retry-pushback-ms":
            return int(value) / 1000 if value.isdigit() else -1.0
    return None


def _expire(stream: Stream) -> None:
    if stream.status is None:
        stream.connection.reset(
            stream, frames.CANCEL, Status(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
        )


class NativeInvoker:
    def __init__(self, pool: NativePool, metrics: Metrics | None = None) -> None:
        self._pool = pool
        self._metrics = metrics
        self._settings: Upstream = pool.upstream
        self._fixed = _fixed_fields(pool.upstream.compression)
        self._gzip = pool.upstream.compression == "gzip"
        self._max_send = pool.upstream.max_send_message_bytes
        self._prepared_methods: dict[tuple[str, type[Message]], _Prepared] = {}
        retries = pool.upstream.retries
        self._throttle = _Throttle(retries.throttle.max_tokens, retries.throttle.token_ratio)

    def forget(self) -> None:
        self._prepared_methods.clear()

    def _prepare(self, method: MethodInfo) -> _Prepared:
        key = (method.path, method.output_class)
        prepared = self._prepared_methods.get(key)
        if prepared is None:
            prepared = _Prepared(hpack_codec.path(method.path), method.output_class.FromString)
            self._prepared_methods[key] = prepared
        return prepared

    def _block(self, prepared: _Prepared, metadata: Metadata, timeout: float | None) -> bytes:
        parts = [self._pool.header_prefix, prepared.path, self._fixed]
        if timeout is not None:
            parts.append(hpack_codec.literal(b"grpc-timeout", grpc_timeout(timeout)))
        if metadata:
            parts.append(_metadata_block(metadata))
        return b"".join(parts)

    async def frame_message(self, message: Message) -> bytes:
        """The 5-byte gRPC prefix and the message; raises UpstreamError when it is too big.

        A large message is compressed on a worker thread (deflate runs at tens
        of MB/s: a 4 MiB message would hold the loop for ~100 ms).
        """
        payload = message.SerializeToString()
        if len(payload) > self._max_send:
            raise UpstreamError(
                Code.RESOURCE_EXHAUSTED,
                f"request message of {len(payload)} bytes is over "
                f"max_send_message_bytes ({self._max_send})",
            )
        if self._gzip:
            if len(payload) > _OFF_LOOP_BYTES:
                loop = asyncio.get_running_loop()
                payload = await loop.run_in_executor(None, gzip.compress, payload, 6)
            else:
                payload = gzip.compress(payload, compresslevel=6)
            return b"\x01" + len(payload).to_bytes(4, "big") + payload
        return b"\x00" + len(payload).to_bytes(4, "big") + payload

    async def unary(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float
    ) -> UnaryResult:
        prepared = self._prepare(method)
        observer = observe(self._metrics, method)
        try:
            data = await self.frame_message(request)
            stream = await self._unary_call(prepared, data, metadata, timeout)
            status = stream.status
            assert status is not None
            if status.code != Code.OK:
                raise _error(status, stream)
            response = await self._single_response(stream, prepared)
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

    @staticmethod
    async def _single_response(stream: Stream, prepared: _Prepared) -> Message:
        messages = stream.messages
        if len(messages) != 1:
            raise _error(
                Status(
                    Code.INTERNAL if messages else Code.UNIMPLEMENTED,
                    f"upstream sent {len(messages)} response messages to a unary call",
                ),
                stream,
            )
        try:
            # A large compressed message is inflated on a worker thread.
            return prepared.parse(await stream.inflated(messages[0]))
        except MessageError as exc:
            raise _error(exc.status, stream) from exc
        except DecodeError as exc:
            raise _error(
                Status(Code.INTERNAL, f"cannot parse the upstream's response: {exc}"), stream
            ) from exc

    async def _unary_call(
        self, prepared: _Prepared, data: bytes, metadata: Metadata, timeout: float
    ) -> Stream:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        retries = self._settings.retries
        attempt = 0
        backoff_step = 0
        transparent = True
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UpstreamError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
            stream = None
            try:
                connection = await self._pool.connection(deadline)
                block = self._block(prepared, metadata, remaining)
                if attempt > 1:
                    block += hpack_codec.literal(
                        b"grpc-previous-rpc-attempts", b"%d" % (attempt - 1)
                    )
                stream = connection.open_stream(block, data, True)
            except ConnectDeadline:
                status = Status(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
            except HeadersTooLarge as exc:
                status = Status(Code.INTERNAL, str(exc))
            except (Unreachable, ConnectionClosed) as exc:
                status = Status(Code.UNAVAILABLE, str(exc), unprocessed=True)
            else:
                status = await self._await_status(stream, deadline, loop)
            if status.code == Code.OK:
                self._throttle.succeeded()
                assert stream is not None
                return stream
            if status.unprocessed and transparent and stream is not None:
                # Never reached the upstream's application: once more, free.
                transparent = False
                attempt -= 1
                continue
            if status.code != Code.UNAVAILABLE or retries.max_attempts <= 1:
                break
            # A6: every failure with a retryable code costs a token, committed or not.
            allowed = self._throttle.failed()
            committed = stream is not None and stream.headers is not None
            if committed or not allowed or attempt >= retries.max_attempts:
                break
            pushback = _pushback_s(stream)
            if pushback is None:
                backoff = min(
                    retries.initial_backoff_s * retries.backoff_multiplier**backoff_step,
                    retries.max_backoff_s,
                )
                delay = random.uniform(0, backoff)
                backoff_step += 1
            elif pushback < 0:
                break  # the upstream said not to retry
            else:
                delay, backoff_step = pushback, 0
            if loop.time() + delay >= deadline:
                break
            await asyncio.sleep(delay)
        raise _error(status, stream)

    @staticmethod
    async def _await_status(
        stream: Stream, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> Status:
        timer = loop.call_at(deadline, _expire, stream)
        try:
            return await stream.wait_closed()
        except asyncio.CancelledError:
            stream.connection.reset(stream, frames.CANCEL)
            raise
        finally:
            timer.cancel()

    def server_stream(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float | None
    ) -> NativeStreamCall:
        observer = observe(self._metrics, method)
        if observer is not None:
            observer.metrics.sent.inc()
        return NativeStreamCall(self, self._prepare(method), metadata, timeout, request, observer)

    def request_stream(
        self, method: MethodInfo, *, metadata: Metadata, timeout: float | None
    ) -> NativeStreamCall:
        assert method.kind.client_streams, method.kind
        return NativeStreamCall(
            self,
            self._prepare(method),
            metadata,
            timeout,
            None,
            observe(self._metrics, method),
        )

    async def open(
        self, prepared: _Prepared, metadata: Metadata, timeout: float | None, data: bytes | None
    ) -> tuple[Connection, Stream, asyncio.TimerHandle | None]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            connection: Connection = await self._pool.connection(deadline)
            stream = connection.open_stream(
                self._block(prepared, metadata, timeout), data, data is not None
            )
        except ConnectDeadline as exc:
            raise UpstreamError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded") from exc
        except HeadersTooLarge as exc:
            raise UpstreamError(Code.INTERNAL, str(exc)) from exc
        except (Unreachable, ConnectionClosed) as exc:
            raise UpstreamError(Code.UNAVAILABLE, str(exc)) from exc
        timer = None if deadline is None else loop.call_at(deadline, _expire, stream)
        return connection, stream, timer


class NativeStreamCall:
    """A streaming call on the native client; the interface of ``api.StreamCall``.

    The stream is opened when first used (``async with`` does it), because
    finding a connection may wait for one to connect.
    """

    __slots__ = (
        "_connection",
        "_error",
        "_invoker",
        "_metadata",
        "_observer",
        "_prepared",
        "_request",
        "_stream",
        "_timeout",
        "_timer",
    )

    def __init__(
        self,
        invoker: NativeInvoker,
        prepared: _Prepared,
        metadata: Metadata,
        timeout: float | None,
        request: Message | None,
        observer: CallObserver | None,
    ) -> None:
        self._invoker = invoker
        self._prepared = prepared
        self._metadata = metadata
        self._timeout = timeout
        #: The request of a server-streaming call, framed when the stream opens.
        self._request = request
        self._observer = observer
        self._error: UpstreamError | None = None
        self._connection: Connection | None = None
        self._stream: Stream | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def _start(self) -> Stream | None:
        if self._stream is None and self._error is None:
            try:
                request = self._request
                data = None if request is None else await self._invoker.frame_message(request)
                self._connection, self._stream, self._timer = await self._invoker.open(
                    self._prepared, self._metadata, self._timeout, data
                )
            except UpstreamError as exc:
                self._error = exc
        return self._stream

    def _failed(self, error: UpstreamError) -> UpstreamError:
        if self._observer is not None:
            self._observer.finish(error.code)
        return error

    def _status_error(self, stream: Stream) -> UpstreamError | None:
        status = stream.status
        if status is None or status.code == Code.OK:
            return None
        return _error(status, stream)

    async def read(self) -> Message | None:
        stream = await self._start()
        if stream is None:
            assert self._error is not None
            raise self._failed(self._error)
        data = await stream.next_message()
        if data is None:
            error = self._status_error(stream)
            if error is not None:
                raise self._failed(error)
            if self._observer is not None:
                self._observer.finish(Code.OK)
            return None
        try:
            message = self._prepared.parse(data)
        except DecodeError as exc:
            stream.connection.reset(stream, frames.CANCEL)
            raise self._failed(
                _error(Status(Code.INTERNAL, f"cannot parse the upstream's message: {exc}"), stream)
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
            data = await self._invoker.frame_message(message)
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
        stream = await self._start()
        if stream is None:
            assert self._error is not None
            raise self._failed(self._error)
        status = await stream.wait_closed()
        if status.code != Code.OK:
            raise self._failed(_error(status, stream))
        try:
            message = await NativeInvoker._single_response(stream, self._prepared)
        except UpstreamError as exc:
            raise self._failed(exc) from None
        if self._observer is not None:
            self._observer.metrics.received.inc()
            self._observer.finish(Code.OK)
        return message

    async def initial_metadata(self) -> Metadata:
        stream = await self._start()
        if stream is None:
            return []
        await stream.wait_headers()
        return list(stream.initial_metadata())

    async def trailing_metadata(self) -> Metadata:
        stream = await self._start()
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

    async def __aenter__(self) -> NativeStreamCall:
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
        observer = self._observer
        if observer is not None and not observer.done:
            if cancelled or exc is not None:
                observer.finish(Code.CANCELLED)
            elif self._error is not None:
                observer.finish(self._error.code)
            else:
                status = stream.status if stream is not None else None
                observer.finish(status.code if status is not None else Code.UNKNOWN)
