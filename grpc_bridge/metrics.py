"""Every metric the bridge exports, declared in one place on a registry the app owns.

The gRPC client metrics use go-grpc-prometheus' names and labels
(``grpc_client_started_total`` ...) so existing dashboards work unchanged.
Label values come only from discovered methods and route templates: an
unknown path is counted as ``unmatched``, never by its raw path.

Hot-path cost: label children are bound once per method / route and cached,
because ``labels()`` hashes and validates its arguments on every call. The
per-request series (the gRPC client ones, the HTTP request counter, duration
histogram and in-flight gauge) are not prometheus-client metrics but the
lock-free series of :mod:`.metric_series`, exposed exactly alike.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from grpc_bridge import __version__
from grpc_bridge.discovery.registry import MethodInfo
from grpc_bridge.metric_series import (
    FastCounter,
    FastCounterChild,
    FastGauge,
    FastHistogram,
    FastHistogramChild,
)
from grpc_bridge.status import code_name

# go-grpc-prometheus uses prometheus.DefBuckets.
GRPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

#: Framings of open streams, for ``grpc_bridge_streams_open``.
FRAMINGS = ("ndjson", "sse", "websocket", "grpc-web")

#: Why the bridge refused a request itself, for ``grpc_bridge_rejected_requests_total``.
#: Wire protocols (grpc_bridge/protocol/), pre-created so rates by protocol read 0.
WIRE_PROTOCOLS = ("json", "grpc-web", "connect")
REJECT_REASONS = (
    "unknown_route",
    "method_not_allowed",
    "unsupported_media_type",
    "body_too_large",
    "metadata_too_large",
    "bad_header",
    "bad_timeout",
    "bad_request",
    "upstream_not_ready",
    "origin_not_allowed",
    "malformed_request",
    "head_too_large",
    "not_acceptable",
    "body_timeout",
)


@dataclass
class MethodMetrics:
    """go-grpc-prometheus series of one method, bound once."""

    started: FastCounterChild
    sent: FastCounterChild
    received: FastCounterChild
    handling: FastHistogramChild
    _handled: Callable[[str], FastCounterChild]
    _by_code: dict[int, FastCounterChild] = field(default_factory=dict)

    def handled(self, code: int) -> FastCounterChild:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._handled(code_name(code))
        return child


@dataclass
class RouteMetrics:
    duration: FastHistogramChild
    _requests: Callable[[str, str], FastCounterChild]
    _by_key: dict[tuple[str, int], FastCounterChild] = field(default_factory=dict)

    def request(self, http_method: str, status: int) -> FastCounterChild:
        key = (http_method, status // 100)
        child = self._by_key.get(key)
        if child is None:
            child = self._by_key[key] = self._requests(http_method, f"{status // 100}xx")
        return child


def _version(package: str) -> str:
    """An installed package's version, read without importing it (the bridge itself
    runs no grpcio, nor does the CLI: the label says what the demo server uses)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The per-request series: lock-free, see the module docstring.
        self.grpc_started = FastCounter(
            "grpc_client_started", "RPCs started on the client.", GRPC_LABELS, r
        )
        self.grpc_handled = FastCounter(
            "grpc_client_handled",
            "RPCs completed on the client, regardless of success or failure.",
            (*GRPC_LABELS, "grpc_code"),
            r,
        )
        self.grpc_msg_received = FastCounter(
            "grpc_client_msg_received",
            "RPC stream messages received by the client.",
            GRPC_LABELS,
            r,
        )
        self.grpc_msg_sent = FastCounter(
            "grpc_client_msg_sent",
            "gRPC stream messages sent by the client.",
            GRPC_LABELS,
            r,
        )
        self.grpc_handling = FastHistogram(
            "grpc_client_handling_seconds",
            "Histogram of response latency (seconds) of the gRPC until it is finished.",
            GRPC_LABELS,
            r,
            buckets=GRPC_BUCKETS,
        )
        self.http_requests = FastCounter(
            "grpc_bridge_http_requests",
            "HTTP requests by route template, HTTP method and status class.",
            ("route", "method", "status_class"),
            r,
        )
        self.http_duration = FastHistogram(
            "grpc_bridge_http_request_duration_seconds",
            "HTTP request duration by route template (to the end of the response).",
            ("route",),
            r,
            buckets=HTTP_BUCKETS,
        )
        self.http_in_flight = FastGauge(
            "grpc_bridge_http_requests_in_flight", "HTTP requests being served.", r
        )
        self.protocol_requests = FastCounter(
            "grpc_bridge_protocol_requests",
            "HTTP requests by wire protocol (json, grpc-web, connect).",
            ("protocol",),
            r,
        )
        self.streams_open = Gauge(
            "grpc_bridge_streams_open",
            "Open response streams by framing.",
            ("framing",),
            registry=r,
        )
        self.discovery_refreshes = Counter(
            "grpc_bridge_discovery_refreshes",
            "Discovery runs by upstream and result (success, failure).",
            ("upstream", "result"),
            registry=r,
        )
        self.rejected = Counter(
            "grpc_bridge_rejected_requests",
            "Requests the bridge refused itself, by reason.",
            ("reason",),
            registry=r,
        )
        self.upstream_http2_errors = Counter(
            "grpc_bridge_upstream_http2_errors",
            "Upstream HTTP/2 connections the bridge closed for a protocol violation or abuse, "
            "by upstream and the HTTP/2 error code of its GOAWAY.",
            ("upstream", "code"),
            registry=r,
        )
        self.draining = Gauge(
            "grpc_bridge_draining", "1 while the bridge drains before shutdown.", registry=r
        )
        self.build_info = Info("grpc_bridge_build", "grpc-bridge build information.", registry=r)
        self.build_info.info(
            {
                "version": __version__,
                "python": platform.python_version(),
                "grpcio": _version("grpcio"),
            }
        )
        # Pre-create series that dashboards and alerts divide by, so they read 0, not "no data".
        for framing in FRAMINGS:
            self.streams_open.labels(framing)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        self._methods: dict[str, MethodMetrics] = {}
        self._routes: dict[str, RouteMetrics] = {}
        self._framings = {f: self.streams_open.labels(f) for f in FRAMINGS}
        self._protocols = {p: self.protocol_requests.labels(p) for p in WIRE_PROTOCOLS}

    def method(self, info: MethodInfo) -> MethodMetrics:
        cached = self._methods.get(info.path)
        if cached is None:
            labels = (info.kind.value, info.service, info.name)
            handled = self.grpc_handled

            def by_code(code: str) -> FastCounterChild:
                return handled.labels(*labels, code)

            cached = MethodMetrics(
                self.grpc_started.labels(*labels),
                self.grpc_msg_sent.labels(*labels),
                self.grpc_msg_received.labels(*labels),
                self.grpc_handling.labels(*labels),
                by_code,
            )
            self._methods[info.path] = cached
        return cached

    def route(self, template: str) -> RouteMetrics:
        cached = self._routes.get(template)
        if cached is None:
            requests = self.http_requests

            def by_key(method: str, status_class: str) -> FastCounterChild:
                return requests.labels(template, method, status_class)

            cached = RouteMetrics(self.http_duration.labels(template), by_key)
            self._routes[template] = cached
        return cached

    def stream_gauge(self, framing: str) -> Any:
        gauge = self._framings.get(framing)
        if gauge is None:
            gauge = self._framings[framing] = self.streams_open.labels(framing)
        return gauge

    def protocol(self, name: str) -> FastCounterChild:
        counter = self._protocols.get(name)
        if counter is None:
            counter = self._protocols[name] = self.protocol_requests.labels(name)
        return counter

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def upstream_http2_error(self, upstream: str, code: str) -> None:
        self.upstream_http2_errors.labels(upstream, code).inc()

    def watch_upstreams(self, source: Callable[[], Iterable[tuple[str, bool, list[str]]]]) -> None:
        """Upstream readiness and channel states, read at scrape time (never on the hot path).

        ``source`` yields ``(upstream, ready, channel_state_names)``.
        """
        self.registry.register(_UpstreamCollector(source))


class _UpstreamCollector(Collector):
    def __init__(self, source: Callable[[], Iterable[tuple[str, bool, list[str]]]]) -> None:
        self._source = source

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily(
            "grpc_bridge_upstream_ready", "1 when the upstream is ready.", labels=["upstream"]
        )
        channels = GaugeMetricFamily(
            "grpc_bridge_upstream_channels",
            "Channels to the upstream by connectivity state.",
            labels=["upstream", "state"],
        )
        for name, is_ready, states in self._source():
            ready.add_metric([name], 1.0 if is_ready else 0.0)
            for state in ("IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE", "SHUTDOWN"):
                channels.add_metric([name, state], float(states.count(state)))
        yield ready
        yield channels


def create_metrics() -> Metrics:
    return Metrics()
