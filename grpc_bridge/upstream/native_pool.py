"""Connections of the native HTTP/2 client to one upstream, round-robin, reconnecting.

The same shape as :class:`~grpc_bridge.upstream.pool.ChannelPool` (``open``,
``rebuild``, ``pick``, ``states``, ``usable``, ``close``) so the upstream's
upkeep, readiness and metrics treat both alike. Each *slot* is one connection
to one address; an upstream with N addresses and ``pool_size`` P gets N*P
slots, which is what P grpc channels with round_robin over N addresses open.

Slots follow gRPC's connectivity states and round_robin's habits: they
connect at once, reconnect at once when a connection ends, and after a failed
attempt wait an exponential backoff with jitter (``reconnect.*``) in
TRANSIENT_FAILURE, where calls fail fast with UNAVAILABLE (no wait-for-ready).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import ssl
import time
from dataclasses import dataclass

from grpc_bridge.errors import UpstreamNotReady
from grpc_bridge.log import get_logger
from grpc_bridge.metrics import Metrics
from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.h2 import frames, hpack_codec
from grpc_bridge.upstream.h2.connection import Connection, ConnectionClosed
from grpc_bridge.upstream.pool import ChannelPlan
from grpc_bridge.upstream.resolver import ChannelTargets

log = get_logger("grpc_bridge.upstream")

IDLE = "IDLE"
CONNECTING = "CONNECTING"
READY = "READY"
TRANSIENT_FAILURE = "TRANSIENT_FAILURE"
SHUTDOWN = "SHUTDOWN"


@dataclass(frozen=True, slots=True)
class Address:
    """A TCP ``host``/``port``, or a unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


#: A connection that lasted this long resets the reconnect backoff.
_STABLE_S = 1.0


class Unreachable(Exception):
    """No connection for the call: the message says why (UNAVAILABLE)."""


class ConnectDeadline(Unreachable):
    """The call's deadline passed while it waited for a connection (DEADLINE_EXCEEDED)."""


def addresses_of(targets: ChannelTargets) -> list[Address] | None:
    """The addresses behind gRPC target strings; None for forms only grpc can resolve."""
    out: list[Address] = []
    for target in targets.targets:
        if target.startswith(("ipv4:", "ipv6:")):
            for item in target[5:].split(","):
                host, _, port = item.rpartition(":")
                host = host.removeprefix("[").removesuffix("]")
                host = host.removeprefix("::ffff:") if "." in host else host
                out.append(Address(host, int(port)))
        elif target.startswith("unix:"):
            path = target.removeprefix("unix:")
            path = path.removeprefix("//") if path.startswith("///") else path
            out.append(Address(path=path))
        elif target.startswith(("dns:", "unix-abstract:")) and not target.startswith("dns:///"):
            return None
        else:
            rest = target.removeprefix("dns:///")
            host, sep, port = rest.rpartition(":")
            if not sep or not port.isdigit():
                return None
            out.append(Address(host.removeprefix("[").removesuffix("]"), int(port)))
    return out


def authority_of(upstream: Upstream, targets: ChannelTargets) -> str:
    """The ``:authority`` grpc would send (see ``pool.channel_options``)."""
    server_name = upstream.tls.server_name if upstream.tls.enabled else None
    authority = upstream.authority or server_name or targets.authority
    if authority:
        return authority
    target = targets.targets[0]
    if target.startswith("unix:"):
        return "localhost"
    return target.removeprefix("dns:///")


def tls_context(upstream: Upstream, plan: ChannelPlan) -> ssl.SSLContext | None:
    material = plan.tls
    if material is None:
        return None
    context = ssl.create_default_context(
        cadata=material.ca.decode("ascii", "replace") if material.ca is not None else None
    )
    if upstream.tls.cert_file is not None and upstream.tls.key_file is not None:
        # Paths, not the bytes: the stdlib loads a chain only from files. A
        # rotation between the read and here is noticed by the next refresh.
        context.load_cert_chain(upstream.tls.cert_file, upstream.tls.key_file)
    context.set_alpn_protocols(["h2"])
    return context


