"""The Grafana dashboard and the alert rules name only metrics the bridge exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from grpc_bridge.metrics import Metrics

MONITORING = Path(__file__).parent.parent / "deploy" / "monitoring"
# Metric names; label names such as grpc_code start differently.
_METRIC = re.compile(r"\b(grpc_(?:client|bridge)_[a-z0-9_]+)\b")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}


def exported_names() -> set[str]:
    metrics = Metrics()
    metrics.watch_upstreams(lambda: [("u", True, ["READY"])])
    names: set[str] = set()
    for family in metrics.registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def rule_exprs() -> list[str]:
    rule = yaml.safe_load((MONITORING / "prometheus-rule.yaml").read_text())
    return [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]


def test_exported_names_include_go_grpc_prometheus_names() -> None:
    names = exported_names()
    for name in (
        "grpc_client_started_total",
        "grpc_client_handled_total",
        "grpc_client_msg_sent_total",
        "grpc_client_msg_received_total",
        "grpc_client_handling_seconds_bucket",
        "grpc_bridge_build_info",
        "grpc_bridge_upstream_ready",
    ):
        assert name in names


def test_dashboard_uses_only_exported_metrics() -> None:
    names = exported_names()
    used = {m for expr in dashboard_exprs() for m in _METRIC.findall(expr)}
    assert used, "the dashboard has no queries"
    assert used <= names, f"unknown metrics in the dashboard: {sorted(used - names)}"
    # Every exported family is on the dashboard somewhere.
    families = {n.removesuffix("_bucket").removesuffix("_total") for n in names}
    shown = {u.removesuffix("_bucket").removesuffix("_total") for u in used}
    assert families - shown <= {
        "grpc_client_handling_seconds_sum",
        "grpc_client_handling_seconds_count",
        "grpc_bridge_http_request_duration_seconds_sum",
        "grpc_bridge_http_request_duration_seconds_count",
    }


def test_alert_rules_use_only_exported_metrics() -> None:
    names = exported_names()
    used = {m for expr in rule_exprs() for m in _METRIC.findall(expr)}
    assert used and used <= names, sorted(used - names)


def test_dashboard_panels_do_not_overlap() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
