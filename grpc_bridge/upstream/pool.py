"""Connections of the native HTTP/2 client to one upstream, round-robin, rebuilt on change.

Each *slot* (:mod:`~grpc_bridge.upstream.slot`) is one connection to one
address, kept up; an upstream with N addresses and ``pool_size`` P gets N*P
slots, which is what P grpc channels with round_robin over N addresses open.
A call takes the next slot that can take it now, passing over one that is
reconnecting while another is up. When the :class:`ConnectionPlan` changes
(addresses, TLS files) a new generation of slots is opened and the old one
drains: calls in flight finish, up to ``retire_grace`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import TYPE_CHECKING

from grpc_bridge.errors import UpstreamNotReady
from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.dial import (
    ConnectionPlan,
    addresses_of,
    authority_of,
    server_name_of,
    tls_context,
)
from grpc_bridge.upstream.h2 import hpack_codec
from grpc_bridge.upstream.h2.connection import Connection
from grpc_bridge.upstream.slot import SHUTDOWN, TRANSIENT_FAILURE, Dial, Slot, until

if TYPE_CHECKING:
    from grpc_bridge.metrics import Metrics


async def _closed(slots: list[Slot], timeout: float) -> None:
    """Until every (gracefully closing) connection of ``slots`` is gone, or ``timeout``."""
    waiting = [s.connection.closed for s in slots if s.connection is not None]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)


class ConnectionPool:
    """See the module docstring."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        retire_grace: float | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.plan: ConnectionPlan | None = None
        self.generation = 0
        self.built_at: float | None = None
        #: The request-header fields every call on these connections starts with.
        self.header_prefix = b""
        #: How long calls may outlive their connection's drain (the longest deadline, and some).
        self.retire_grace = upstream.max_timeout_s + 5.0 if retire_grace is None else retire_grace
        self._slots: list[Slot] = []
        self._ids = itertools.count()
        self._next = 0
        self._retiring: dict[asyncio.Task[None], list[Slot]] = {}
        self._closed = False

    def open(self, plan: ConnectionPlan) -> None:
        self._build(plan)
        self.connect()

    def rebuild(self, plan: ConnectionPlan) -> bool:
        """New connections when the addresses or TLS material changed; True when it did."""
        if self._closed or plan == self.plan:
            return False
        old = self._slots
        self._build(plan)
        self.connect()
        for slot in old:
            slot.close(graceful=True)
        task = asyncio.create_task(self._retire(old), name="retire-connections")
        self._retiring[task] = old
        task.add_done_callback(lambda t: self._retiring.pop(t, None))
        return True

    async def _retire(self, slots: list[Slot]) -> None:
        # Calls in flight finish (up to the longest deadline); then the rest is cut.
        await _closed(slots, self.retire_grace)
        for slot in slots:
            slot.close(graceful=False)

    def _build(self, plan: ConnectionPlan) -> None:
        addresses = addresses_of(plan.targets)
        assert addresses, plan.targets
        upstream = self.upstream
        context = tls_context(upstream, plan)
        authority = authority_of(upstream, plan.targets)
        dial = Dial(
            upstream,
            context,
            server_name_of(upstream, authority),
            self.retire_grace,
            self.metrics,
        )
        self.header_prefix = (
            hpack_codec.METHOD_POST
            + (hpack_codec.SCHEME_HTTPS if context is not None else hpack_codec.SCHEME_HTTP)
            + hpack_codec.authority(authority)
        )
        self._slots = [
            Slot(dial, next(self._ids), address)
            for _ in range(upstream.pool_size)
            for address in addresses
        ]
        self._next = 0
        self.plan = plan
        self.generation += 1
        self.built_at = time.time()

    @property
    def size(self) -> int:
        return len(self._slots)

    def connect(self) -> None:
        for slot in self._slots:
            slot.connect()

    def check_open(self) -> None:
        """Raises UpstreamNotReady when the pool has no connections (closed, or not opened)."""
        if not self._slots:
            raise UpstreamNotReady(f"upstream {self.upstream.name!r} is shutting down")

    def pick(self) -> Slot:
        """Next slot round-robin that can take a call now, else one that is connecting.

        Raises UpstreamNotReady when the pool is closed.
        """
        slots = self._slots
        count = len(slots)
        if count == 0:
            raise UpstreamNotReady(f"upstream {self.upstream.name!r} is shutting down")
        start = self._next
        fallback = None
        for step in range(count):
            index = (start + step) % count
            slot = slots[index]
            if slot.ready_connection() is not None:
                self._next = (index + 1) % count
                return slot
            if fallback is None and slot.state != TRANSIENT_FAILURE:
                fallback = slot
        self._next = (start + 1) % count
        return fallback if fallback is not None else slots[start]

    async def connection(self, deadline: float | None) -> Connection:
        """A connection for a new call; waits while its socket takes no writes (backpressure)."""
        return await self.connection_of(self.pick(), deadline)

    def ready_now(self, slot: Slot) -> Connection | None:
        """``slot``'s connection when a call can start on it at once (no coroutine to await:
        the usual case); None: :meth:`connection_of` waits for one."""
        connection = slot.ready_connection()
        if connection is not None and connection.writable:
            return connection
        return None

    async def connection_of(self, slot: Slot, deadline: float | None) -> Connection:
        """A connection of ``slot`` (:meth:`pick`'s) for a new call, waited for."""
        connection = slot.ready_connection()
        if connection is None:
            connection = await slot.acquire(deadline)
        if not connection.writable:
            await until(connection.wait_writable(), deadline, asyncio.get_running_loop())
        return connection

    def states(self) -> list[str]:
        return [s.state for s in self._slots]

    def state_map(self) -> dict[int, str]:
        return {s.id: s.state for s in self._slots}

    def usable(self) -> bool:
        return any(s.state not in (TRANSIENT_FAILURE, SHUTDOWN) for s in self._slots)

    def failure(self) -> str | None:
        """Why the first failing connection failed: ``cannot connect to ADDRESS: ...``."""
        for slot in self._slots:
            if slot.state == TRANSIENT_FAILURE and slot.last_error:
                return f"cannot connect to {slot.address}: {slot.last_error}"
        return None

    @property
    def retiring(self) -> int:
        return sum(len(slots) for slots in self._retiring.values())

    async def close(self, grace: float | None = None) -> None:
        self._closed = True
        slots, self._slots = self._slots, []
        for slot in slots:
            slot.close(graceful=True)
        if grace:
            await _closed(slots, grace)
        for slot in slots:
            slot.close(graceful=False)
        for task, old in list(self._retiring.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for slot in old:
                slot.close(graceful=False)
