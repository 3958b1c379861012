"""The admin listener of a multi-worker bridge: one view over every worker's own admin app.

Served by the parent process (grpc_bridge/workers.py). Each worker runs the
ordinary admin app on a private loopback port; this app asks them:

- ``/healthz``: the parent's event loop answers (as in one process);
- ``/readyz``: 200 only when not draining and every worker answers ready;
  the body is worker 0's (``ready``/``draining`` recomputed) plus
  ``workers: [{worker, pid, ready, reason}]``;
- ``/metrics``: every worker's scrape merged. Counters, histograms and
  summaries are summed, so rates read as for one process; gauges keep one
  series per worker under a ``worker`` label (prometheus-client's own
  multi-process "all" mode does the same with a pid label); and
  ``grpc_bridge_worker_up{worker}`` says whose scrape is missing;
- ``/playground``: served here (admin/playground.py), its calls forwarded to
  the shared proxy port like any client's; off with ``admin.playground``;
- anything else (introspection, ...): forwarded to the first live worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from grpc_bridge.admin.errors import admin_errors
from grpc_bridge.admin.playground import CALL_PREFIX, PAGE_PATH, ProxyTarget, add_playground
from grpc_bridge.settings import Settings

_TIMEOUT = aiohttp.ClientTimeout(total=3)
_SUMMED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


class WorkerView(Protocol):
    def admin_ports(self) -> list[tuple[int, int | None, int | None]]:
        """``(worker index, pid, private admin port or None while it is down)`` for each worker."""
        ...

    def is_draining(self) -> bool: ...

    @property
    def settings(self) -> Settings:
        """The parent's settings, with the proxy port resolved (never 0)."""
        ...


_VIEW = web.AppKey("worker_view", WorkerView)
_SESSION = web.AppKey("worker_session", aiohttp.ClientSession)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def _get(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, bytes] | None:
    try:
        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError):
        return None


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    view, session = request.app[_VIEW], request.app[_SESSION]
    workers = view.admin_ports()
    answers = await asyncio.gather(
        *(_get(session, port, "/readyz") for _, _, port in workers if port is not None)
    )
    by_index = dict(zip([i for i, _, port in workers if port is not None], answers, strict=True))
    entries = []
    reports: list[tuple[bool, dict[str, Any]]] = []
    for index, pid, _ in workers:
        answer = by_index.get(index)
        entry: dict[str, Any] = {"worker": index, "pid": pid, "ready": False}
        if answer is None:
            entry["reason"] = "admin not answering" if index in by_index else "not running"
        else:
            status, body = answer
            entry["ready"] = status == 200
            if status != 200:
                entry["reason"] = "not ready"
            reports.append((entry["ready"], orjson.loads(body)))
        entries.append(entry)
    # The upstreams of the first worker that isn't ready, else of worker 0.
    report = next((r for ok, r in reports if not ok), reports[0][1] if reports else {})
    report = dict(report)
    draining = view.is_draining()
    ready = not draining and all(e["ready"] for e in entries)
    report.update(ready=ready, draining=draining or bool(report.get("draining")), workers=entries)
    return _json(report, 200 if ready else 503)


class _Merged:
    """A collector over already-parsed families (for generate_latest)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge_metrics(scrapes: dict[int, str | None]) -> bytes:
    """One exposition from each worker's; see the module docstring for the rules."""
    merged: dict[str, Metric] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for index, text in sorted(scrapes.items()):
        for family in text_string_to_metric_families(text or ""):
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(
                    family.name, family.documentation, family.type
                )
                sums[family.name] = {}
            for sample in family.samples:
                if family.type in _SUMMED:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    seen = sums[family.name]
                    if sample.name.endswith("_created"):
                        seen[key] = min(seen.get(key, sample.value), sample.value)
                    else:
                        seen[key] = seen.get(key, 0.0) + sample.value
                else:
                    target.add_sample(
                        sample.name, {**sample.labels, "worker": str(index)}, sample.value
                    )
    for name, seen in sums.items():
        for (sample_name, labels), value in seen.items():
            merged[name].add_sample(sample_name, dict(labels), value)
    up = Metric("grpc_bridge_worker_up", "1 when the worker answered this scrape", "gauge")
    for index, text in sorted(scrapes.items()):
        up.add_sample("grpc_bridge_worker_up", {"worker": str(index)}, 0.0 if text is None else 1.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged([*merged.values(), up]))
    return generate_latest(registry)


async def metrics(request: web.Request) -> web.Response:
    view, session = request.app[_VIEW], request.app[_SESSION]
    workers = view.admin_ports()

    async def scrape(port: int | None) -> str | None:
        if port is None:
            return None
        answer = await _get(session, port, "/metrics")
        return answer[1].decode() if answer is not None and answer[0] == 200 else None

    texts = await asyncio.gather(*(scrape(port) for _, _, port in workers))
    body = merge_metrics({index: text for (index, _, _), text in zip(workers, texts, strict=True)})
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def forward(request: web.Request) -> web.StreamResponse:
    view, session = request.app[_VIEW], request.app[_SESSION]
    for _, _, port in view.admin_ports():
        if port is None:
            continue
        try:
            async with session.request(
                request.method,
                f"http://127.0.0.1:{port}{request.rel_url.raw_path_qs}",
                data=await request.read(),
                headers={
                    k: v
                    for k, v in request.headers.items()
                    if k.lower() in ("accept", "content-type")
                },
            ) as response:
                body = await response.read()
                headers = {
                    "Content-Type": response.headers.get("Content-Type", "application/octet-stream")
                }
                return web.Response(body=body, status=response.status, headers=headers)
        except (aiohttp.ClientError, TimeoutError):
            continue
    return _json({"code": 14, "message": "no worker is running", "details": []}, 503)


async def _session(app: web.Application) -> AsyncIterator[None]:
    app[_SESSION] = aiohttp.ClientSession(timeout=_TIMEOUT)
    yield
    await app[_SESSION].close()


async def not_found(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


def build_worker_admin_app(view: WorkerView) -> web.Application:
    # A playground call whose browser went away is cancelled, and the proxied call with it.
    app = web.Application(middlewares=[admin_errors], handler_args={"handler_cancellation": True})
    app[_VIEW] = view
    app.cleanup_ctx.append(_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    settings = view.settings
    if settings.admin.playground:
        port = settings.listen.port
        add_playground(app, ProxyTarget.of(settings, lambda: port))
    else:
        # Answered here, not forwarded: a 404 even while no worker is running.
        app.router.add_route("*", PAGE_PATH, not_found)
        app.router.add_route("*", CALL_PREFIX + "/{tail:.*}", not_found)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app
