"""The tracer provider of this process, made from a resolved :class:`TraceConfig`.

One per process: with ``--workers N`` each worker runs app.start() and makes
its own (a provider's exporter thread does not survive a fork, and each
worker's spans are its own). Spans leave through a BatchSpanProcessor, so a
request never waits for the collector; :meth:`Tracing.shutdown` flushes what
is queued when the bridge stops (after the SIGTERM drain).

The provider is not installed as OpenTelemetry's global one: the bridge's own
spans go through the tracer handed to the middleware and the invoker
wrappers, and nothing else in the process is affected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp.typedefs import Middleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Tracer

from grpc_bridge import __version__
from grpc_bridge.settings import Upstream
from grpc_bridge.tracing.client import TracedInvoker
from grpc_bridge.tracing.config import TraceConfig
from grpc_bridge.tracing.server import server_span_middleware
from grpc_bridge.upstream.api import CallInvoker

#: How long the spans still queued at shutdown may take to leave.
FLUSH_TIMEOUT_S = 5.0

_SAMPLERS: dict[str, Callable[[float], Sampler]] = {
    "always_on": lambda _: ALWAYS_ON,
    "always_off": lambda _: ALWAYS_OFF,
    "traceidratio": TraceIdRatioBased,
    "parentbased_always_on": lambda _: ParentBased(ALWAYS_ON),
    "parentbased_always_off": lambda _: ParentBased(ALWAYS_OFF),
    "parentbased_traceidratio": ParentBasedTraceIdRatio,
}


def _exporter(name: str, config: TraceConfig) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Imported only for the protocol in use: each pulls in its own transport.
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=config.endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=config.endpoint)


class Tracing:
    """The tracing hook app.py wires in: the server middleware, the invoker wrapper, shutdown."""

    def __init__(self, config: TraceConfig) -> None:
        self.config = config
        rate = 1.0 if config.sampler_arg is None else config.sampler_arg
        self._provider = TracerProvider(
            sampler=_SAMPLERS[config.sampler](rate),
            resource=Resource.create(dict(config.resource)),
        )
        for name in config.exporters:
            self._provider.add_span_processor(BatchSpanProcessor(_exporter(name, config)))
        self.tracer: Tracer = self._provider.get_tracer("grpc_bridge", __version__)

    def middleware(self) -> Middleware:
        return server_span_middleware(self.tracer)

    def wrap_invoker(self, upstream: Upstream, invoker: CallInvoker) -> CallInvoker:
        return TracedInvoker(invoker, self.tracer, upstream)

    async def shutdown(self) -> None:
        """Export what is queued, then stop (the exporters block: off the event loop).

        The flush is bounded: a collector that is down must not hold the exit.
        """

        def flush_and_stop() -> None:
            self._provider.force_flush(int(FLUSH_TIMEOUT_S * 1000))
            self._provider.shutdown()

        await asyncio.to_thread(flush_and_stop)
