"""Calls one upstream with already-decoded messages; translates grpc errors at this seam.

Multi-callables are made once per (channel, method) and cached: creating them
per request would redo string and option work on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message

from grpc_bridge.discovery.registry import MethodInfo
from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.metadata import Metadata
from grpc_bridge.upstream.pool import ChannelPool

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class UnaryResult:
    response: Message
    initial_metadata: Sequence[tuple[str, str | bytes]]
    trailing_metadata: Sequence[tuple[str, str | bytes]]


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class Invoker:
    def __init__(self, pool: ChannelPool) -> None:
        self._pool = pool
        self._unary: dict[tuple[int, str], Callable[..., Any]] = {}

    def _unary_callable(self, method: MethodInfo) -> Callable[..., Any]:
        index, channel = self._pool.pick()
        key = (index, method.path)
        call = self._unary.get(key)
        if call is None:
            call = channel.unary_unary(
                method.path,
                request_serializer=_serialize,
                response_deserializer=method.output_class.FromString,
            )
            self._unary[key] = call
        return call

    async def unary(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float
    ) -> UnaryResult:
        call = self._unary_callable(method)(
            request, metadata=metadata, timeout=timeout, wait_for_ready=False
        )
        try:
            response = await call
            initial = await call.initial_metadata()
            trailing = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc
        return UnaryResult(response, tuple(initial or ()), tuple(trailing or ()))

    def forget(self) -> None:
        """Drop cached multi-callables (after a refresh changed the message classes)."""
        self._unary.clear()


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