class Slot:
    """One connection to one address, kept up: see the module docstring."""

    def __init__(self, pool: NativePool, slot_id: int, address: Address) -> None:
        self.id = slot_id
        self.address = address
        self.state = IDLE
        self.connection: Connection | None = None
        self.last_error: str | None = None
        self._pool = pool
        self._attempt: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[None] | None = None
        self._backoff = pool.upstream.reconnect.initial_backoff_s
        self._ready_at = 0.0
        self._closed = False
        #: Set to cut a reconnect backoff short (:meth:`retry_now`), only while one runs.
        self._retry = asyncio.Event()
        self._pausing = False
        #: Doubled by a GOAWAY too_many_pings, for this slot's later connections too.
        self._keepalive_s = pool.upstream.keepalive.time_s

    def ready_connection(self) -> Connection | None:
        connection = self.connection
        if connection is not None and connection.has_capacity():
            return connection
        return None

    def connect(self, delay: float = 0.0) -> None:
        if self._closed or self._attempt is not None or self.state == READY:
            return
        self._attempt = asyncio.create_task(
            self._run_attempts(delay), name=f"connect-{self.address}"
        )

    async def acquire(self, deadline: float | None) -> Connection:
        """A connection with a free stream slot, connecting first if needed."""
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise Unreachable("the upstream's connections are shutting down")
            connection = self.connection
            if connection is not None and connection.open:
                if connection.has_capacity():
                    return connection
                await _until(connection.wait_capacity(), deadline, loop)
                continue
            if self.state == TRANSIENT_FAILURE:
                raise Unreachable(f"cannot connect to {self.address}: {self.last_error}")
            self.connect()
            if self._connected is None or self._connected.done():
                self._connected = loop.create_future()
            await _until(asyncio.shield(self._connected), deadline, loop)

    async def _run_attempts(self, delay: float = 0.0) -> None:
        try:
            if delay:
                await self._pause(delay)
            while not self._closed:
                self.state = CONNECTING
                try:
                    connection = await self._open()
                    if not connection.open:
                        # Ended in the packet that made it ready (GOAWAY with the SETTINGS).
                        raise ConnectionClosed(connection.error or "connection closed at once")
                except (OSError, ssl.SSLError, ConnectionClosed, TimeoutError) as exc:
                    self.last_error = _describe(exc)
                    self.state = TRANSIENT_FAILURE
                    self._wake()
                    await self._pause(self._next_backoff())
                    continue
                self.connection = connection
                self._ready_at = time.monotonic()
                self.last_error = None
                self.state = READY
                self._wake()
                return
        finally:
            self._attempt = None

    async def _pause(self, seconds: float) -> None:
        self._pausing = True
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._retry.wait()
        finally:
            self._pausing = False
            self._retry.clear()

    def retry_now(self) -> None:
        """Cut a reconnect backoff short: the upstream was just seen answering.

        gRPC's ``reset_connect_backoff``. Discovery reaches the upstream on its own
        channel; without this, a slot that failed while the upstream was still
        starting would fail calls fast (UNAVAILABLE) for the rest of its backoff
        although /readyz already says ready.
        """
        if self._closed or not self._pausing:
            return  # connecting, connected, or about to: nothing to cut short
        self._backoff = self._pool.upstream.reconnect.initial_backoff_s
        # Calls now wait for the attempt instead of failing fast.
        self.state = CONNECTING
        self._retry.set()

    def _next_backoff(self) -> float:
        delay = self._backoff * random.uniform(0.8, 1.2)
        # gRPC's connection-backoff.md multiplier.
        self._backoff = min(self._backoff * 1.6, self._pool.upstream.reconnect.max_backoff_s)
        return delay

    async def _open(self) -> Connection:
        pool = self._pool
        upstream = pool.upstream
        loop = asyncio.get_running_loop()

        def factory() -> Connection:
            return Connection(
                max_receive_message_bytes=upstream.max_receive_message_bytes,
                stream_buffer_bytes=upstream.stream_buffer_bytes,
                keepalive_time_s=self._keepalive_s,
                keepalive_timeout_s=upstream.keepalive.timeout_s,
                keepalive_without_calls=upstream.keepalive.permit_without_calls,
                on_close=self._lost,
                drain_grace_s=pool.retire_grace,
            )

        server_hostname = None
        if pool.ssl is not None:
            server_hostname = pool.server_name
        async with asyncio.timeout(upstream.reconnect.connect_timeout_s):
            if self.address.path is not None:
                _, connection = await loop.create_unix_connection(
                    factory, self.address.path, ssl=pool.ssl, server_hostname=server_hostname
                )
            else:
                _, connection = await loop.create_connection(
                    factory,
                    self.address.host,
                    self.address.port,
                    ssl=pool.ssl,
                    server_hostname=server_hostname,
                )
            try:
                await connection.ready
            except BaseException:
                connection.abort("connection attempt abandoned")
                raise
        return connection

    def _lost(self, connection: Connection) -> None:
        if connection is not self.connection or self._closed:
            # Closed by the pool: kept, so the pool can wait for it to finish.
            return
        self.connection = None
        self._report(connection)
        self.state = IDLE
        # round_robin reconnects at once; a refused attempt then backs off. A
        # connection that ended right after it was made (a server that accepts
        # and hangs up) backs off too, or the bridge would reconnect in a loop.
        if time.monotonic() - self._ready_at >= _STABLE_S:
            self._backoff = self._pool.upstream.reconnect.initial_backoff_s
            self.connect()
        else:
            self.connect(self._next_backoff())

    def _report(self, connection: Connection) -> None:
        upstream = self._pool.upstream.name
        if connection.keepalive_time_s > self._keepalive_s:
            self._keepalive_s = connection.keepalive_time_s
            log.warning(
                "upstream_keepalive_backoff",
                upstream=upstream,
                address=str(self.address),
                keepalive_time_s=self._keepalive_s,
            )
        code = connection.error_code
        if code is None or code == frames.NO_ERROR:
            log.info(
                "upstream_connection_ended", address=str(self.address), reason=connection.error
            )
            return
        # The bridge closed it: the upstream broke the protocol or abused it.
        name = frames.ERROR_NAMES.get(code, str(code))
        log.warning(
            "upstream_protocol_error",
            upstream=upstream,
            address=str(self.address),
            code=name,
            reason=connection.error,
        )
        if self._pool.metrics is not None:
            self._pool.metrics.upstream_http2_error(upstream, name)

    def _wake(self) -> None:
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)

    def close(self, graceful: bool) -> None:
        """Graceful: the connection ends once its calls have (``connection.closed``)."""
        self._closed = True
        self.state = SHUTDOWN
        if self._attempt is not None:
            self._attempt.cancel()
        self._wake()
        connection = self.connection
        if connection is not None:
            if graceful:
                connection.close()
            else:
                connection.abort("the bridge closed the connection")


