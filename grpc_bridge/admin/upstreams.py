"""The upstreams as the admin port shows them: ``/readyz`` and ``/v1/upstreams``.

Rendering only: the state is the bridge's (:class:`~grpc_bridge.upstream.state.UpstreamState`),
read here when an operator or a probe asks, never on the proxy's path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from grpc_bridge.bridge import Bridge
from grpc_bridge.upstream.state import UpstreamState


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def readiness(bridge: Bridge) -> tuple[bool, dict[str, Any]]:
    """Whether the bridge is ready, and the ``/readyz`` body that says why (not)."""
    upstreams = {s.name: _readiness(s) for s in bridge.upstreams.values()}
    ready = not bridge.draining and all(u["ready"] for u in upstreams.values())
    return ready, {"ready": ready, "draining": bridge.draining, "upstreams": upstreams}


def _readiness(state: UpstreamState) -> dict[str, Any]:
    reason = state.not_ready_reason()
    return {
        "ready": reason is None,
        **({"reason": reason} if reason else {}),
        "targets": list(state.settings.targets),
        "channels": state.pool.states(),
        "services": list(state.schema.service_names) if state.schema else [],
        "last_refresh": iso(state.last_refresh),
    }


def describe(state: UpstreamState) -> dict[str, Any]:
    """Everything an operator may want to see of one upstream (``GET /v1/upstreams``)."""
    up = state.settings
    reason = state.not_ready_reason()
    schema = state.schema
    return {
        "name": state.name,
        "ready": reason is None,
        "reason": reason,
        "targets": list(up.targets),
        "addresses": list(state.targets.addresses),
        "grpc_targets": list(state.targets.targets),
        "authority": up.authority
        or (up.tls.server_name if up.tls.enabled else None)
        or state.targets.authority,
        "resolve_error": state.resolve_error,
        "tls": up.tls.enabled,
        "transport": "native",
        "channels": {
            "generation": state.pool.generation,
            "built_at": iso(state.pool.built_at),
            "states": state.pool.states(),
            "retiring": state.pool.retiring,
        },
        "services": list(schema.service_names) if schema else [],
        "methods": len(schema.methods) if schema else 0,
        "source": schema.source if schema else None,
        "last_refresh": {
            "at": iso(state.last_attempt),
            "result": state.last_result,
            "error": state.last_error if state.last_result == "failed" else None,
            "last_success": iso(state.last_refresh),
        },
        "last_error": state.last_error,
        "health": {
            "enabled": up.health_check,
            "service": up.health_service,
            "status": state.health.status,
            "error": state.health.error,
            "checked_at": iso(state.health.checked),
        },
        "retries": up.retries.model_dump() if up.retries.max_attempts > 1 else None,
    }
