"""Every metric the bridge exports, declared in one place on a registry the app owns."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Info

from grpc_bridge import __version__


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    build_info: Info
    draining: Gauge


def create_metrics() -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    build_info = Info("grpc_bridge_build", "grpc-bridge build information", registry=registry)
    build_info.info({"version": __version__})
    draining = Gauge(
        "grpc_bridge_draining", "1 while the bridge drains before shutdown", registry=registry
    )
    return Metrics(registry, build_info, draining)
