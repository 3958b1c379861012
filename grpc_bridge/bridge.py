"""The running bridge: per-upstream connections and schemas, and the current route table.

Discovery runs in one background task per upstream: retried with backoff
until it first succeeds (the bridge serves, not ready, meanwhile), then
repeated every ``discovery.refresh_interval_s`` and on SIGHUP
(:meth:`Bridge.refresh_now`). Every success builds a new route table off to
the side and swaps the reference, so a request sees one consistent snapshot; a
failed refresh keeps the last good one. Channel upkeep (DNS, TLS files) and
health polling live in :mod:`grpc_bridge.upstream.state`.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from google.protobuf.descriptor_pool import DescriptorPool

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.discovery.loader import DiscoveryError, discover, load_descriptor_sets
from grpc_bridge.discovery.reflection_index import ReflectionIndex
from grpc_bridge.discovery.registry import Schema
from grpc_bridge.errors import UpstreamNotReady
from grpc_bridge.log import get_logger
from grpc_bridge.metrics import Metrics
from grpc_bridge.routing.assemble import CONFLICT_PREFIX, assemble_routes
from grpc_bridge.routing.plan import MethodPlan, UpstreamLimits, plans_for
from grpc_bridge.routing.reflection import exposed_index, reflection_plans
from grpc_bridge.routing.table import RouteTable
from grpc_bridge.settings import Settings, Upstream
from grpc_bridge.upstream.api import CallInvoker
from grpc_bridge.upstream.local_reflection import LOCAL_UPSTREAM, LocalReflection
from grpc_bridge.upstream.reflection import ReflectionClient
from grpc_bridge.upstream.resolver import Resolve, system_resolve
from grpc_bridge.upstream.state import (
    UpstreamState,
    keep_connections,
    needs_upkeep,
    open_upstream,
    poll_health,
    wait_or_wake,
    watch_channel_states,
)

__all__ = ["Bridge", "UpstreamState", "json_options", "load_static_schema"]

log = get_logger("grpc_bridge.bridge")

#: Wraps each upstream's call invoker once, at start (the tracing hook: tracing/).
InvokerWrapper = Callable[[Upstream, CallInvoker], CallInvoker]

#: ``listener(upstream_name, ok)`` after every discovery run (metrics hook).
RefreshListener = Callable[[str, bool], None]


def json_options(settings: Settings) -> JsonOptions:
    return JsonOptions.from_settings(settings)


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
    def __init__(
        self,
        settings: Settings,
        *,
        resolve: Resolve = system_resolve,
        metrics: Metrics | None = None,
        wrap_invoker: InvokerWrapper | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._wrap_invoker = wrap_invoker
        self.json_options = json_options(settings)
        self.draining = False
        #: Set when the bridge stops: long-lived streams end with a terminal frame
        #: (WebSocket close 1001) instead of being cut.
        self.closing = asyncio.Event()
        self.routes = RouteTable(())
        self.refresh_listeners: list[RefreshListener] = []
        self._resolve = resolve
        self._upstreams: dict[str, UpstreamState] = {}
        #: Per upstream, the plans of its last discovered schema (the route table's input).
        self._plans: dict[str, list[MethodPlan]] = {}
        # Server reflection, answered by the bridge from what it exposes (routing/reflection.py):
        # its index is built for the first reflection call after a route table swap, so a
        # bridge nobody reflects on never builds one; in slices, between which the loop
        # serves every other call (the reflection calls wait for it). A build that failed (a
        # bug) is tried again by the next reflection call, not kept for the table's life.
        first = settings.upstreams[0]  # settings require one
        self._reflection = reflection_plans(
            self.json_options, UpstreamLimits(first.timeout_s, first.max_timeout_s)
        )
        self._index: tuple[RouteTable, asyncio.Task[ReflectionIndex]] | None = None
        # The index is the bridge's, not a call's: it is built in the context the bridge
        # was made in (a worker's ``worker`` log field), never the first reflecting call's
        # (its span, its trace_id/span_id log fields, its connection's client budget).
        self._context = contextvars.copy_context()
        self._local = LocalReflection(
            self._exposed,
            # Its answers are held to the bound the upstreams' answers are held to.
            max_message_bytes=min(u.max_receive_message_bytes for u in settings.upstreams),
            metrics=metrics,
        )
        self._all_discovered = asyncio.Event()

    @property
    def upstreams(self) -> Mapping[str, UpstreamState]:
        return self._upstreams

    async def start(self) -> None:
        """Open channels and start background work; returns without waiting for upstreams."""
        statics = {up.name: load_static_schema(up) for up in self.settings.upstreams}
        for up in self.settings.upstreams:
            wrap = self._wrap_invoker
            state = await open_upstream(
                up, self._resolve, self.metrics, None if wrap is None else partial(wrap, up)
            )
            self._upstreams[up.name] = state
        for state in self._upstreams.values():
            static = statics[state.name]
            if static is not None:
                state.last_attempt, state.last_result = time.time(), "ok"
                self._install(state, static)
            else:
                self._spawn(state, self._discovery_loop(state), "discovery")
            if needs_upkeep(state):
                self._spawn(state, keep_connections(state, self._resolve), "channels")
            if state.settings.health_check:
                self._spawn(state, poll_health(state), "health")
            self._spawn(state, watch_channel_states(state), "channel-states")

    def _spawn(self, state: UpstreamState, work: Any, what: str) -> None:
        task = asyncio.create_task(work, name=f"{what}:{state.name}")
        task.add_done_callback(_report_crash)
        state.tasks.append(task)

    async def stop(self) -> None:
        """Stop background work, then close channels in reverse order of opening."""
        self.closing.set()
        if self._index is not None:
            self._index[1].cancel()
        for state in reversed(list(self._upstreams.values())):
            for task in state.tasks:
                task.cancel()
            # return_exceptions: a task that crashed earlier (already logged by
            # _report_crash) must not stop the channels from being closed.
            await asyncio.gather(*state.tasks, return_exceptions=True)
        for state in reversed(list(self._upstreams.values())):
            await state.pool.close()

    async def wait_discovered(self) -> None:
        """Until every upstream has a schema (for the demo and tests; serving never waits)."""
        await self._all_discovered.wait()

    def refresh_now(self) -> None:
        """Re-run discovery and channel upkeep for every upstream now (SIGHUP)."""
        for state in self._upstreams.values():
            state.wake_discovery.set()
            state.wake_channels.set()

    def invoker(self, upstream: str) -> CallInvoker:
        state = self._upstreams.get(upstream)
        if state is None:
            if upstream == LOCAL_UPSTREAM:
                return self._local
            raise UpstreamNotReady(f"upstream {upstream!r} is not configured")
        return state.invoker

    async def discover_once(self, state: UpstreamState) -> Schema:
        timeout = self.settings.discovery.timeout_s
        # On the traffic's connections: what discovery reaches, calls reach.
        client = await ReflectionClient.connect(state.control, timeout=timeout, upstream=state.name)
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
            state.last_attempt = time.time()
            try:
                schema = await self.discover_once(state)
            except Exception as exc:
                # This loop is its task's outermost layer: nothing may end
                # discovery for good. Expected failures are logged below;
                # anything else is a bug, logged with its traceback, and retried.
                if not isinstance(exc, DiscoveryError | UpstreamNotReady):
                    log.exception("discovery_error", upstream=state.name)
                wait = delay * (
                    0.5 + random.random() / 2
                )  # jitter: sidecars don't retry in lockstep
                delay = min(delay * 2, cfg.retry_max_s)
                state.last_result, state.last_error = "failed", str(exc)
                self._notify(state, ok=False)
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
                    wait = min(wait, cfg.refresh_interval_s or wait)
                    log.warning(
                        "refresh_failed",
                        upstream=state.name,
                        error=str(exc),
                        retry_in_s=round(wait, 2),
                    )
                await wait_or_wake(state.wake_discovery, wait)
                continue
            delay = cfg.retry_initial_s
            state.last_result = "ok"
            self._install(state, schema)
            self._notify(state, ok=True)
            # refresh_interval_s 0: no periodic refresh, but SIGHUP still refreshes.
            await wait_or_wake(state.wake_discovery, cfg.refresh_interval_s or None)

    def _notify(self, state: UpstreamState, *, ok: bool) -> None:
        for listener in self.refresh_listeners:
            listener(state.name, ok)

    def _install(self, state: UpstreamState, schema: Schema) -> None:
        previous = state.schema
        state.last_refresh = time.time()
        if previous is not None and _same(previous, schema):
            # Nothing to swap: the routes, codecs and channels stay as they are.
            log.debug("refreshed", upstream=state.name, changed=False)
            return
        up = state.settings
        limits = UpstreamLimits(up.timeout_s, up.max_timeout_s)
        self._plans[state.name] = plans_for(schema, self.json_options, limits)
        state.schema = schema
        state.error = None
        state.invoker.forget()
        self._rebuild_routes()
        if all(s.schema is not None for s in self._upstreams.values()):
            self._all_discovered.set()
        old = set(previous.methods) if previous else set()
        new = set(schema.methods)
        old_services = set(previous.service_names) if previous else set()
        new_services = set(schema.service_names)
        log.info(
            "discovered" if previous is None else "refreshed",
            upstream=state.name,
            source=schema.source,
            services=list(schema.service_names),
            methods=len(new),
            added=sorted(new - old) if previous else None,
            removed=sorted(old - new) if previous else None,
            services_added=sorted(new_services - old_services) if previous else None,
            services_removed=sorted(old_services - new_services) if previous else None,
        )

    def _rebuild_routes(self) -> None:
        plans: list[MethodPlan] = []
        seen: dict[str, str] = {}
        for state in self._upstreams.values():
            for plan in self._plans.get(state.name, ()):
                owner = seen.setdefault(plan.info.path, state.name)
                if owner != state.name:
                    log.warning(
                        "method_shadowed", path=plan.info.path, served_by=owner, ignored=state.name
                    )
                    continue
                plans.append(plan)

        # REST bindings: conflicts and skipped rules are decided in routing.assemble.
        def discovered(name: str | None) -> bool:
            states = self._upstreams.values() if name is None else [self._upstreams[name]]
            return all(s.schema is not None for s in states)

        result = assemble_routes(
            plans,
            self.settings.routes,
            self.json_options,
            self.routes,
            discovered=discovered,
            unlisted=self._reflection,
        )
        for conflict in result.conflicts:
            log.error(
                "route_conflict",
                error=conflict,
                action="upstream left out"
                if result.table is not None
                else "kept the previous route table",
            )
        for kind, problem in result.new_problems:
            (log.error if kind == "route_invalid" else log.warning)(kind, problem=problem)
        if result.table is None:
            return
        self.routes = result.table
        for state in self._upstreams.values():
            # Not ready while left out for a conflict; ready again once routed.
            if state.name in result.excluded:
                state.error = result.excluded[state.name]
            elif state.error is not None and state.error.startswith(CONFLICT_PREFIX):
                state.error = None

    def _exposed(self) -> asyncio.Task[ReflectionIndex]:
        """The reflection index of the current route table, built once per table (again
        after a build that failed)."""
        table = self.routes
        if self._index is None or self._index[0] is not table or _failed(self._index[1]):
            schemas = [s.schema for s in self._upstreams.values() if s.schema is not None]
            received = {schema.pool: schema.files for schema in schemas}
            task = asyncio.create_task(
                _built_index(table, received),
                name="reflection-index",
                context=self._context.copy(),
            )
            task.add_done_callback(_report_crash)
            self._index = (table, task)
        return self._index[1]

    def channel_summary(self) -> list[tuple[str, bool, list[str]]]:
        """``(upstream, ready, channel states)`` for the metrics collector (read at scrape)."""
        return [
            (s.name, s.not_ready_reason() is None, s.pool.states())
            for s in self._upstreams.values()
        ]


def _same(a: Schema, b: Schema) -> bool:
    """The same services from the same files: a refresh that changed nothing."""
    return a.service_names == b.service_names and dict(a.files) == dict(b.files)


async def _built_index(
    table: RouteTable, received: Mapping[DescriptorPool, Mapping[str, bytes]]
) -> ReflectionIndex:
    index = await exposed_index(table, received)
    for problem in index.skipped:
        log.warning("reflection_file_skipped", problem=problem)
    if index.undescribed:
        log.warning("reflection_methods_undescribed", methods=index.undescribed)
    return index


def _failed(task: asyncio.Task[Any]) -> bool:
    """Ended by an exception (not cancelled: the bridge stopped)."""
    return task.done() and not task.cancelled() and task.exception() is not None


def _report_crash(task: asyncio.Task[Any]) -> None:
    """A background task that died of a bug (a loop would silently stop refreshing): say so
    loudly."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background_task_crashed", task=task.get_name(), exc_info=exc)
