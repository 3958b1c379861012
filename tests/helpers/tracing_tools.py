"""Helpers for the tracing tests: a bridge process configured by OTEL_* variables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from tests.helpers.otlp import ReceivedSpan
from tests.helpers.process import BridgeProcess, bridge_env, serve_args

#: A client's W3C trace context: the bridge's server span must be its child.
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"


def tracing_env(**extra: str) -> dict[str, str]:
    """The test's environment without any GRPC_BRIDGE_* or OTEL_* variable, plus ``extra``.

    The batch processor exports every 50 ms, so spans arrive soon after a request.
    """
    return bridge_env(**{"OTEL_BSP_SCHEDULE_DELAY": "50", **extra})


@asynccontextmanager
async def traced_bridge(
    upstream: str | None, env: dict[str, str], *extra: str
) -> AsyncIterator[tuple[BridgeProcess, aiohttp.ClientSession]]:
    """A bridge process in front of ``upstream`` (None: the config file's upstreams),
    discovery done; stopped (SIGTERM) on exit."""
    args = serve_args(upstream or "-", *extra)
    if upstream is None:
        args = (args[0], *args[3:])  # "serve" without "--upstream -"
    bridge = await BridgeProcess.start(*args, env=env)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{bridge.admin_port}") as admin:
            for _ in range(200):
                async with admin.get("/readyz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.05)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{bridge.proxy_port}") as session:
            yield bridge, session
    finally:
        await bridge.stop()


async def post(
    session: aiohttp.ClientSession, path: str, body: Any, **headers: str
) -> tuple[int, Any]:
    async with session.post(path, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def one(spans: list[ReceivedSpan], kind: int, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.kind == kind and s.name == name]
    assert len(found) == 1, (kind, name, spans)
    return found[0]
