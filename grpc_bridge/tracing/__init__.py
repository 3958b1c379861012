"""OpenTelemetry traces: an optional observer, created by the composition root (app.py).

Only :mod:`grpc_bridge.tracing.config` is imported while tracing is off: it
decides from the ``tracing:`` settings and the ``OTEL_*`` environment whether
tracing is on, without importing OpenTelemetry. The other modules import the
SDK (the ``otel`` extra) and are imported by app.py only when it is on:

- :mod:`~grpc_bridge.tracing.provider`: the tracer provider (resource,
  sampler, exporters behind a BatchSpanProcessor), one per process;
- :mod:`~grpc_bridge.tracing.server`: the server span of each HTTP request
  (an aiohttp middleware), its ids bound into the request's log line;
- :mod:`~grpc_bridge.tracing.client`: the client span of each upstream call
  (a wrapper around the upstream's call invoker), its context injected as the
  call's ``traceparent``.
"""
