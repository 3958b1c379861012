"""One upstream's live state, and the background upkeep of its channels and health.

Per upstream, besides discovery (which belongs to the bridge because it swaps
routes):

- :func:`keep_connections` resolves DNS names and re-reads TLS files every
  ``resolve_interval_s`` and on SIGHUP; a changed address set or rotated
  certificate rebuilds the pool. A failed resolution keeps the last good
  addresses: a DNS blip must not take working backends away.
- :func:`poll_health` asks ``grpc.health.v1`` every ``health_interval_s`` when
  ``health_check`` is on, so ``/readyz`` reads a recorded answer instead of
  calling the upstream on every probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from grpc_bridge.discovery.registry import Schema
from grpc_bridge.errors import UpstreamNotReady
from grpc_bridge.log import get_logger
from grpc_bridge.metrics import Metrics
from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.api import CallInvoker
from grpc_bridge.upstream.dial import ConnectionPlan
from grpc_bridge.upstream.health import HealthCheckError, check_health
from grpc_bridge.upstream.invoker import Invoker
from grpc_bridge.upstream.pool import ConnectionPool
from grpc_bridge.upstream.resolver import (
    ConnectionTargets,
    Endpoint,
    Resolve,
    ResolveError,
    parse_target,
    resolve_targets,
    unresolved,
)
from grpc_bridge.upstream.tls import TlsFileError, TlsMaterial, load_tls

log = get_logger("grpc_bridge.upstream")

#: A resolution slower than this keeps the last good addresses (or gRPC's own, at start).
RESOLVE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class HealthAnswer:
    """The last health check: the status it answered (``SERVING``...) or why it failed."""

    status: str | None = None
    error: str | None = None
    #: When it answered (epoch seconds); None before the first check.
    checked: float | None = None


@dataclass
class UpstreamState:
    """One upstream's live state. Each group of fields has one writer: the discovery
    fields (``schema`` to ``last_error``) the bridge's discovery (bridge.py), the
    channel fields (``targets``, ``tls``, ``resolve_error``) :func:`refresh_channels`,
    ``health`` :func:`poll_health` (one record, replaced whole). The admin port renders
    it (admin/upstreams.py)."""

    settings: Upstream
    #: The connections: proxied calls, reflection and health checks alike.
    pool: ConnectionPool
    #: What proxied calls go through (wrapped for tracing when it is on).
    invoker: CallInvoker
    #: Reflection and health checks: the same connections, no metrics, no spans.
    control: CallInvoker
    endpoints: tuple[Endpoint, ...]
    targets: ConnectionTargets
    tls: TlsMaterial | None
    schema: Schema | None = None
    #: Why there is no schema yet; None once discovery has succeeded.
    error: str | None = "discovery has not completed yet"
    #: The last successful discovery.
    last_refresh: float | None = None
    #: The last discovery attempt, its result ("ok" / "failed") and error.
    last_attempt: float | None = None
    last_result: str | None = None
    last_error: str | None = None
    resolve_error: str | None = None
    health: HealthAnswer = HealthAnswer()
    #: Set by SIGHUP: discovery and channel upkeep run at once.
    wake_discovery: asyncio.Event = field(default_factory=asyncio.Event)
    wake_channels: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.settings.name

    def connection_plan(self) -> ConnectionPlan:
        return ConnectionPlan(self.targets, self.tls)

    def apply_plan(self, why: str) -> None:
        """Open new connections if what they are built from changed."""
        previous = self.pool.plan
        if not self.pool.rebuild(self.connection_plan()):
            return
        self.invoker.forget()
        self.control.forget()
        log.info(
            "channels_rebuilt",
            upstream=self.name,
            why=why,
            generation=self.pool.generation,
            addresses=list(self.targets.addresses) or list(self.targets.targets),
            previous=(
                list(previous.targets.addresses or previous.targets.targets) if previous else None
            ),
        )

    def not_ready_reason(self) -> str | None:
        if self.error is not None:
            return self.error
        if not self.pool.usable():
            reason = "no usable channel: every connection is failing (TRANSIENT_FAILURE)"
            failure = self.pool.failure()
            return f"{reason}: {failure}" if failure else reason
        if self.settings.health_check:
            service = self.settings.health_service
            health = self.health
            if health.error is not None:
                return f"health check failed: {health.error}"
            if health.status is None:
                return "health check has not answered yet"
            if health.status != "SERVING":
                return f"health check of service {service!r} answered {health.status}"
        return None


async def open_upstream(
    upstream: Upstream,
    resolve: Resolve,
    metrics: Metrics | None = None,
    wrap: Callable[[CallInvoker], CallInvoker] | None = None,
) -> UpstreamState:
    """Resolve the targets and open the first channels (inside the running loop).

    ``wrap`` wraps the invoker of proxied calls (the tracing hook), once.
    """
    endpoints = tuple(parse_target(t) for t in upstream.targets)
    try:
        targets = await resolve_targets(endpoints, resolve, RESOLVE_TIMEOUT_S)
        resolve_error = None
    except ResolveError as exc:
        # Each connection attempt resolves the names until the bridge's own resolution works.
        targets = unresolved(endpoints)
        resolve_error = str(exc)
        log.warning("resolve_failed", upstream=upstream.name, error=resolve_error)
    if upstream.transport == "grpcio":
        log.warning(
            "setting_retired",
            upstream=upstream.name,
            setting="transport",
            value="grpcio",
            detail="the grpcio client transport was retired: calls use the native client",
        )
    tls = load_tls(upstream.tls)
    pool = ConnectionPool(upstream, metrics=metrics)
    pool.open(ConnectionPlan(targets, tls))
    invoker: CallInvoker = Invoker(pool, metrics)
    return UpstreamState(
        upstream,
        pool,
        invoker if wrap is None else wrap(invoker),
        Invoker(pool),
        endpoints,
        targets,
        tls,
        resolve_error=resolve_error,
    )


def needs_upkeep(state: UpstreamState) -> bool:
    return state.settings.tls.enabled or any(e.is_name for e in state.endpoints)


async def wait_or_wake(event: asyncio.Event, seconds: float | None) -> None:
    """Sleep ``seconds`` (None: forever) unless ``event`` is set first; then clear it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    event.clear()


