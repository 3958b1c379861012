"""The running bridge: per-upstream channels and schemas, and the current route table.

Discovery runs in one background task per upstream: retried with backoff
until it first succeeds (the bridge serves, not ready, meanwhile), then
repeated every ``discovery.refresh_interval_s``. Every success builds a new
route table off to the side and swaps the reference, so a request sees one
consistent snapshot; a failed refresh keeps the last good one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.discovery.loader import DiscoveryError, discover, load_descriptor_sets
from grpc_bridge.discovery.registry import Schema
from grpc_bridge.errors import UpstreamNotReady
from grpc_bridge.log import get_logger
from grpc_bridge.routing.plan import MethodPlan, UpstreamLimits, plans_for
from grpc_bridge.routing.table import RouteTable
from grpc_bridge.settings import Settings, Upstream
from grpc_bridge.upstream.invoker import Invoker
from grpc_bridge.upstream.pool import ChannelPool
from grpc_bridge.upstream.reflection import ReflectionClient

log = get_logger("grpc_bridge.bridge")


@dataclass
class UpstreamState:
    settings: Upstream
    pool: ChannelPool
    invoker: Invoker
    schema: Schema | None = None
    plans: list[MethodPlan] = field(default_factory=list)
    error: str | None = "discovery has not completed yet"
    last_refresh: float | None = None
    last_error: str | None = None
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.settings.name


def json_options(settings: Settings) -> JsonOptions:
    j = settings.json_
    return JsonOptions(
        use_proto_names=j.use_proto_names,
        emit_unpopulated=j.emit_unpopulated,
        enums_as_ints=j.enums_as_ints,
        ignore_unknown_fields=j.ignore_unknown_fields,
        max_depth=settings.limits.max_json_depth,
    )


def load_static_schema(upstream: Upstream) -> Schema | None:
    """Descriptor-set files, when configured; raises DiscoveryError naming the file."""
    if not upstream.descriptor_sets:
        return None
    return load_descriptor_sets(
        upstream.name,
        upstream.descriptor_sets,
        include=upstream.services.include,
        exclude=upstream.services.exclude,
    )


class Bridge:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.json_options = json_options(settings)
        self.draining = False
        #: Set when the bridge stops: long-lived streams end with a terminal frame
        #: (WebSocket close 1001) instead of being cut.
        self.closing = asyncio.Event()
        self.routes = RouteTable(())
        self._upstreams: dict[str, UpstreamState] = {}
        self._all_discovered = asyncio.Event()

    @property
    def upstreams(self) -> Mapping[str, UpstreamState]:
        return self._upstreams

    async def start(self) -> None:
        """Open channels and start discovery; returns without waiting for upstreams."""
        for up in self.settings.upstreams:
            pool = ChannelPool(up)
            pool.open()
            self._upstreams[up.name] = UpstreamState(up, pool, Invoker(pool))
        for state in self._upstreams.values():
            static = load_static_schema(state.settings)
            if static is not None:
                self._install(state, static)
            else:
                state.task = asyncio.create_task(
                    self._discovery_loop(state), name=f"discovery:{state.name}"
                )

    async def stop(self) -> None:
        self.closing.set()
        for state in reversed(list(self._upstreams.values())):
            if state.task is not None:
                state.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.task
        for state in reversed(list(self._upstreams.values())):
            await state.pool.close()

    async def wait_discovered(self) -> None:
        """Until every upstream has a schema (for the demo and tests; serving never waits)."""
        await self._all_discovered.wait()

    def invoker(self, upstream: str) -> Invoker:
        state = self._upstreams.get(upstream)
        if state is None:
            raise UpstreamNotReady(f"upstream {upstream!r} is not configured")
        return state.invoker

    async def discover_once(self, state: UpstreamState) -> Schema:
        _, channel = state.pool.pick()
        timeout = self.settings.discovery.timeout_s
        client = await ReflectionClient.connect(channel, timeout=timeout, upstream=state.name)
        try:
            return await discover(
                state.name,
                client,
                include=state.settings.services.include,
                exclude=state.settings.services.exclude,
            )
        finally:
            await client.close()

    async def _discovery_loop(self, state: UpstreamState) -> None:
        cfg = self.settings.discovery
        delay = cfg.retry_initial_s
        while True:
            try:
                schema = await self.discover_once(state)
            except DiscoveryError as exc:
                wait = delay * (
                    0.5 + random.random() / 2
                )  # jitter: sidecars don't retry in lockstep
                delay = min(delay * 2, cfg.retry_max_s)
                state.last_error = str(exc)
                if state.schema is None:
                    state.error = f"discovery failed: {exc}"
                    log.warning(
                        "discovery_failed",
                        upstream=state.name,
                        error=str(exc),
                        retry_in_s=round(wait, 2),
                    )
                else:
                    # A failed refresh keeps serving (and stays ready) with the last good schema.
                    wait = min(wait, cfg.refresh_interval_s)
                    log.warning(
                        "refresh_failed",
                        upstream=state.name,
                        error=str(exc),
                        retry_in_s=round(wait, 2),
                    )
                await asyncio.sleep(wait)
                continue
            delay = cfg.retry_initial_s
            self._install(state, schema)
            if cfg.refresh_interval_s == 0:
                return
            await asyncio.sleep(cfg.refresh_interval_s)

    def _install(self, state: UpstreamState, schema: Schema) -> None:
        previous = state.schema
        up = state.settings
        state.plans = plans_for(
            schema, self.json_options, UpstreamLimits(up.timeout_s, up.max_timeout_s)
        )
        state.schema = schema
        state.error = None
        state.last_refresh = time.time()
        state.invoker.forget()
        state.pool.connect()
        self._rebuild_routes()
        if all(s.schema is not None for s in self._upstreams.values()):
            self._all_discovered.set()
        old = set(previous.methods) if previous else set()
        new = set(schema.methods)
        log.info(
            "discovered" if previous is None else "refreshed",
            upstream=state.name,
            source=schema.source,
            services=list(schema.service_names),
            methods=len(new),
            added=sorted(new - old) if previous else None,
            removed=sorted(old - new) if previous else None,
        )

    def _rebuild_routes(self) -> None:
        plans: list[MethodPlan] = []
        seen: dict[str, str] = {}
        for state in self._upstreams.values():
            for plan in state.plans:
                owner = seen.setdefault(plan.info.path, state.name)
                if owner != state.name:
                    log.warning(
                        "method_shadowed", path=plan.info.path, served_by=owner, ignored=state.name
                    )
                    continue
                plans.append(plan)
        self.routes = RouteTable(plans)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        upstreams: dict[str, Any] = {}
        ready = not self.draining
        for state in self._upstreams.values():
            reason = state.error
            if reason is None and not state.pool.usable():
                reason = "no usable channel: every connection is in TRANSIENT_FAILURE"
            upstreams[state.name] = {
                "ready": reason is None,
                **({"reason": reason} if reason else {}),
                "targets": list(state.settings.targets),
                "channels": state.pool.states(),
                "services": list(state.schema.service_names) if state.schema else [],
                "last_refresh": state.last_refresh,
            }
            ready = ready and reason is None
        return ready, {"ready": ready, "draining": self.draining, "upstreams": upstreams}
