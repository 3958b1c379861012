"""A real bridge (both listeners on ephemeral loopback ports) for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from grpc_bridge.app import Server, start
from grpc_bridge.settings import load_settings


@dataclass
class RunningBridge:
    server: Server
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.proxy_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.server.admin_port}"

    async def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        # Discovery is what a fresh bridge waits for: awaited, not polled for (a poll
        # interval per bridge adds up over a thousand tests); /readyz then has the say.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.server.bridge.wait_discovered()
        while True:
            async with self.session.get(f"{self.admin_url}/readyz") as resp:
                if resp.status == 200:
                    return
                body = await resp.text()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"bridge not ready after {timeout}s: {body}")
            await asyncio.sleep(0.05)

    async def post(
        self, path: str, body: Any = None, **kwargs: Any
    ) -> tuple[int, Any, Mapping[str, str]]:
        """POST JSON (a dict, or raw bytes/str as-is) and return status, parsed body, headers."""
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        raw = isinstance(body, (bytes, str)) or hasattr(body, "__aiter__")
        data = body if raw else None
        json_body = None if raw else (body if body is not None else {})
        if json_body is not None:
            import orjson

            data = orjson.dumps(json_body)
        async with self.session.post(
            f"{self.url}{path}", data=data, headers=headers, **kwargs
        ) as resp:
            return resp.status, await _body(resp), resp.headers

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any, Mapping[str, str]]:
        async with self.session.get(f"{self.url}{path}", **kwargs) as resp:
            return resp.status, await _body(resp), resp.headers


async def _body(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    if resp.content_type == "application/json" and raw:
        import orjson

        return orjson.loads(raw)
    return raw.decode(errors="replace")


def bridge_settings(upstream: str | None, **overrides: Any) -> Any:
    base: dict[str, Any] = {
        **({"upstream": upstream} if upstream else {}),
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "discovery": {"retry_initial_s": 0.05, "retry_max_s": 0.5},
        "shutdown": {"timeout_s": 5},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(None, base)


@asynccontextmanager
async def running_bridge(
    upstream: str | None, *, ready: bool = True, **overrides: Any
) -> AsyncIterator[RunningBridge]:
    # No OTEL_* variable of the test's environment turns tracing on here.
    server = await start(bridge_settings(upstream, **overrides), environ={})
    session = aiohttp.ClientSession()
    bridge = RunningBridge(server, session)
    try:
        if ready:
            await bridge.wait_ready()
        yield bridge
    finally:
        await session.close()
        await server.drain_and_stop()


#: The proxy listener's two HTTP/1.1 edges, by the ``listen.fast_path`` that picks each.
EDGES = {"lean": True, "aiohttp": False}


class MakeBridge(Protocol):
    """conftest.py's ``make_bridge`` fixture: a started bridge, stopped at teardown."""

    async def __call__(self, upstream: str | None, **overrides: Any) -> RunningBridge: ...


async def scrape(b: RunningBridge) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The admin port's /metrics: (sample name, labels) → value."""
    async with b.session.get(f"{b.admin_url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """One sample of a :func:`scrape`; 0 when it is absent."""
    return samples.get((name, frozenset(labels.items())), 0.0)
