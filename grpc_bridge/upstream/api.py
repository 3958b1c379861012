"""The upstream API: what the rest of the bridge calls an upstream through.

Owned by no transport: the HTTP layer, tracing, discovery and health checks
see only these types, whatever HTTP/2 client carries the call.

:class:`CallInvoker` starts calls. ``unary`` awaits the whole call; the
streaming kinds return a :class:`StreamCall` to use as ``async with``, so the
caller decides when to read and write (backpressure):

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

:class:`CallObserver` is the go-grpc-prometheus accounting every transport
does the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from google.protobuf.message import Message

from grpc_bridge.discovery.registry import MethodInfo
from grpc_bridge.status import Code
from grpc_bridge.upstream.metadata import Metadata

if TYPE_CHECKING:
    # Annotations only: a call needs no prometheus_client unless metrics are on.
    from grpc_bridge.metrics import MethodMetrics, Metrics

__all__ = [
    "STATUS_DETAILS_KEY",
    "CallInvoker",
    "CallObserver",
    "StreamCall",
    "UnaryResult",
    "observe",
]

#: The trailer carrying a serialized ``google.rpc.Status`` (the error details).
STATUS_DETAILS_KEY = "grpc-status-details-bin"


# Not frozen: made one per unary call, and a frozen dataclass's __init__ (object.__setattr__
# per field) costs ~5x a plain one's. Read-only by convention.
@dataclass(slots=True)
class UnaryResult:
    response: Message
    initial_metadata: Sequence[tuple[str, str | bytes]]
    trailing_metadata: Sequence[tuple[str, str | bytes]]


class StreamCall(Protocol):
    """A started streaming call of any kind; see the module docstring."""

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


class CallInvoker(Protocol):
    """What the bridge calls an upstream through; see the module docstring."""

    async def unary(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float
    ) -> UnaryResult: ...

    def server_stream(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float | None
    ) -> StreamCall:
        """A server-streaming call, request sent and half-closed; ``timeout=None``: no deadline."""
        ...

    def request_stream(
        self, method: MethodInfo, *, metadata: Metadata, timeout: float | None
    ) -> StreamCall:
        """A client-streaming or bidi call; the caller writes the requests and half-closes."""
        ...

    def forget(self) -> None:
        """Drop what was prepared per method (after a refresh changed the message classes)."""
        ...


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
