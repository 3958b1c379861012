"""``--workers N`` bridges for tests: start one, wait until its admin port reports ready."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.helpers.process import BridgeProcess, serve_args
from tests.helpers.servers import RunningServer


async def start_workers(
    upstream: RunningServer, *extra: str, env: dict[str, str] | None = None
) -> BridgeProcess:
    """Like BridgeProcess.start, but waits for the parent's "listening" line (with ``workers``)."""
    bp = await BridgeProcess.spawn(*serve_args(upstream.target, "--workers", "2", *extra), env=env)
    while True:
        event = await bp.wait_for("listening")
        if "workers" in event:
            break
        bp.events.remove(event)  # a worker's own line; the parent's comes last
        bp.events.append({**event, "event": "worker_listening"})
    bp.proxy_port = int(event["proxy"].rsplit(":", 1)[1])
    bp.admin_port = int(event["admin"].rsplit(":", 1)[1])
    return bp


async def wait_ready(session: aiohttp.ClientSession, bp: BridgeProcess) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            async with session.get(f"http://127.0.0.1:{bp.admin_port}/readyz") as resp:
                report: dict[str, Any] = await resp.json()
                if resp.status == 200:
                    return report
            await asyncio.sleep(0.1)
