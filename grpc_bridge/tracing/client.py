"""The client span of each upstream call: a wrapper around an upstream's call invoker.

One span per call (OpenTelemetry RPC conventions: kind CLIENT, named
``package.Service/Method``, ``rpc.system=grpc``, ``rpc.service``,
``rpc.method``, ``rpc.grpc.status_code``, ``server.address``/``server.port``),
child of the current context (the server span of the HTTP request). Its
context replaces any ``traceparent``/``tracestate`` the request forwarded, so
the upstream's spans are children of this one. Each span counts the
messages it carried (``rpc.messages.sent``, ``rpc.messages.received``) and
ends with the call's status: any code but OK sets the span's status to ERROR
with the status message (for a client span every non-OK code is an error).

Wrapping, not changing, the invokers keeps the untraced path as it was:
app.py wraps them only when tracing is on.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from grpc_bridge.discovery.registry import MethodInfo
from grpc_bridge.errors import BridgeError, UpstreamError
from grpc_bridge.settings import Upstream
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.api import CallInvoker, StreamCall, UnaryResult
from grpc_bridge.upstream.metadata import Metadata

_TRACE_KEYS = ("traceparent", "tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()
_SENT = "rpc.messages.sent"
_RECEIVED = "rpc.messages.received"


def server_attributes(upstream: Upstream) -> dict[str, AttributeValue]:
    """``server.address``/``server.port`` of an upstream's first target (as configured)."""
    target = upstream.targets[0] if upstream.targets else ""
    # dns:///host:port, ipv4:host:port, [v6]:port: the last "host:port" of the target.
    target = target.rpartition("/")[2]
    if target.startswith(("ipv4:", "ipv6:")):
        target = target.partition(":")[2].split(",")[0]
    if target.startswith(("unix:", "unix-abstract:")):
        return {"server.address": target.partition(":")[2]}
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return {"server.address": target} if target else {}
    return {"server.address": host.strip("[]"), "server.port": int(port)}


def _end(span: Span, code: int, message: str | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code)
    if code != Code.OK:
        span.set_status(Status(StatusCode.ERROR, message or code_name(code)))
    span.end()


def _code_of(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, BridgeError):
        return exc.code, exc.message
    if isinstance(exc, asyncio.CancelledError):
        return Code.CANCELLED, "the call was cancelled (client gone or shutdown)"
    return Code.INTERNAL, repr(exc)


class TracedInvoker:
    """A :class:`~grpc_bridge.upstream.api.CallInvoker` whose calls each get a client span."""

    __slots__ = ("_base", "_inner", "_methods", "_tracer")

    def __init__(self, inner: CallInvoker, tracer: Tracer, upstream: Upstream) -> None:
        self._inner = inner
        self._tracer = tracer
        self._base: dict[str, AttributeValue] = {"rpc.system": "grpc"}
        self._base.update(server_attributes(upstream))
        #: Per method path: the span's attributes, made once.
        self._methods: dict[str, dict[str, AttributeValue]] = {}

    def _start(self, method: MethodInfo, metadata: Metadata) -> tuple[Span, Metadata]:
        attributes = self._methods.get(method.path)
        if attributes is None:
            attributes = {**self._base, "rpc.service": method.service, "rpc.method": method.name}
            self._methods[method.path] = attributes
        span = self._tracer.start_span(
            method.full_name, kind=SpanKind.CLIENT, attributes=attributes
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        # Ours replaces the request's: the upstream is the child of this call, not of
        # whoever called the bridge.
        out: Metadata = [(k, v) for k, v in metadata if k not in _TRACE_KEYS]
        out.extend(carrier.items())
        return span, out

    async def unary(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float
    ) -> UnaryResult:
        span, metadata = self._start(method, metadata)
        try:
            result = await self._inner.unary(method, request, metadata=metadata, timeout=timeout)
        except BaseException as exc:
            code, message = _code_of(exc)
            # The request went out unless the call never started (no channel: another
            # BridgeError, raised before anything was sent).
            sent = isinstance(exc, (UpstreamError, asyncio.CancelledError))
            span.set_attributes({_SENT: int(sent), _RECEIVED: 0})
            _end(span, code, message)
            raise
        span.set_attributes({_SENT: 1, _RECEIVED: 1})
        _end(span, Code.OK, None)
        return result

    def server_stream(
        self, method: MethodInfo, request: Message, *, metadata: Metadata, timeout: float | None
    ) -> StreamCall:
        span, metadata = self._start(method, metadata)
        try:
            call = self._inner.server_stream(method, request, metadata=metadata, timeout=timeout)
        except BaseException as exc:
            _end(span, *_code_of(exc))
            raise
        return TracedStreamCall(call, span, sent=1)

    def request_stream(
        self, method: MethodInfo, *, metadata: Metadata, timeout: float | None
    ) -> StreamCall:
        span, metadata = self._start(method, metadata)
        try:
            call = self._inner.request_stream(method, metadata=metadata, timeout=timeout)
        except BaseException as exc:
            _end(span, *_code_of(exc))
            raise
        return TracedStreamCall(call, span, sent=0)

    def forget(self) -> None:
        self._inner.forget()


class TracedStreamCall:
    """A streaming call whose span counts its messages and ends with its status."""

    __slots__ = ("_ended", "_inner", "_received", "_sent", "_span")

    def __init__(self, inner: StreamCall, span: Span, *, sent: int) -> None:
        self._inner = inner
        self._span = span
        self._sent = sent
        self._received = 0
        self._ended = False

    def _finish(self, code: int, message: str | None) -> None:
        if not self._ended:
            self._ended = True
            self._span.set_attributes({_SENT: self._sent, _RECEIVED: self._received})
            _end(self._span, code, message)

    async def read(self) -> Message | None:
        try:
            message = await self._inner.read()
        except BridgeError as exc:
            self._finish(exc.code, exc.message)
            raise
        if message is None:
            self._finish(Code.OK, None)
        else:
            self._received += 1
        return message

    def read_buffered(self, limit: int, max_bytes: int) -> list[Message]:
        out = self._inner.read_buffered(limit, max_bytes)
        self._received += len(out)
        return out

    async def write(self, message: Message) -> bool:
        written = await self._inner.write(message)
        if written:
            self._sent += 1
        return written

    async def done_writing(self) -> None:
        await self._inner.done_writing()

    async def response(self) -> Message:
        try:
            message = await self._inner.response()
        except BridgeError as exc:
            self._finish(exc.code, exc.message)
            raise
        self._received += 1
        self._finish(Code.OK, None)
        return message

    async def initial_metadata(self) -> Metadata:
        return await self._inner.initial_metadata()

    async def trailing_metadata(self) -> Metadata:
        return await self._inner.trailing_metadata()

    @property
    def done(self) -> bool:
        return self._inner.done

    def cancel(self) -> None:
        self._inner.cancel()

    async def __aenter__(self) -> TracedStreamCall:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._inner.__aexit__(exc_type, exc, tb)
        finally:
            # Ended before the upstream's status was read: the inner call cancelled it
            # (client gone, shutdown, a bad request message); no-op after a status.
            why = "" if exc is None else f": {exc!r}"
            self._finish(Code.CANCELLED, f"the call ended before its status was read{why}")
