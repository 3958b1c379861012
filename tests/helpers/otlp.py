"""Real OTLP receivers for the tracing tests: OTLP/gRPC and OTLP/HTTP, decoding the
``opentelemetry-proto`` messages the bridge's exporters send.

Both keep what they received as flat :class:`ReceivedSpan` records; a test
waits for the spans it expects with :meth:`Receiver.wait_for`.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR
STATUS_UNSET = trace_pb2.Status.STATUS_CODE_UNSET


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource: dict[str, Any]


@dataclass
class Receiver:
    """The spans one receiver got, in arrival order, and the protocol they came by."""

    protocol: str
    endpoint: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: Callable[[], Any] | None = None

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status_code=span.status.code,
                            status_message=span.status.message,
                            resource=resource,
                        )
                    )
        self._changed.set()

    async def wait_for(self, count: int, *, within: float = 20.0) -> list[ReceivedSpan]:
        """At least ``count`` spans (TimeoutError after ``within`` seconds)."""
        async with asyncio.timeout(within):
            while len(self.spans) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.spans)

    async def stop(self) -> None:
        if self._stop is not None:
            await self._stop()


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


async def start_grpc_receiver() -> Receiver:
    """An OTLP/gRPC endpoint (``opentelemetry.proto.collector.trace.v1.TraceService``)."""
    receiver = Receiver("grpc")
    server = grpc.aio.server(options=(("grpc.so_reuseport", 0),))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(receiver), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    receiver.endpoint = f"http://127.0.0.1:{port}"

    async def stop() -> None:
        await server.stop(None)

    receiver._stop = stop
    return receiver


async def start_http_receiver() -> Receiver:
    """An OTLP/HTTP endpoint: ``POST /v1/traces`` with a protobuf ExportTraceServiceRequest."""
    receiver = Receiver("http/protobuf")

    async def export(request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text=f"not protobuf: {request.content_type}")
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        receiver.add(message)
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    port = server.sockets[0].getsockname()[1]
    receiver.endpoint = f"http://127.0.0.1:{port}"
    receiver._stop = runner.cleanup
    return receiver
