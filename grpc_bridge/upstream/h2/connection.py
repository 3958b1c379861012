"""One HTTP/2 client connection to an upstream: the asyncio side of :mod:`.state`.

The state machine parses, checks and answers frames; this class owns the
socket, and makes each stream's receiver, the gRPC call (:mod:`.stream`),
which the state machine feeds events. Writes are gathered per event-loop
iteration (:meth:`Connection._emit`): one ``write`` (one system call) for the
frames of all calls that started in it.

Reading is paused in two cases, so that one upstream cannot take the bridge's
loop or memory: when our writes back up (a peer that sends PINGs but does
not read our ACKs then only fills its own socket), and between slices of a
long burst of frames (at most ``FRAMES_PER_SLICE`` per callback, and
``DECODED_PER_SLICE`` bytes of header blocks decoded, the rest after the
loop's other callbacks ran, so calls to other upstreams are not delayed by a
flood on this one).

Timers: keepalive PINGs (doubled after a GOAWAY ``too_many_pings``, as
grpc-core does), the peer's ACK of our SETTINGS, and the grace a connection
drained by GOAWAY gets before it is cut even with streams still open.

Flow control is the state machine's (:mod:`.state`, :mod:`.response`): a
stream's window comes back only as its reader takes bytes, within
``stream_buffer_bytes``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from functools import partial
from typing import cast

from hpack import HPACKError

from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.outbound import STREAM_WINDOW, ConnectionError_, HeadersTooLarge
from grpc_bridge.upstream.h2.state import MAX_FRAME, MAX_HEADER_LIST, OPENING, H2State
from grpc_bridge.upstream.h2.stream import Status, Stream, wake_all

__all__ = [
    "MAX_FRAME",
    "MAX_HEADER_LIST",
    "STREAM_WINDOW",
    "Connection",
    "ConnectionClosed",
    "HeadersTooLarge",
]

#: Bytes gathered in one iteration past which new streams wait for the next.
_OUT_HIGH = 256 * 1024


class ConnectionClosed(Exception):
    """The connection cannot start a stream (closing, closed or out of stream ids)."""


class Connection(H2State[Stream], asyncio.Protocol):
    """See the module docstring. ``on_close`` is called once, when it stops taking streams."""

    def __init__(
        self,
        *,
        max_receive_message_bytes: int,
        stream_buffer_bytes: int = STREAM_WINDOW,
        keepalive_time_s: float,
        keepalive_timeout_s: float,
        keepalive_without_calls: bool,
        on_close: Callable[[Connection], None] | None = None,
        settings_timeout_s: float = 10.0,
        drain_grace_s: float = 305.0,
    ) -> None:
        super().__init__(partial(Stream, self))
        self.loop = asyncio.get_running_loop()
        self.max_receive_message_bytes = max_receive_message_bytes
        #: Bytes of unread messages a stream holds before it stops granting window.
        self.stream_buffer_bytes = stream_buffer_bytes
        self.ready: asyncio.Future[None] = self.loop.create_future()
        #: Done once the transport is gone.
        self.closed: asyncio.Future[None] = self.loop.create_future()
        #: Why the connection ended (None while it is open), and the HTTP/2 code we sent.
        self.error: str | None = None
        self.error_code: int | None = None
        #: The keepalive interval now (doubled by each GOAWAY too_many_pings).
        self.keepalive_time_s = keepalive_time_s
        self._keepalive_timeout = keepalive_timeout_s
        self._keepalive_without_calls = keepalive_without_calls
        self._settings_timeout = settings_timeout_s
        self._drain_grace = drain_grace_s
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        #: Frames written this iteration, sent together by _write_out.
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._buffer = bytearray()
        # Writers waiting for window or for the transport to drain, and for a stream slot.
        self._write_waiters: list[asyncio.Future[None]] = []
        self._paused = False
        self._slicing = False
        self._slot_waiters: list[asyncio.Future[None]] = []
        self._last_read = time.monotonic()
        self._ping_sent: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timers: list[asyncio.TimerHandle] = []

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast("asyncio.Transport", transport)
        self._transport = transport
        tls = transport.get_extra_info("ssl_object")
        if tls is not None and tls.selected_alpn_protocol() != "h2":
            alpn = tls.selected_alpn_protocol()
            self._abort(
                frames.INADEQUATE_SECURITY,
                f"upstream negotiated ALPN {alpn!r} over TLS, not 'h2' (is it a gRPC server?)",
                goaway=False,
            )
            return
        transport.write(OPENING)
        self._timers.append(self.loop.call_later(self._settings_timeout, self._settings_expired))
        self._schedule_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        lost = f"connection lost: {exc}" if exc else "connection closed by upstream"
        self._shutdown(self.error or lost)

    def pause_writing(self) -> None:
        self._paused = True
        self._set_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self.guard.queued_acks = 0
        self._set_reading()
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        self._ping_sent = None
        buffer = self._buffer
        if buffer or self._slicing:
            buffer += data
            self._feed()
            return
        end = len(data)
        try:
            pos = self.receive(data, 0, end)
        except Exception as exc:
            self._receive_failed(exc)
            return
        if pos < end and self._transport is not None:
            buffer += data[pos:]
            if self.slice_full:
                self._next_slice()

    def _receive(self, view: bytes | bytearray, end: int) -> int:
        try:
            return self.receive(view, 0, end)
        except Exception as exc:
            self._receive_failed(exc)
            return end

    def _receive_failed(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionError_):
            self._abort(exc.code, str(exc))
        elif isinstance(exc, HPACKError):
            self._abort(frames.COMPRESSION_ERROR, f"upstream sent a bad header block: {exc}")
        else:
            # A bug here must end this connection, not escape into the event loop.
            self._abort(frames.INTERNAL_ERROR, f"HTTP/2 client error: {exc!r}")

    def _feed(self) -> None:
        buffer = self._buffer
        pos = self._receive(buffer, len(buffer))
        del buffer[:pos]
        if self._transport is None:
            return
        if self.slice_full:
            self._next_slice()
        elif self._slicing:
            self._slicing = False
            self._set_reading()

    def _next_slice(self) -> None:
        if not self._slicing:
            self._slicing = True
            self._set_reading()
        self.loop.call_soon(self._slice)

    def _slice(self) -> None:
        if self._transport is not None:
            self._feed()

    def _set_reading(self) -> None:
        transport = self._transport
        if transport is None:
            return
        if self._paused or self._slicing:
            transport.pause_reading()
        else:
            transport.resume_reading()

    # -- hooks of the state machine --------------------------------------------------

    def _emit(self, data: bytes) -> None:
        if self._transport is not None:
            out = self._out
            if not out:
                self.loop.call_soon(self._write_out)
            out.append(data)
            self._out_bytes += len(data)

    def _write_out(self) -> None:
        out = self._out
        if out and self._transport is not None:
            self._out = []
            self._out_bytes = 0
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
            if self._write_waiters and not self._paused:
                self._wake_writers()

    def _on_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def _acked(self) -> None:
        transport = self._transport
        if self._paused or (transport is not None and transport.get_write_buffer_size()):
            self.guard.ack()
        else:
            self.guard.queued_acks = 0

    def _on_goaway(self, why: str, code: int, debug: bytes) -> None:
        if code == frames.ENHANCE_YOUR_CALM and debug == b"too_many_pings":
            # grpc-core's answer: ping half as often from now on (the pool keeps it).
            self.keepalive_time_s *= 2
        self._stop_taking(why)

    # Both run as every stream ends, mostly with nobody waiting: no new list then.

    def _wake_writers(self, *, force: bool = False) -> None:
        # Paused writers wait for resume_writing, unless what they wait on ended.
        if self._write_waiters and (force or not self._paused):
            waiters, self._write_waiters = self._write_waiters, []
            wake_all(waiters)

    def _wake_slots(self) -> None:
        if self._slot_waiters:
            waiters, self._slot_waiters = self._slot_waiters, []
            wake_all(waiters)

    # -- streams ---------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self._transport is not None and not self.draining

    def has_capacity(self) -> bool:
        return self.open and len(self.streams) < self.max_concurrent

    async def wait_capacity(self) -> None:
        while self.open and len(self.streams) >= self.max_concurrent:
            waiter = self.loop.create_future()
            self._slot_waiters.append(waiter)
            await waiter

    @property
    def writable(self) -> bool:
        """False while the socket's buffer is over its high-water mark, or this
        iteration's writes (not yet handed to it) are over ours."""
        return not self._paused and self._out_bytes < _OUT_HIGH

    async def wait_writable(self) -> None:
        """Until the socket takes writes again: new calls wait here, not in its buffer."""
        while not self.writable and self._transport is not None:
            waiter = self.loop.create_future()
            self._write_waiters.append(waiter)
            await waiter

    def open_stream(self, block: bytes, data: bytes | None, end_stream: bool) -> Stream:
        """Start a stream with a header block and, optionally, its first DATA.

        Raises :class:`ConnectionClosed`, or :class:`HeadersTooLarge` for a
        block over the upstream's SETTINGS_MAX_HEADER_LIST_SIZE.
        """
        if self._transport is None or self.draining:
            raise ConnectionClosed(self.error or "connection is closing")
        stream = self.new_stream(block, data, end_stream)
        stream.open_window()
        if self._next_id > frames.MAX_STREAM_ID:
            # Out of ids: finish the streams in flight, new calls get a new connection.
            self._stop_taking("stream ids exhausted")
        return stream

    async def send(self, stream: Stream, data: bytes, end_stream: bool) -> bool:
        """Queue ``data`` and wait until it is written; False once the call is over."""
        h2 = self.streams.get(stream.id)
        if stream.status is not None or h2 is None or h2.local_closed or self._transport is None:
            return False
        self.queue(h2, data, end_stream)
        while (h2.pending or self._paused) and stream.status is None and self._transport:
            waiter = self.loop.create_future()
            self._write_waiters.append(waiter)
            await waiter
        return stream.status is None and self._transport is not None

    # -- timers ----------------------------------------------------------------------

    def _settings_expired(self) -> None:
        if self._transport is not None and not self.settings_acked:
            self._abort(
                frames.SETTINGS_TIMEOUT,
                f"upstream did not acknowledge our SETTINGS within {self._settings_timeout:g}s",
            )

    def _drain_expired(self) -> None:
        if self._transport is not None and self.streams:
            # The reason the calls get: not the GOAWAY's (which promised they would end).
            self.error = (
                f"{len(self.streams)} streams still open {self._drain_grace:g}s after "
                f"the connection began to drain ({self.error})"
            )
            self.abort(self.error)

    def _schedule_keepalive(self) -> None:
        interval = self.keepalive_time_s
        if interval > 0:
            self._timer = self.loop.call_later(interval, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        interval, timeout = self.keepalive_time_s, self._keepalive_timeout
        now = time.monotonic()
        if self._ping_sent is not None:
            if now - self._ping_sent >= timeout:
                self._abort(frames.NO_ERROR, f"keepalive ping not answered within {timeout:g}s")
                return
            self._timer = self.loop.call_later(
                timeout - (now - self._ping_sent), self._keepalive_tick
            )
            return
        idle = now - self._last_read
        if idle >= interval and (self.streams or self._keepalive_without_calls):
            self._ping_sent = now
            self._emit(frames.ping(os.urandom(8)))
            self._timer = self.loop.call_later(timeout, self._keepalive_tick)
            return
        # Idle without calls (and no pings then): look again a whole interval later.
        wait = interval - idle if idle < interval else interval
        self._timer = self.loop.call_later(max(0.05, wait), self._keepalive_tick)

    # -- closing ---------------------------------------------------------------------

    def _stop_taking(self, why: str) -> None:
        if not self.draining:
            self.draining = True
            self.error = self.error or why
            self._wake_slots()
            if self.streams and self._transport is not None:
                self._timers.append(self.loop.call_later(self._drain_grace, self._drain_expired))
            if self._on_close is not None:
                self._on_close(self)
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self.draining and not self.streams and self._transport is not None:
            self._write_out()
            self._transport.close()

    _on_stream_gone = _close_if_idle

    def close(self) -> None:
        """Graceful: no new streams; the transport closes when the last stream ends."""
        if self._transport is not None and not self.draining:
            self._emit(frames.goaway(0, frames.NO_ERROR))
        self._stop_taking("connection closed by the bridge")

    def abort(self, why: str) -> None:
        """Now: every stream still open fails UNAVAILABLE."""
        self._abort(frames.NO_ERROR, why)

    def _abort(self, code: int, why: str, *, goaway: bool = True) -> None:
        transport = self._transport
        if transport is not None:
            self.error = self.error or why
            self.error_code = code
            if code == frames.NO_ERROR or not goaway:
                # A dead peer (keepalive) or our own shutdown: nothing worth waiting for,
                # but what this iteration wrote (a GOAWAY from close()) goes out first.
                self._write_out()
                transport.abort()
            else:
                # The GOAWAY tells the upstream why; close() flushes it first.
                self._emit(frames.goaway(0, code, why.encode("utf-8", "replace")[:256]))
                self._write_out()
                transport.close()
        self._shutdown(why)

    def _shutdown(self, why: str) -> None:
        self.error = self.error or why
        self._transport = None
        self._stop_taking(why)
        self._out = []
        self._out_bytes = 0
        self._buffer = bytearray()
        for timer in (self._timer, *self._timers):
            if timer is not None:
                timer.cancel()
        self._timer = None
        self._timers = []
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(ConnectionClosed(self.error))
            self.ready.exception()  # retrieved: nobody may be waiting any more
        self.fail_all(Status(Code.UNAVAILABLE, self.error or why))
        self._paused = False
        self._wake_writers()
        self._wake_slots()
