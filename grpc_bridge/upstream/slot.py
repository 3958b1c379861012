"""One connection to one address, kept up: connect, reconnect with backoff, report why it ended.

Slots follow gRPC's connectivity states and round_robin's habits: they
connect at once, reconnect at once when a connection ends, and after a failed
attempt wait an exponential backoff with jitter (``reconnect.*``) in
TRANSIENT_FAILURE, where calls fail fast with UNAVAILABLE (no wait-for-ready).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpc_bridge.log import get_logger
from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.dial import Address
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.connection import Connection, ConnectionClosed

if TYPE_CHECKING:
    from grpc_bridge.metrics import Metrics

log = get_logger("grpc_bridge.upstream")

IDLE = "IDLE"
CONNECTING = "CONNECTING"
READY = "READY"
TRANSIENT_FAILURE = "TRANSIENT_FAILURE"
SHUTDOWN = "SHUTDOWN"

#: A connection that lasted this long resets the reconnect backoff.
_STABLE_S = 1.0


class Unreachable(Exception):
    """No connection for the call: the message says why (UNAVAILABLE)."""


class ConnectDeadline(Unreachable):
    """The call's deadline passed while it waited for a connection (DEADLINE_EXCEEDED)."""


@dataclass(frozen=True, slots=True)
class Dial:
    """What every slot of one generation dials with."""

    upstream: Upstream
    ssl: ssl.SSLContext | None
    #: The name TLS verifies (and sends as SNI).
    server_name: str
    #: How long calls may outlive their connection's drain.
    retire_grace: float
    metrics: Metrics | None


class Slot:
    """One connection to one address, kept up: see the module docstring."""

    def __init__(self, dial: Dial, slot_id: int, address: Address) -> None:
        self.id = slot_id
        self.address = address
        self.state = IDLE
        self.connection: Connection | None = None
        self.last_error: str | None = None
        self._dial = dial
        self._attempt: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[None] | None = None
        self._backoff = dial.upstream.reconnect.initial_backoff_s
        self._ready_at = 0.0
        self._closed = False
        #: Doubled by a GOAWAY too_many_pings, for this slot's later connections too.
        self._keepalive_s = dial.upstream.keepalive.time_s

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
                await until(connection.wait_capacity(), deadline, loop)
                continue
            if self.state == TRANSIENT_FAILURE:
                raise Unreachable(f"cannot connect to {self.address}: {self.last_error}")
            self.connect()
            if self._connected is None or self._connected.done():
                self._connected = loop.create_future()
            await until(asyncio.shield(self._connected), deadline, loop)

    async def _run_attempts(self, delay: float = 0.0) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
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
                    await asyncio.sleep(self._next_backoff())
                    continue
                self.connection = connection
                self._ready_at = time.monotonic()
                self.last_error = None
                self.state = READY
                self._wake()
                return
        finally:
            self._attempt = None

    def _next_backoff(self) -> float:
        delay = self._backoff * random.uniform(0.8, 1.2)
        # gRPC's connection-backoff.md multiplier.
        self._backoff = min(self._backoff * 1.6, self._dial.upstream.reconnect.max_backoff_s)
        return delay

    async def _open(self) -> Connection:
        dial = self._dial
        upstream = dial.upstream
        loop = asyncio.get_running_loop()

        def factory() -> Connection:
            return Connection(
                max_receive_message_bytes=upstream.max_receive_message_bytes,
                stream_buffer_bytes=upstream.stream_buffer_bytes,
                keepalive_time_s=self._keepalive_s,
                keepalive_timeout_s=upstream.keepalive.timeout_s,
                keepalive_without_calls=upstream.keepalive.permit_without_calls,
                on_close=self._lost,
                drain_grace_s=dial.retire_grace,
            )

        server_hostname = dial.server_name if dial.ssl is not None else None
        async with asyncio.timeout(upstream.reconnect.connect_timeout_s):
            if self.address.path is not None:
                _, connection = await loop.create_unix_connection(
                    factory, self.address.path, ssl=dial.ssl, server_hostname=server_hostname
                )
            else:
                _, connection = await loop.create_connection(
                    factory,
                    self.address.host,
                    self.address.port,
                    ssl=dial.ssl,
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
            self._backoff = self._dial.upstream.reconnect.initial_backoff_s
            self.connect()
        else:
            self.connect(self._next_backoff())

    def _report(self, connection: Connection) -> None:
        upstream = self._dial.upstream.name
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
        if self._dial.metrics is not None:
            self._dial.metrics.upstream_http2_error(upstream, name)

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


async def until(awaitable: object, deadline: float | None, loop: asyncio.AbstractEventLoop) -> None:
    assert asyncio.iscoroutine(awaitable) or asyncio.isfuture(awaitable)
    if deadline is None:
        await awaitable
        return
    try:
        async with asyncio.timeout_at(deadline):
            await awaitable
    except TimeoutError:
        raise ConnectDeadline("deadline passed while waiting for a connection") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connection attempt timed out"
    text = str(exc)
    return text or type(exc).__name__
