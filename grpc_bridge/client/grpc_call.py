"""The command-line client's calls over grpc.aio, with grpc's errors translated at this seam.

:class:`GrpcStreamCall` wraps a grpc.aio call of any kind behind the
:class:`~grpc_bridge.upstream.api.StreamCall` interface, and
:class:`ChannelInvoker` is a :class:`~grpc_bridge.upstream.api.CallInvoker`
over one channel (server reflection asks through it), so the client sees
failures as the bridge does: :class:`~grpc_bridge.errors.UpstreamError` with
the code, message, details trailer and both metadata sets.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message

from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.api import STATUS_DETAILS_KEY, UnaryResult
from grpc_bridge.upstream.metadata import Metadata

__all__ = ["ChannelInvoker", "GrpcStreamCall", "translate"]


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
    """A started grpc.aio call; the interface of :class:`~grpc_bridge.upstream.api.StreamCall`."""

    __slots__ = ("_call",)

    def __init__(self, call: Any) -> None:
        self._call = call

    async def read(self) -> Message | None:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc
        if message is grpc.aio.EOF:
            return None
        assert isinstance(message, Message)
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
        return True

    async def done_writing(self) -> None:
        # A failure here is reported by the reading side, as for write().
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self._call.done_writing()

    async def response(self) -> Message:
        """The one response of a unary or client-streaming call."""
        try:
            message = await self._call
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc
        assert isinstance(message, Message)
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
        if not self._call.done():
            self._call.cancel()


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class ChannelInvoker:
    """A :class:`~grpc_bridge.upstream.api.CallInvoker` over one grpc.aio channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    def multi_callable(self, method: MethodInfo) -> Any:
        factory = {
            MethodKind.UNARY: self.channel.unary_unary,
            MethodKind.SERVER_STREAM: self.channel.unary_stream,
            MethodKind.CLIENT_STREAM: self.channel.stream_unary,
            MethodKind.BIDI_STREAM: self.channel.stream_stream,
        }[method.kind]
        return factory(
            method.path,
            request_serializer=_serialize,
            response_deserializer=method.output_class.FromString,
        )

    async def unary(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float
    ) -> UnaryResult:
        call = GrpcStreamCall(
            self.multi_callable(method)(request, metadata=metadata, timeout=timeout)
        )
        async with call:
            response = await call.response()
            return UnaryResult(
                response, await call.initial_metadata(), await call.trailing_metadata()
            )

    def server_stream(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float | None
    ) -> GrpcStreamCall:
        return GrpcStreamCall(
            self.multi_callable(method)(request, metadata=metadata, timeout=timeout)
        )

    def request_stream(
        self, method: MethodInfo, *, metadata: Metadata, timeout: float | None
    ) -> GrpcStreamCall:
        # No request iterator: grpc.aio's reader/writer style.
        return GrpcStreamCall(self.multi_callable(method)(metadata=metadata, timeout=timeout))

    def forget(self) -> None:
        """Nothing is cached per method."""