async def _until(
    awaitable: object, deadline: float | None, loop: asyncio.AbstractEventLoop
) -> None:
    assert asyncio.iscoroutine(awaitable) or asyncio.isfuture(awaitable)
    if deadline is None:
        await awaitable
        return
    try:
        async with asyncio.timeout_at(deadline):
            await awaitable
    except TimeoutError:
        raise ConnectDeadline("deadline passed while waiting for a connection") from None


async def _closed(slots: list[Slot], timeout: float) -> None:
    """Until every (gracefully closing) connection of ``slots`` is gone, or ``timeout``."""
    waiting = [s.connection.closed for s in slots if s.connection is not None]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connection attempt timed out"
    text = str(exc)
    return text or type(exc).__name__


class NativePool:
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
        self.plan: ChannelPlan | None = None
        self.generation = 0
        self.built_at: float | None = None
        self.ssl: ssl.SSLContext | None = None
        self.server_name: str | None = None
        #: The request-header fields every call on these connections starts with.
        self.header_prefix = b""
        #: How long calls may outlive their connection's drain (the longest deadline, and some).
        self.retire_grace = upstream.max_timeout_s + 5.0 if retire_grace is None else retire_grace
        self._slots: list[Slot] = []
        self._ids = itertools.count()
        self._next = 0
        self._retiring: dict[asyncio.Task[None], list[Slot]] = {}
        self._closed = False

    @staticmethod
    def supports(targets: ChannelTargets) -> bool:
        return addresses_of(targets) is not None

    def open(self, plan: ChannelPlan) -> None:
        self._build(plan)
        self.connect()

    def rebuild(self, plan: ChannelPlan) -> bool:
        """New connections when the addresses or TLS material changed; True when it did.

        The retried methods are part of the plan for grpc's channels only:
        here the invoker applies the policy, so they never cost a reconnect.
        """
        if self._closed:
            return False
        current = self.plan
        if current is not None and (plan.targets, plan.tls) == (current.targets, current.tls):
            self.plan = plan
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

    def _build(self, plan: ChannelPlan) -> None:
        addresses = addresses_of(plan.targets)
        assert addresses, plan.targets
        upstream = self.upstream
        self.ssl = tls_context(upstream, plan)
        authority = authority_of(upstream, plan.targets)
        self.server_name = (upstream.tls.server_name if upstream.tls.enabled else None) or (
            authority.rpartition(":")[0].removeprefix("[").removesuffix("]")
            if ":" in authority and not authority.endswith("]")
            else authority
        )
        self.header_prefix = (
            hpack_codec.METHOD_POST
            + (hpack_codec.SCHEME_HTTPS if self.ssl is not None else hpack_codec.SCHEME_HTTP)
            + hpack_codec.authority(authority)
        )
        self._slots = [
            Slot(self, next(self._ids), address)
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

    def retry_now(self) -> None:
        """Every slot waiting out a reconnect backoff tries again at once."""
        for slot in self._slots:
            slot.retry_now()

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
        slot = self.pick()
        connection = slot.ready_connection()
        if connection is None:
            connection = await slot.acquire(deadline)
        if not connection.writable:
            await _until(connection.wait_writable(), deadline, asyncio.get_running_loop())
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
