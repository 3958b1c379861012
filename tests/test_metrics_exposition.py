"""The lock-free per-request series render exactly as prometheus-client's own metrics would.

A reference registry declares the same families with prometheus_client's
Counter/Histogram/Gauge; both see the same operations, and their scrapes must
match sample for sample (``_created`` included), in a single process and
after the multi-worker merge.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import Metric

from grpc_bridge.admin.workers import merge_metrics
from grpc_bridge.discovery.registry import MethodKind
from grpc_bridge.metrics import GRPC_BUCKETS, GRPC_LABELS, HTTP_BUCKETS, Metrics

FAST_FAMILIES = [
    "grpc_client_started",
    "grpc_client_handled",
    "grpc_client_msg_received",
    "grpc_client_msg_sent",
    "grpc_client_handling_seconds",
    "grpc_bridge_http_requests",
    "grpc_bridge_http_request_duration_seconds",
    "grpc_bridge_http_requests_in_flight",
]
DURATIONS = [0.0, 1e-9, 0.001, 0.005, 0.0051, 0.3, 2.5, 7.0, 10.0, 11.0, 30.0, 100.0]


class Reference:
    """The per-request series as prometheus-client metrics, with the Metrics API the code uses."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.started = Counter(
            "grpc_client_started", "RPCs started on the client.", GRPC_LABELS, registry=r
        )
        self.handled = Counter(
            "grpc_client_handled",
            "RPCs completed on the client, regardless of success or failure.",
            (*GRPC_LABELS, "grpc_code"),
            registry=r,
        )
        self.received = Counter(
            "grpc_client_msg_received",
            "RPC stream messages received by the client.",
            GRPC_LABELS,
            registry=r,
        )
        self.sent = Counter(
            "grpc_client_msg_sent",
            "gRPC stream messages sent by the client.",
            GRPC_LABELS,
            registry=r,
        )
        self.handling = Histogram(
            "grpc_client_handling_seconds",
            "Histogram of response latency (seconds) of the gRPC until it is finished.",
            GRPC_LABELS,
            buckets=GRPC_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "grpc_bridge_http_requests",
            "HTTP requests by route template, HTTP method and status class.",
            ("route", "method", "status_class"),
            registry=r,
        )
        self.duration = Histogram(
            "grpc_bridge_http_request_duration_seconds",
            "HTTP request duration by route template (to the end of the response).",
            ("route",),
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "grpc_bridge_http_requests_in_flight", "HTTP requests being served.", registry=r
        )


class _Method:
    def __init__(self, kind: MethodKind, service: str, name: str) -> None:
        self.kind, self.service, self.name = kind, service, name
        self.path = f"/{service}/{name}"


CODE_NAMES = {0: "OK", 1: "CANCELLED", 5: "NOT_FOUND", 14: "UNAVAILABLE"}


def drive(fast: Metrics, ref: Reference) -> None:
    """The same traffic on both: unary and streaming calls, several codes, routes and statuses."""
    methods = [
        _Method(MethodKind.UNARY, "a.v1.S", "Echo"),
        _Method(MethodKind.SERVER_STREAM, "a.v1.S", "Watch"),
    ]
    for i, seconds in enumerate(DURATIONS):
        info = methods[i % 2]
        labels = (info.kind.value, info.service, info.name)
        code = list(CODE_NAMES)[i % 4]
        method = fast.method(info)  # type: ignore[arg-type]
        method.started.inc()
        method.sent.inc()
        method.received.inc(i)
        method.handled(code).inc()
        method.handling.observe(seconds)
        ref.started.labels(*labels).inc()
        ref.sent.labels(*labels).inc()
        ref.received.labels(*labels).inc(i)
        ref.handled.labels(*labels, CODE_NAMES[code]).inc()
        ref.handling.labels(*labels).observe(seconds)

        template = "/v1/things/{id}" if i % 3 else "unmatched"
        http_method = "GET" if i % 5 else "POST"
        status = (200, 404, 500, 499)[i % 4]
        fast.http_in_flight.inc()
        ref.in_flight.inc()
        if i % 4:
            fast.http_in_flight.dec()
            ref.in_flight.dec()
        route = fast.route(template)
        route.request(http_method, status).inc()
        route.duration.observe(seconds)
        ref.requests.labels(template, http_method, f"{status // 100}xx").inc()
        ref.duration.labels(template).observe(seconds)


def families(registry: CollectorRegistry) -> dict[str, Metric]:
    return {m.name: m for m in registry.collect()}


def scrape(metrics: Any) -> str:
    """The text exposition of the families under test only, whole (HELP, TYPE, samples)."""
    text = generate_latest(metrics.registry).decode()
    keep = tuple(FAST_FAMILIES)
    lines = [
        line
        for line in text.splitlines()
        if line.split(" ")[2 if line.startswith("#") else 0].startswith(keep)
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_created`` series are wall-clock times: one fixed value for both sides."""
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)


@pytest.mark.parametrize("created", [True, False])
def test_same_samples_as_prometheus_client(
    frozen_clock: None, monkeypatch: pytest.MonkeyPatch, created: bool
) -> None:
    monkeypatch.setattr(prometheus_metrics, "_use_created", created)
    fast, ref = Metrics(), Reference()
    for _ in range(2):  # the first round creates the series, the second finds them
        drive(fast, ref)
    got, want = families(fast.registry), families(ref.registry)
    for name in FAST_FAMILIES:
        assert got[name] == want[name], name
        assert any(s.name.endswith("_created") for s in got[name].samples) == (
            created and name != "grpc_bridge_http_requests_in_flight"
        )
    # Declaration order is exposition order: the fast families come first, as before.
    assert list(got)[: len(FAST_FAMILIES)] == FAST_FAMILIES


def test_text_exposition_is_byte_identical(frozen_clock: None) -> None:
    fast, ref = Metrics(), Reference()
    drive(fast, ref)
    got = scrape(fast)
    # The text format writes each ``_created`` series as a family of its own.
    types = [line.split()[2] for line in got.splitlines() if line.startswith("# TYPE")]
    assert len([t for t in types if not t.endswith("_created")]) == len(FAST_FAMILIES)
    assert got == generate_latest(ref.registry).decode()


def test_worker_merge_is_unchanged(frozen_clock: None) -> None:
    fasts, refs = [Metrics(), Metrics()], [Reference(), Reference()]
    for fast, ref in zip(fasts, refs, strict=True):
        drive(fast, ref)
    drive(fasts[1], refs[1])
    got = merge_metrics({0: scrape(fasts[0]), 1: scrape(fasts[1])})
    want = merge_metrics({0: scrape(refs[0]), 1: scrape(refs[1])})
    assert got == want
    assert b'grpc_bridge_http_requests_in_flight{worker="1"}' in got


def test_labels_are_checked_and_counters_only_go_up() -> None:
    fast = Metrics()
    with pytest.raises(ValueError, match="label count"):
        fast.grpc_started.labels("unary", "a.v1.S")
    child = fast.grpc_started.labels("unary", "a.v1.S", "Echo")
    assert fast.grpc_started.labels("unary", "a.v1.S", "Echo") is child
    with pytest.raises(ValueError, match="non-negative"):
        child.inc(-1)
    child.inc(0)
    assert (
        fast.registry.get_sample_value(
            "grpc_client_started_total",
            {"grpc_type": "unary", "grpc_service": "a.v1.S", "grpc_method": "Echo"},
        )
        == 0.0
    )
