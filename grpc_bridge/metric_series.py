"""Lock-free metric series, exposed exactly as prometheus-client exposes its own.

The per-request series of :mod:`grpc_bridge.metrics` (the gRPC client ones,
the HTTP request counter, duration histogram and in-flight gauge) are updated
on every request, and prometheus-client's take a lock and hash their labels on
each update. These are plain floats and lists updated without a lock, bound
once per label set (``labels()``), and rendered at scrape time as
prometheus-client would render its own: the same families, samples, order and
``_created`` series (tests/test_metrics_exposition.py compares the two). Only
the event loop's thread may update them (the HTTP/2 client calls back on the
loop; scrapes run on it too).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

__all__ = [
    "FastCounter",
    "FastCounterChild",
    "FastGauge",
    "FastHistogram",
    "FastHistogramChild",
]


def _use_created() -> bool:
    """prometheus-client's switch (PROMETHEUS_DISABLE_CREATED_SERIES, disable_created_metrics())."""
    return bool(getattr(_prometheus_metrics, "_use_created", True))


_Child = TypeVar("_Child")


class _Family(Collector, Generic[_Child]):
    """A labelled family of lock-free series: ``labels()`` binds a child, as in prometheus-client.

    Children are exposed in the order they were first bound, as prometheus-client
    does. Registered on ``registry`` at once, so families keep declaration order.
    """

    _type = ""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}
        registry.register(self)

    def _new_child(self) -> _Child:
        raise NotImplementedError

    def labels(self, *values: object) -> _Child:
        key = tuple(str(v) for v in values)
        if len(key) != len(self._labelnames):
            raise ValueError("Incorrect label count")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def describe(self) -> Iterable[Metric]:
        return [Metric(self._name, self._documentation, self._type)]


class FastCounterChild:
    """One counter series: a float, incremented without a lock (event loop only)."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class FastCounter(_Family[FastCounterChild]):
    """A labelled Counter, exposed exactly as ``prometheus_client.Counter``."""

    _type = "counter"

    def _new_child(self) -> FastCounterChild:
        return FastCounterChild()

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self._name, self._documentation, self._type)
        created = _use_created()
        total, created_name = self._name + "_total", self._name + "_created"
        names = self._labelnames
        for values, child in list(self._children.items()):
            labels = dict(zip(names, values, strict=True))
            metric.add_sample(total, labels, child.value)
            if created:
                metric.add_sample(created_name, dict(labels), child.created)
        return [metric]


class FastHistogramChild:
    """One histogram series: per-bucket counts and a sum, updated without a lock."""

    __slots__ = ("_bounds", "buckets", "created", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self._bounds = bounds
        self.buckets = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.sum += amount
        # The first bucket whose bound is >= amount, as prometheus-client's linear scan;
        # a NaN falls in no bucket there, so it is kept out of them here too.
        if amount == amount:
            self.buckets[bisect_left(self._bounds, amount)] += 1


class FastHistogram(_Family[FastHistogramChild]):
    """A labelled Histogram, exposed exactly as ``prometheus_client.Histogram``."""

    _type = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str],
        registry: CollectorRegistry,
        buckets: Iterable[float],
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if bounds and bounds[-1] != INF:
            bounds.append(INF)
        self._bounds = bounds
        # The "le" label values, as prometheus-client spells them ("0.005", "1.0", "+Inf").
        self._le: list[str] = [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> FastHistogramChild:
        return FastHistogramChild(self._bounds)

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self._name, self._documentation, self._type)
        created = _use_created()
        name = self._name
        bucket, count, total, created_name = (
            name + "_bucket",
            name + "_count",
            name + "_sum",
            name + "_created",
        )
        names = self._labelnames
        for values, child in list(self._children.items()):
            labels = dict(zip(names, values, strict=True))
            acc = 0.0
            for le, n in zip(self._le, list(child.buckets), strict=True):
                acc += n
                metric.add_sample(bucket, {**labels, "le": le}, acc)
            metric.add_sample(count, dict(labels), acc)
            if self._bounds[0] >= 0:
                metric.add_sample(total, dict(labels), child.sum)
            if created:
                metric.add_sample(created_name, dict(labels), child.created)
        return [metric]


class FastGauge(Collector):
    """An unlabelled Gauge (``inc``/``dec``), exposed exactly as ``prometheus_client.Gauge``."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self.value = 0.0
        registry.register(self)

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def describe(self) -> Iterable[Metric]:
        return [Metric(self._name, self._documentation, "gauge")]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self._name, self._documentation, "gauge")
        metric.add_sample(self._name, {}, self.value)
        return [metric]
