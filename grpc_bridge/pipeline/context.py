"""Typed keys and the per-request context the canonical log line is made from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web
from google.protobuf.descriptor_pool import DescriptorPool

from grpc_bridge.bridge import Bridge
from grpc_bridge.metrics import Metrics
from grpc_bridge.pipeline.compress import ResponseCompression
from grpc_bridge.routing.table import UNMATCHED, Match


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    route: str = UNMATCHED
    grpc_method: str | None = None
    upstream: str | None = None
    grpc_code: str | None = None
    #: The wire protocol's name (grpc_bridge/protocol/): ``json``, ``grpc-web``, ``connect``.
    protocol: str = "json"
    framing: str | None = None
    bytes_in: int = 0
    error: str | None = None
    #: The upstream's pool once routed, to render error details of its types.
    pool: DescriptorPool | None = None
    metrics: Metrics | None = None
    stream_open: bool = False

    def record_match(self, match: Match) -> None:
        """The route and method a request matched, for the log line and metrics."""
        plan = match.plan
        self.route = match.route
        self.grpc_method = plan.full_name
        self.upstream = plan.upstream
        self.pool = plan.pool

    def open_stream(self, framing: str) -> None:
        """A response stream starts; counted in ``grpc_bridge_streams_open`` until it ends."""
        self.framing = framing
        if self.metrics is not None and not self.stream_open:
            self.stream_open = True
            self.metrics.stream_gauge(framing).inc()


BRIDGE = web.AppKey("bridge", Bridge)
METRICS = web.AppKey("metrics", Metrics)
CONTEXT = web.RequestKey("context", RequestContext)
#: True on a request that came on an HTTP/2 stream (edge/h2c_stream.py sets it). Not
#: ``request.version``: an HTTP/1.1 request line may say ``HTTP/2.0`` too.
OVER_HTTP2 = web.RequestKey("over_http2", bool)
#: The proxy listener's response compression (the admin listener has none).
COMPRESSION = web.AppKey("compression", ResponseCompression)
