"""Composition root: the only module that wires concrete objects together and runs them.

Shutdown (SIGTERM/SIGINT) is a timeline, so that a Kubernetes rollout loses no
request:

1. ``/readyz`` answers 503 at once (endpoints controllers stop routing here);
2. for ``shutdown.drain_s`` the proxy keeps serving, answering with
   ``Connection: close`` so keep-alive clients reconnect elsewhere;
3. the listener closes; ``Bridge.closing`` is set so streams end with a
   terminal frame; in-flight requests get ``shutdown.timeout_s`` to finish;
4. background tasks stop, channels close, the process exits 0.

SIGHUP re-runs discovery, DNS resolution and TLS file loading at once.

Tracing (grpc_bridge/tracing/) is an optional hook made here when the
configuration turns it on: a middleware around the edge one and a wrapper
around each upstream's invoker. When it is off nothing of it exists and
OpenTelemetry is never imported. When it is on, the lean HTTP/1.1 path
(edge/fastpath.py) is not used: every request goes through aiohttp, where the
one server-span middleware sees it. A request's two spans cost ~100 µs of CPU
(measured with SDK 1.45 and a batch processor), about three times the ~36 µs
the lean path saves (edge/fastpath.py), and a second place making the same
spans would have to be kept alike by hand.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from grpc_bridge.admin.app import build_admin_app
from grpc_bridge.admin.errors import router_refusal
from grpc_bridge.bridge import Bridge
from grpc_bridge.edge.aiohttp_compat import bound_port
from grpc_bridge.edge.fastpath import IDLE_TIMEOUT_S
from grpc_bridge.edge.listen import start_site
from grpc_bridge.edge.parse_errors import JsonErrorRunner
from grpc_bridge.edge.proxy import build_proxy_app, fast_path, refuse_method
from grpc_bridge.edge.sites import FastSite, SniffSite
from grpc_bridge.log import get_logger
from grpc_bridge.metrics import Metrics, create_metrics
from grpc_bridge.pipeline.context import METRICS
from grpc_bridge.protocol.select import PROTOCOLS
from grpc_bridge.runloop import collect_less_often
from grpc_bridge.settings import Settings
from grpc_bridge.tracing.config import check_tracing
from grpc_bridge.upstream.resolver import Resolve, system_resolve

if TYPE_CHECKING:
    from grpc_bridge.tracing.provider import Tracing

log = get_logger("grpc_bridge.app")

#: Admin handlers are quick; a probe in flight at exit gets this long.
_ADMIN_SHUTDOWN_S = 2.0


@dataclass
class Server:
    """A started bridge: both listeners up, discovery running in the background."""

    bridge: Bridge
    metrics: Metrics
    proxy_runner: web.AppRunner
    admin_runner: web.AppRunner
    proxy_port: int = 0
    admin_port: int = 0
    #: The tracing hook; None when tracing is off.
    tracing: Tracing | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False

    async def drain_and_stop(self) -> None:
        """Readiness off, a grace period still serving, then stop accepting and finish in flight."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        settings = self.bridge.settings
        self.bridge.draining = True
        self.metrics.draining.set(1)
        log.info(
            "draining", drain_s=settings.shutdown.drain_s, timeout_s=settings.shutdown.timeout_s
        )
        try:
            if settings.shutdown.drain_s:
                await asyncio.sleep(settings.shutdown.drain_s)
            # Streams end with a terminal frame now; unary calls get the shutdown timeout.
            self.bridge.closing.set()
            # cleanup() closes the listening socket first, then waits up to
            # shutdown_timeout for handlers still running, then cancels them.
            await self.proxy_runner.cleanup()
            await self.admin_runner.cleanup()
            await self.bridge.stop()
            if self.tracing is not None:
                await self.tracing.shutdown()
        finally:
            self.stopped.set()
        log.info("stopped")


def start_tracing(settings: Settings, environ: Mapping[str, str]) -> Tracing | None:
    """The tracing hook when the configuration turns it on (OpenTelemetry is imported only then)."""
    config = check_tracing(settings.tracing, environ)
    if config is None:
        return None
    from grpc_bridge.tracing.provider import Tracing

    tracing = Tracing(config)
    log.info(
        "tracing",
        exporters=list(config.exporters),
        protocol=config.protocol,
        endpoint=config.endpoint if "otlp" in config.exporters else None,
        sampler=config.sampler,
        service_name=config.resource.get("service.name"),
    )
    return tracing


