"""``workers: N`` / ``--workers N``: N processes share the proxy port; the parent keeps admin.

::

    grpc-bridge serve --workers 2          the parent: admin listener, supervision, signals
     ├─ python -m grpc_bridge.workers      worker 0: proxy listener (SO_REUSEPORT), its own
     │                                     Bridge — channels, discovery, route table — and a
     │                                     private admin listener on 127.0.0.1:<ephemeral>
     └─ python -m grpc_bridge.workers      worker 1: the same

- The kernel spreads new proxy connections over the workers (SO_REUSEPORT).
  The parent binds the proxy address first (also with SO_REUSEPORT, never
  listening) to resolve port 0 and fail early on a taken port, then hands the
  resolved settings to each worker.
- Admin endpoints stay one: the parent serves them (admin/workers.py),
  aggregating /readyz (ready only when every worker is) and /metrics
  (counters summed, gauges per worker), and forwarding the rest to a worker.
- SIGTERM/SIGINT to the parent: /readyz turns 503 at once, every worker gets
  SIGTERM and drains as a single process does (shutdown.drain_s, then
  shutdown.timeout_s), then the parent stops; exit 0 when every worker did.
  SIGHUP is passed on to every worker (refresh discovery, DNS, TLS files).
- A worker that dies is started again (backoff 0.5 s doubling to 30 s) and
  logged as ``worker_exited``; meanwhile /readyz says which one is missing.
  Workers get SIGTERM if the parent dies (Linux PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

import orjson
import structlog
from aiohttp import web
from pydantic import AliasChoices

from grpc_bridge.admin.errors import router_refusal
from grpc_bridge.admin.workers import build_worker_admin_app
from grpc_bridge.edge.aiohttp_compat import bound_port
from grpc_bridge.edge.listen import listen_error, start_site
from grpc_bridge.edge.parse_errors import JsonErrorRunner
from grpc_bridge.log import get_logger
from grpc_bridge.settings import ENV_PREFIX, Listener, Settings, load_settings

log = get_logger("grpc_bridge.workers")

INDEX_ENV = "_GRPC_BRIDGE_WORKER_INDEX"
SETTINGS_ENV = "_GRPC_BRIDGE_WORKER_SETTINGS"
_START_TIMEOUT_S = 30.0
_BACKOFF_S = (0.5, 30.0)
_STABLE_AFTER_S = 60.0  # a worker up this long has its restart backoff reset


def dump_settings(settings: Settings) -> str:
    """Settings as JSON that Settings.model_validate reads back to an equal object."""
    data = settings.model_dump(mode="json")
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices) and name in data:
            data[str(alias.choices[0])] = data.pop(name)
    return orjson.dumps(data).decode()


def load_dumped_settings(text: str) -> Settings:
    # Every key is given, so no environment variable or YAML file can add to them;
    # the parent also leaves GRPC_BRIDGE_* out of a worker's environment.
    return load_settings(None, orjson.loads(text))


def reserve_port(listen: Listener) -> socket.socket:
    """Bind (not listen) the proxy address with SO_REUSEPORT: resolves port 0, fails early."""
    info = socket.getaddrinfo(
        listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise listen_error(exc, "the proxy (listen.port)", listen.host, listen.port) from exc
    return sock


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    admin_port: int = 0
    started_at: float = 0.0
    restarts: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and self.admin_port > 0


class Supervisor:
    """Starts the workers, restarts the ones that die, stops them all on request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers = [Worker(i) for i in range(settings.workers)]
        self.draining = False
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    # The WorkerView protocol, for the admin app.
    def admin_ports(self) -> list[tuple[int, int | None, int | None]]:
        return [
            (w.index, w.process.pid if w.process else None, w.admin_port if w.alive else None)
            for w in self.workers
        ]

    def is_draining(self) -> bool:
        return self.draining

    async def start(self) -> None:
        try:
            await asyncio.gather(*(self._spawn(w) for w in self.workers))
        except BaseException:
            await self.stop()
            raise
        self._watchers = [asyncio.create_task(self._watch(w)) for w in self.workers]

    async def _spawn(self, worker: Worker) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update({INDEX_ENV: str(worker.index), SETTINGS_ENV: dump_settings(self.settings)})
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "grpc_bridge.workers", env=env, stdout=asyncio.subprocess.PIPE
        )
        worker.process, worker.admin_port, worker.started_at = process, 0, time.monotonic()
        assert process.stdout is not None
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                line = await process.stdout.readline()
        except TimeoutError:
            line = b""
        if not line:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            code = await process.wait()
            raise WorkerFailed(
                f"worker {worker.index} did not start (exit code {code}); see its log"
            )
        worker.admin_port = int(orjson.loads(line)["admin_port"])
        log.info("worker_started", worker=worker.index, pid=process.pid)

    async def _watch(self, worker: Worker) -> None:
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if self._stopping:
                return
            if time.monotonic() - worker.started_at > _STABLE_AFTER_S:
                worker.restarts = 0
            delay = min(_BACKOFF_S[1], _BACKOFF_S[0] * 2**worker.restarts)
            worker.restarts += 1
            log.warning("worker_exited", worker=worker.index, exit_code=code, restart_in_s=delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn(worker)
            except (WorkerFailed, OSError, ValueError, KeyError) as exc:
                # OSError: the fork itself failed (EAGAIN, ENOMEM); ValueError/KeyError:
                # a first line that is not {"admin_port": N}. Either way, try again later.
                log.error("worker_restart_failed", worker=worker.index, error=str(exc))

    def signal_all(self, sig: signal.Signals) -> None:
        for worker in self.workers:
            if sig == signal.SIGHUP and not worker.alive:
                # Still starting: it discovers afresh anyway, and may not handle SIGHUP yet.
                continue
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    async def stop(self) -> bool:
        """SIGTERM every worker and wait for their drains; True when each exited 0."""
        self._stopping = True
        self.draining = True
        for task in self._watchers:
            task.cancel()
        running = [w.process for w in self.workers if w.process and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        shutdown = self.settings.shutdown
        try:
            async with asyncio.timeout(shutdown.drain_s + shutdown.timeout_s + 10):
                codes = [await p.wait() for p in running]
        except TimeoutError:
            for process in running:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            codes = [await p.wait() for p in running]
            log.error("workers_killed", after_s=shutdown.drain_s + shutdown.timeout_s + 10)
        return all(code == 0 for code in codes)


class WorkerFailed(Exception):
    """A worker process exited or stayed silent before reporting its admin port."""


async def serve_workers(settings: Settings) -> int:
    """The parent: run the workers and the admin listener until SIGTERM or SIGINT."""
    reservation = reserve_port(settings.listen)
    port = reservation.getsockname()[1]
    resolved = settings.model_copy(
        update={"listen": Listener(host=settings.listen.host, port=port)}
    )
    supervisor = Supervisor(resolved)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP (refresh discovery, DNS, TLS files) is each worker's to act on.
    loop.add_signal_handler(signal.SIGHUP, supervisor.signal_all, signal.SIGHUP)
    # Parse errors answer with the Status body here too, as on each worker's listeners.
    app = build_worker_admin_app(supervisor)
    # Every endpoint a worker answers for the parent is a GET.
    refuse = router_refusal(app, fallback=("GET", "HEAD"))
    # No inflating of bodies: the playground passes them on to the proxy as sent.
    runner = JsonErrorRunner(
        app,
        refuse_method=refuse,
        handle_signals=False,
        access_log=None,
        auto_decompress=False,
        # As on each worker's own listeners (edge/head_deadline.py).
        head_timeout=settings.limits.body_read_timeout_s,
    )
    try:
        await runner.setup()
        admin = settings.admin
        site = web.TCPSite(runner, admin.host, admin.port)
        await start_site(site, "the admin endpoints (admin.port)", admin.host, admin.port)
        try:
            await supervisor.start()
        except WorkerFailed as exc:
            log.error("workers_failed", error=str(exc))
            return 1
        admin_port = bound_port(runner)
        log.info(
            "listening",
            proxy=f"{settings.listen.host}:{port}",
            admin=f"{settings.admin.host}:{admin_port}",
            workers=settings.workers,
            upstreams=[u.name for u in settings.upstreams],
        )
        await stop.wait()
        log.info("signal_received")
        log.info("draining", workers=settings.workers)
        clean = await supervisor.stop()
        log.info("stopped", clean=clean)
        return 0 if clean else 1
    finally:
        if not supervisor.draining:
            await supervisor.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        reservation.close()


# --- the worker process ------------------------------------------------------------------------


def _die_with_parent() -> None:
    """SIGTERM this process when the parent dies (Linux only): no orphan keeps the port."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def worker_main() -> int:
    from grpc_bridge.app import Server, serve
    from grpc_bridge.log import configure_logging
    from grpc_bridge.runloop import run

    _die_with_parent()
    # SIGHUP means "refresh", never "exit": ignored until serve() installs its handler.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    index = int(os.environ[INDEX_ENV])
    settings = load_dumped_settings(os.environ[SETTINGS_ENV])
    configure_logging(settings.log.format, settings.log.level)
    # Every log line of this process says which worker wrote it.
    structlog.contextvars.bind_contextvars(worker=index)
    # The parent owns the public admin port; this one is reached only by the parent.
    # Only the parent's admin listener is public; it answers /playground itself.
    admin = settings.admin.model_copy(update={"host": "127.0.0.1", "port": 0, "playground": False})
    private = settings.model_copy(update={"admin": admin})

    async def report(server: Server) -> None:
        sys.stdout.write(orjson.dumps({"admin_port": server.admin_port}).decode() + "\n")
        sys.stdout.flush()

    return run(serve(private, on_started=report))


if __name__ == "__main__":
    sys.exit(worker_main())