async def keep_connections(state: UpstreamState, resolve: Resolve) -> None:
    interval = state.settings.resolve_interval_s or None
    while True:
        await wait_or_wake(state.wake_channels, interval)
        await refresh_channels(state, resolve)


async def refresh_channels(state: UpstreamState, resolve: Resolve) -> None:
    """Resolve names and re-read TLS files now; rebuild the channels if anything changed."""
    why = []
    if any(e.is_name for e in state.endpoints):
        try:
            targets = await resolve_targets(state.endpoints, resolve, RESOLVE_TIMEOUT_S)
        except ResolveError as exc:
            if state.resolve_error != str(exc):
                log.warning("resolve_failed", upstream=state.name, error=str(exc))
            state.resolve_error = str(exc)
        else:
            state.resolve_error = None
            if targets != state.targets:
                why.append("addresses changed")
            state.targets = targets
    if state.settings.tls.enabled:
        try:
            tls = load_tls(state.settings.tls)
        except TlsFileError as exc:
            log.warning("tls_reload_failed", upstream=state.name, error=str(exc))
        else:
            if tls != state.tls:
                why.append("TLS files changed")
            state.tls = tls
    if why:
        state.apply_plan(", ".join(why))


#: How often channel states are sampled for ``channel_state`` log events.
CHANNEL_WATCH_INTERVAL_S = 0.5


async def watch_channel_states(state: UpstreamState) -> None:
    """Log each channel's connectivity changes (READY → TRANSIENT_FAILURE, ...) as events.

    Sampled rather than awaited per channel: the pool replaces its channels on
    DNS or TLS changes, and sampling follows that without extra bookkeeping.
    """
    last: dict[int, str] = {}
    while True:
        current = state.pool.state_map()
        for channel, now in current.items():
            before = last.get(channel)
            if before != now:
                log.info(
                    "channel_state",
                    upstream=state.name,
                    channel=channel,
                    previous=before,
                    state=now,
                )
        last = current
        await asyncio.sleep(CHANNEL_WATCH_INTERVAL_S)


async def poll_health(state: UpstreamState) -> None:
    up = state.settings
    # A check never outlives the interval by much, and never gets under a second.
    timeout = max(1.0, up.health_interval_s)
    while True:
        before = state.health
        try:
            status = await check_health(state.control, up.health_service, timeout)
            now = HealthAnswer(status, None, time.time())
        except (HealthCheckError, UpstreamNotReady) as exc:
            now = HealthAnswer(None, str(exc), time.time())
        state.health = now
        if (now.status, now.error) != (before.status, before.error):
            log.info(
                "health_changed",
                upstream=state.name,
                service=up.health_service,
                status=now.status,
                error=now.error,
            )
        await asyncio.sleep(up.health_interval_s)