async def start(
    settings: Settings,
    *,
    resolve: Resolve = system_resolve,
    environ: Mapping[str, str] = os.environ,
) -> Server:
    """Both listeners up; ``environ`` holds the ``OTEL_*`` variables tracing reads."""
    tracing = start_tracing(settings, environ)
    metrics = create_metrics()
    bridge = Bridge(
        settings,
        resolve=resolve,
        metrics=metrics,
        wrap_invoker=None if tracing is None else tracing.wrap_invoker,
    )
    refreshes = metrics.discovery_refreshes
    bridge.refresh_listeners.append(
        lambda upstream, ok: refreshes.labels(upstream, "success" if ok else "failure").inc()
    )
    metrics.watch_upstreams(bridge.channel_summary)
    proxy_app = build_proxy_app(bridge, () if tracing is None else (tracing.middleware(),))
    proxy_app[METRICS] = metrics
    # Requests aiohttp's parser refuses get the Status body too, logged and counted.
    proxy_runner = JsonErrorRunner(
        proxy_app,
        metrics=metrics,
        observe=True,
        handle_signals=False,
        access_log=None,
        # The lean path (edge/fastpath.py) and aiohttp close idle connections alike.
        keepalive_timeout=IDLE_TIMEOUT_S,
        # Compressed bodies are inflated by the bridge as they arrive (pipeline/inflate.py).
        auto_decompress=False,
        shutdown_timeout=settings.shutdown.timeout_s,
        refuse_method=refuse_method(bridge),
        # As the lean path reads heads (edge/head_deadline.py).
        head_timeout=settings.limits.body_read_timeout_s,
    )
    # The playground forwards to the proxy listener, bound only further down.
    admin_app = build_admin_app(
        bridge, metrics.registry, lambda: bound_port(proxy_runner), proxy_app[PROTOCOLS]
    )
    admin_runner = JsonErrorRunner(
        admin_app,
        refuse_method=router_refusal(admin_app),
        handle_signals=False,
        access_log=None,
        # Nothing there inflates a body: the playground passes it on to the proxy as sent.
        auto_decompress=False,
        shutdown_timeout=min(_ADMIN_SHUTDOWN_S, settings.shutdown.timeout_s),
        # A head trickled to the admin port holds a connection no longer than one to the proxy.
        head_timeout=settings.limits.body_read_timeout_s,
    )
    await proxy_runner.setup()
    await admin_runner.setup()
    try:
        # Workers (grpc_bridge/workers.py) share the proxy port.
        reuse_port = settings.workers > 1 or settings.listen.reuse_port or None
        assert proxy_runner.server is not None
        # With tracing on, every request goes through aiohttp (see the module docstring).
        fast = fast_path(proxy_app, proxy_runner.server) if tracing is None else None
        listen, admin = settings.listen, settings.admin
        site: web.BaseSite
        if fast is None:
            site = SniffSite(
                proxy_runner,
                listen.host,
                listen.port,
                reuse_port=reuse_port,
                shutdown_timeout=settings.shutdown.timeout_s,
                head_timeout=settings.limits.body_read_timeout_s,
                # How long an h2c send may wait for the client (edge/h2c_flow.py).
                stall_timeout=settings.streams.idle_timeout_s,
            )
        else:
            site = FastSite(
                proxy_runner,
                fast,
                listen.host,
                listen.port,
                reuse_port=reuse_port,
                shutdown_timeout=settings.shutdown.timeout_s,
            )
        await start_site(site, "the proxy (listen.port)", listen.host, listen.port)
        admin_site = web.TCPSite(admin_runner, admin.host, admin.port)
        await start_site(admin_site, "the admin endpoints (admin.port)", admin.host, admin.port)
    except OSError:
        # Nothing of the upstream was touched yet: a busy port fails before any channel
        # exists (a grpc channel still connecting could hold the interpreter's exit).
        await proxy_runner.cleanup()
        await admin_runner.cleanup()
        if tracing is not None:
            await tracing.shutdown()
        raise
    # Until discovery has run, the proxy answers 503 and /readyz says not ready.
    await bridge.start()
    server = Server(bridge, metrics, proxy_runner, admin_runner, tracing=tracing)
    server.proxy_port = bound_port(proxy_runner)
    server.admin_port = bound_port(admin_runner)
    log.info(
        "listening",
        proxy=f"{settings.listen.host}:{server.proxy_port}",
        admin=f"{settings.admin.host}:{server.admin_port}",
        upstreams=[u.name for u in settings.upstreams],
    )
    return server


async def serve(
    settings: Settings, on_started: Callable[[Server], Awaitable[None]] | None = None
) -> int:
    """Run until SIGTERM or SIGINT, then drain and return the exit code."""
    server = await start(settings)
    collect_less_often()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def refresh() -> None:
        log.info("refresh_requested", signal="SIGHUP")
        server.bridge.refresh_now()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, refresh)
    try:
        if on_started is not None:
            await on_started(server)
        await stop.wait()
        log.info("signal_received")
        # Handlers stay installed while draining: a second SIGTERM must not
        # kill the process with the default action mid-drain.
        await server.drain_and_stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await server.drain_and_stop()
    return 0
