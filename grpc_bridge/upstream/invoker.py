"""Calls one upstream with already-decoded messages; translates grpc errors at this seam.

Multi-callables are made once per (channel, method) and cached: creating them
per request would redo string and option work on the hot path.

``unary`` awaits the whole call. The streaming kinds return a started
:class:`~grpc_bridge.upstream.calls.StreamCall` to use as ``async with``, so
the caller decides when to read and write (backpressure) and the call is
cancelled whenever the caller stops early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc.aio
from google.protobuf.message import Message

from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.metrics import Metrics
from grpc_bridge.status import Code
from grpc_bridge.upstream.api import StreamCall, UnaryResult, observe
from grpc_bridge.upstream.calls import GrpcStreamCall, translate
from grpc_bridge.upstream.metadata import Metadata
from grpc_bridge.upstream.pool import ChannelPool

__all__ = ["Invoker"]


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class Invoker:
    def __init__(self, pool: ChannelPool, metrics: Metrics | None = None) -> None:
        self._pool = pool
        self._metrics = metrics
        self._callables: dict[tuple[int, str, type[Message]], Callable[..., Any]] = {}

    def _callable(self, method: MethodInfo) -> Callable[..., Any]:
        index, channel = self._pool.pick()
        # The class is part of the key: a request routed just before a refresh must
        # not put the old response class back under the same method path.
        key = (index, method.path, method.output_class)
        call = self._callables.get(key)
        if call is None:
            factory = {
                MethodKind.UNARY: channel.unary_unary,
                MethodKind.SERVER_STREAM: channel.unary_stream,
                MethodKind.CLIENT_STREAM: channel.stream_unary,
                MethodKind.BIDI_STREAM: channel.stream_stream,
            }[method.kind]
            call = factory(
                method.path,
                request_serializer=_serialize,
                response_deserializer=method.output_class.FromString,
            )
            self._callables[key] = call
        return call

    async def unary(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float
    ) -> UnaryResult:
        # Counted as started only once a channel was picked: pick() raises while shutting down.
        call = self._callable(method)(
            request, metadata=metadata, timeout=timeout, wait_for_ready=False
        )
        observer = observe(self._metrics, method)
        try:
            response = await call
            initial = await call.initial_metadata()
            trailing = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            error = translate(exc)
            if observer is not None:
                observer.unary_answered(error.code)
            raise error from exc
        except asyncio.CancelledError:
            if observer is not None:
                observer.finish(Code.CANCELLED)
            raise
        if observer is not None:
            observer.unary_answered(Code.OK)
        return UnaryResult(response, tuple(initial or ()), tuple(trailing or ()))

    def server_stream(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float | None
    ) -> StreamCall:
        """A server-streaming call, request sent and half-closed; ``timeout=None``: no deadline."""
        call = self._callable(method)(
            request, metadata=metadata, timeout=timeout, wait_for_ready=False
        )
        observer = observe(self._metrics, method)
        if observer is not None:
            observer.metrics.sent.inc()
        return GrpcStreamCall(call, observer)

    def request_stream(
        self, method: MethodInfo, *, metadata: Metadata, timeout: float | None
    ) -> StreamCall:
        """A client-streaming or bidi call; the caller writes the requests and half-closes."""
        assert method.kind.client_streams, method.kind
        # No request iterator: grpc.aio's reader/writer style, so each write
        # completes only once the message is handed to HTTP/2 flow control.
        call = self._callable(method)(metadata=metadata, timeout=timeout, wait_for_ready=False)
        return GrpcStreamCall(call, observe(self._metrics, method))

    def forget(self) -> None:
        """Drop cached multi-callables (after a refresh changed the message classes)."""
        self._callables.clear()
