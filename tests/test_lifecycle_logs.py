"""Lifecycle events are log events of their own (asserted with structlog's test helper)."""

from __future__ import annotations

import asyncio

import structlog

from tests.helpers.harness import running_bridge
from tests.helpers.servers import StartServer


async def test_discovery_channel_state_and_drain_events(upstream_factory: StartServer) -> None:
    server = await upstream_factory()
    with structlog.testing.capture_logs() as logs:
        async with running_bridge(f"shop={server.target}") as b:
            assert (await b.post("/bridgetest.v1.TestService/Echo", {}))[0] == 200
            await asyncio.sleep(0.6)
            await server.stop()
            for _ in range(40):
                if any(
                    e["event"] == "channel_state"
                    and e["state"] in ("IDLE", "TRANSIENT_FAILURE")
                    and e["previous"] == "READY"
                    for e in logs
                ):
                    break
                await asyncio.sleep(0.1)
    events = [e["event"] for e in logs]
    assert "listening" in events
    discovered = next(e for e in logs if e["event"] == "discovered")
    assert (
        discovered["upstream"] == "shop" and "bridgetest.v1.TestService" in discovered["services"]
    )
    changes = [e for e in logs if e["event"] == "channel_state" and e["upstream"] == "shop"]
    assert any(e["previous"] is None for e in changes), changes  # first sighting of each channel
    assert any(e["state"] == "READY" for e in changes), changes
    assert any(
        e["previous"] == "READY" and e["state"] in ("IDLE", "TRANSIENT_FAILURE") for e in changes
    ), changes
    assert events.index("draining") < events.index("stopped")
