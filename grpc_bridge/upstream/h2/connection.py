"""One HTTP/2 client connection to an upstream, as an asyncio protocol.

Only what a gRPC client needs: client-initiated streams, HEADERS and
CONTINUATION, DATA with flow control both ways, SETTINGS, PING (answered, and
sent as keepalive), RST_STREAM, WINDOW_UPDATE and GOAWAY. No server push, no
priorities.

Writes are gathered per event-loop iteration (:meth:`Connection._write`):
under load many calls start in the same iteration, and one ``write`` for all
of their frames costs the bridge, and the upstream reading them, one system
call instead of one each.

Flow control: the connection-level receive window is replenished as data
arrives (one slow stream must not stall the others); a stream's window is
replenished only as its reader takes bytes, within ``stream_buffer_bytes``
(stream.py), so an HTTP client that stops reading makes the upstream wait
rather than the bridge buffer.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import cast

from hpack import HPACKError

from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.hpack_codec import HeaderDecoder
from grpc_bridge.upstream.h2.stream import Status, Stream, wake_all

#: Our receive windows: big enough that a loopback or LAN upstream never waits on them.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
#: Largest DATA/HEADERS frame we take (fewer frames to parse than the 16 KiB default).
MAX_FRAME = 1024 * 1024
MAX_HEADER_LIST = 64 * 1024
#: Past this a header block is a connection error: it cannot even be decoded.
MAX_HEADER_BLOCK = MAX_FRAME

_U32 = frames.u32
_HEADER_UNPACK = frames.HEADER.unpack_from


class ConnectionClosed(Exception):
    """The connection cannot start a stream (closing, closed or out of stream ids)."""


class Connection(asyncio.Protocol):
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
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.max_receive_message_bytes = max_receive_message_bytes
        #: Bytes of unread messages a stream holds before it stops granting window.
        self.stream_buffer_bytes = stream_buffer_bytes
        #: The receive window each stream starts with (our SETTINGS_INITIAL_WINDOW_SIZE).
        self.stream_window = STREAM_WINDOW
        self.streams: dict[int, Stream] = {}
        self.ready: asyncio.Future[None] = self.loop.create_future()
        #: Done once the transport is gone.
        self.closed: asyncio.Future[None] = self.loop.create_future()
        #: Why the connection ended (None while it is open).
        self.error: str | None = None
        #: No new streams (GOAWAY received or sent, or closed).
        self.draining = False
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        #: Frames written this iteration, sent together by _write_out.
        self._out: list[bytes] = []
        self._buffer = bytearray()
        self._next_id = 1
        self._decoder = HeaderDecoder()
        # Peer settings.
        self._max_frame = frames.DEFAULT_MAX_FRAME
        self._initial_window = frames.DEFAULT_WINDOW
        self.max_concurrent = 2**31
        self._send_window = frames.DEFAULT_WINDOW
        # Receive side.
        self._recv_unacked = 0
        self._continuing: tuple[int, int, bytearray] | None = None
        # Writers waiting for window or for the transport to drain.
        self._blocked: dict[int, Stream] = {}
        self._write_waiters: list[asyncio.Future[None]] = []
        self._paused = False
        self._slot_waiters: list[asyncio.Future[None]] = []
        # Keepalive.
        self._keepalive = (keepalive_time_s, keepalive_timeout_s, keepalive_without_calls)
        self._last_read = time.monotonic()
        self._ping_sent: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast("asyncio.Transport", transport)
        self._transport = transport
        transport.write(
            frames.PREFACE
            + frames.settings(
                {
                    frames.SETTINGS_HEADER_TABLE_SIZE: 0,
                    frames.SETTINGS_ENABLE_PUSH: 0,
                    frames.SETTINGS_INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                    frames.SETTINGS_MAX_FRAME_SIZE: MAX_FRAME,
                    frames.SETTINGS_MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
                }
            )
            + frames.window_update(0, CONNECTION_WINDOW - frames.DEFAULT_WINDOW)
        )
        self._schedule_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        lost = f"connection lost: {exc}" if exc else "connection closed by upstream"
        self._shutdown(self.error or lost)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        self._ping_sent = None
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            view = data
        end = len(view)
        pos = 0
        if not self.ready.done() and end >= 9 and view[3] != frames.SETTINGS:
            # RFC 9113 §3.4: a server's first frame is SETTINGS.
            sample = bytes(view[:24])
            self._abort(
                frames.PROTOCOL_ERROR, f"upstream does not speak HTTP/2 (it sent {sample!r})"
            )
            return
        try:
            while end - pos >= 9:
                high, low, kind, flags, stream_id = _HEADER_UNPACK(view, pos)
                length = (high << 16) | low
                if length > MAX_FRAME:
                    self._abort(frames.FRAME_SIZE_ERROR, f"upstream sent a {length}-byte frame")
                    return
                if end - pos - 9 < length:
                    break
                payload = bytes(view[pos + 9 : pos + 9 + length])
                pos += 9 + length
                self._frame(kind, flags, stream_id & 0x7FFFFFFF, payload)
                if self._transport is None:
                    return
        except HPACKError as exc:
            self._abort(frames.COMPRESSION_ERROR, f"upstream sent a bad header block: {exc}")
            return
        except _ProtocolError as exc:
            self._abort(frames.PROTOCOL_ERROR, str(exc))
            return
        except Exception as exc:
            # A bug here must end this connection, not escape into the event loop.
            self._abort(frames.INTERNAL_ERROR, f"HTTP/2 client error: {exc!r}")
            return
        if buffer:
            del buffer[:pos]
        elif pos < end:
            buffer += data[pos:]
        if self._recv_unacked >= CONNECTION_WINDOW // 4:
            increment, self._recv_unacked = self._recv_unacked, 0
            self._write(frames.window_update(0, increment))

    # -- frames --------------------------------------------------------------------

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuing is not None and kind != frames.CONTINUATION:
            raise _ProtocolError("upstream interrupted a header block")
        if kind == frames.DATA:
            self._data(flags, stream_id, payload)
        elif kind == frames.HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == frames.CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == frames.SETTINGS:
            self._settings(flags, payload)
        elif kind == frames.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == frames.PING:
            if len(payload) != 8:
                raise _ProtocolError("upstream sent a PING that is not 8 bytes")
            if not flags & frames.ACK:
                self._write(frames.ping(payload, ack=True))
        elif kind == frames.RST_STREAM:
            if len(payload) != 4:
                raise _ProtocolError("upstream sent a bad RST_STREAM")
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.on_reset(_U32(payload))
        elif kind == frames.GOAWAY:
            self._goaway(payload)
        elif kind == frames.PUSH_PROMISE:
            raise _ProtocolError("upstream sent PUSH_PROMISE though push is disabled")
        # PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5).

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ProtocolError("upstream sent DATA on stream 0")
        flow = len(payload)
        self._recv_unacked += flow
        body = frames.unpad(payload, flags)
        if body is None:
            raise _ProtocolError("upstream sent DATA with bad padding")
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        stream.on_data(body, bool(flags & frames.END_STREAM), flow)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ProtocolError("upstream sent HEADERS on stream 0")
        block = frames.unpad(payload, flags)
        if block is None:
            raise _ProtocolError("upstream sent HEADERS with bad padding")
        if flags & frames.PRIORITY_FLAG:
            block = block[5:]
        if not flags & frames.END_HEADERS:
            self._continuing = (stream_id, flags, bytearray(block))
            return
        self._header_block(stream_id, flags, block)

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuing is None or self._continuing[0] != stream_id:
            raise _ProtocolError("upstream sent an unexpected CONTINUATION")
        _, first_flags, block = self._continuing
        block += payload
        if len(block) > MAX_HEADER_BLOCK:
            raise _ProtocolError("upstream sent an oversized header block")
        if flags & frames.END_HEADERS:
            self._continuing = None
            self._header_block(stream_id, first_flags, bytes(block))

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        # Decoded even for a stream we forgot: the HPACK state must follow every block.
        decoded = self._decoder.decode(block)
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if decoded.size > MAX_HEADER_LIST:
            status = Status(
                Code.RESOURCE_EXHAUSTED,
                f"upstream sent {decoded.size} bytes of headers, over {MAX_HEADER_LIST}",
            )
            self.reset(stream, frames.CANCEL, status)
        elif decoded.malformed:
            status = Status(Code.INTERNAL, "upstream sent an empty or upper-case header name")
            self.reset(stream, frames.PROTOCOL_ERROR, status)
        else:
            stream.on_headers(decoded.headers, bool(flags & frames.END_STREAM))

    def _settings(self, flags: int, payload: bytes) -> None:
        if flags & frames.ACK:
            return
        if len(payload) % 6:
            raise _ProtocolError("upstream sent a SETTINGS frame of a bad length")
        for key, value in frames.parse_settings(payload):
            if key == frames.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > frames.MAX_WINDOW:
                    raise _ProtocolError("upstream sent an initial window over 2^31-1")
                delta = value - self._initial_window
                self._initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == frames.SETTINGS_MAX_FRAME_SIZE:
                if not frames.DEFAULT_MAX_FRAME <= value <= 2**24 - 1:
                    raise _ProtocolError("upstream sent an invalid max frame size")
                self._max_frame = value
            elif key == frames.SETTINGS_MAX_CONCURRENT_STREAMS:
                self.max_concurrent = value
        self._write(frames.SETTINGS_ACK)
        if not self.ready.done():
            self.ready.set_result(None)
        self._flush_blocked()
        self._wake_slots()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ProtocolError("upstream sent a bad WINDOW_UPDATE")
        increment = _U32(payload) & 0x7FFFFFFF
        if increment == 0:
            raise _ProtocolError("upstream sent a WINDOW_UPDATE of 0")
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > frames.MAX_WINDOW:
                raise _ProtocolError("upstream overflowed the connection window")
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
        self._flush_blocked()

    def _goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise _ProtocolError("upstream sent a bad GOAWAY")
        last = _U32(payload) & 0x7FFFFFFF
        code = _U32(payload, 4)
        debug = payload[8:].decode("utf-8", "replace")
        why = f"upstream sent GOAWAY (HTTP/2 error code {code}{': ' + debug if debug else ''})"
        self._stop_taking(why)
        for stream in [s for i, s in self.streams.items() if i > last]:
            stream.fail(Status(Code.UNAVAILABLE, why, unprocessed=True))
        self._close_if_idle()

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

    def open_stream(self, block: bytes, data: bytes | None, end_stream: bool) -> Stream:
        """Start a stream with a header block and, optionally, its first DATA."""
        if self._transport is None or self.draining:
            raise ConnectionClosed(self.error or "connection is closing")
        stream_id = self._next_id
        self._next_id += 2
        if self._next_id > frames.MAX_STREAM_ID:
            # Out of ids: finish the streams in flight, new calls get a new connection.
            self._stop_taking("stream ids exhausted")
        stream = Stream(self, stream_id, self._initial_window)
        self.streams[stream_id] = stream
        headers_end = end_stream and data is None
        out = self._header_frames(stream_id, block, headers_end)
        if headers_end:
            stream.local_closed = True
            self._write(out)
            return stream
        if data is not None:
            size = len(data)
            if size <= stream.send_window and size <= self._send_window and size <= self._max_frame:
                # The usual unary request: HEADERS and DATA in one write.
                stream.send_window -= size
                self._send_window -= size
                out += frames.frame_header(
                    frames.DATA, frames.END_STREAM if end_stream else 0, stream_id, size
                )
                self._write(out + data)
                stream.local_closed = end_stream
                return stream
            self._write(out)
            self._queue(stream, data, end_stream)
        else:
            self._write(out)
        return stream

    def _header_frames(self, stream_id: int, block: bytes, end_stream: bool) -> bytes:
        flags = frames.END_STREAM if end_stream else 0
        limit = self._max_frame
        if len(block) <= limit:
            return frames.frame(frames.HEADERS, flags | frames.END_HEADERS, stream_id, block)
        parts = [frames.frame(frames.HEADERS, flags, stream_id, block[:limit])]
        for start in range(limit, len(block), limit):
            last = start + limit >= len(block)
            parts.append(
                frames.frame(
                    frames.CONTINUATION,
                    frames.END_HEADERS if last else 0,
                    stream_id,
                    block[start : start + limit],
                )
            )
        return b"".join(parts)

    async def send(self, stream: Stream, data: bytes, end_stream: bool) -> bool:
        """Queue ``data`` and wait until it is written; False once the call is over."""
        if stream.status is not None or stream.local_closed:
            return False
        self._queue(stream, data, end_stream)
        while (stream.pending or self._paused) and stream.status is None and self._transport:
            waiter = self.loop.create_future()
            self._write_waiters.append(waiter)
            await waiter
        return stream.status is None and self._transport is not None

    def _queue(self, stream: Stream, data: bytes, end_stream: bool) -> None:
        if data:
            stream.pending.append(memoryview(data))
        stream.pending_end = stream.pending_end or end_stream
        self._flush(stream)

    def _flush(self, stream: Stream) -> None:
        if self._transport is None or stream.local_closed:
            return
        pending = stream.pending
        out: list[bytes] = []
        while pending:
            room = min(stream.send_window, self._send_window, self._max_frame)
            if room <= 0:
                self._blocked[stream.id] = stream
                break
            chunk = pending[0]
            if len(chunk) <= room:
                pending.popleft()
            else:
                pending[0] = chunk[room:]
                chunk = chunk[:room]
            size = len(chunk)
            stream.send_window -= size
            self._send_window -= size
            last = not pending and stream.pending_end
            out.append(
                frames.frame_header(frames.DATA, frames.END_STREAM if last else 0, stream.id, size)
            )
            out.append(bytes(chunk))
            if last:
                stream.local_closed = True
        if not pending:
            self._blocked.pop(stream.id, None)
            if stream.pending_end and not stream.local_closed:
                out.append(frames.frame(frames.DATA, frames.END_STREAM, stream.id))
                stream.local_closed = True
        if out:
            self._write(b"".join(out))
        if not pending:
            self._wake_writers()

    def _flush_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            self._flush(stream)

    def _wake_writers(self, *, force: bool = False) -> None:
        # Paused writers wait for resume_writing, unless what they wait on ended.
        if self._paused and not force:
            return
        waiters, self._write_waiters = self._write_waiters, []
        wake_all(waiters)

    def _wake_slots(self) -> None:
        waiters, self._slot_waiters = self._slot_waiters, []
        wake_all(waiters)

    def grant(self, stream: Stream, increment: int) -> None:
        if stream.id in self.streams:
            self._write(frames.window_update(stream.id, increment))

    def reset(self, stream: Stream, code: int, status: Status | None = None) -> None:
        """Ends ``stream`` now: RST_STREAM unless both sides already ended it, then ``status``."""
        if (
            self._transport is not None
            and stream.id in self.streams
            and not (stream.local_closed and stream.remote_closed)
        ):
            self._write(frames.rst_stream(stream.id, code))
        stream.local_closed = stream.remote_closed = True
        stream.fail(status or Status(Code.CANCELLED, "call cancelled"))
        self.forget(stream)

    def forget(self, stream: Stream) -> None:
        """The stream is over on our side: it no longer counts against concurrency."""
        if self.streams.pop(stream.id, None) is None:
            return
        self._blocked.pop(stream.id, None)
        if self._transport is not None and not (stream.local_closed and stream.remote_closed):
            # NO_ERROR: the upstream answered before we finished sending (it
            # must not wait for the rest); CANCEL: we gave up on the call.
            code = frames.NO_ERROR if stream.remote_closed else frames.CANCEL
            self._write(frames.rst_stream(stream.id, code))
        stream.local_closed = stream.remote_closed = True
        self._wake_slots()
        self._wake_writers(force=True)
        self._close_if_idle()

    # -- keepalive -------------------------------------------------------------------

    def _schedule_keepalive(self) -> None:
        interval = self._keepalive[0]
        if interval > 0:
            self._timer = self.loop.call_later(interval, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        interval, timeout, without_calls = self._keepalive
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
        if idle >= interval and (self.streams or without_calls):
            self._ping_sent = now
            self._write(frames.ping(os.urandom(8)))
            self._timer = self.loop.call_later(timeout, self._keepalive_tick)
            return
        # Idle without calls (and no pings then): look again a whole interval later.
        wait = interval - idle if idle < interval else interval
        self._timer = self.loop.call_later(max(0.05, wait), self._keepalive_tick)

    # -- closing ---------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            out = self._out
            if not out:
                self.loop.call_soon(self._write_out)
            out.append(data)

    def _write_out(self) -> None:
        out = self._out
        if out and self._transport is not None:
            self._out = []
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _stop_taking(self, why: str) -> None:
        if not self.draining:
            self.draining = True
            self.error = self.error or why
            self._wake_slots()
            if self._on_close is not None:
                self._on_close(self)

    def _close_if_idle(self) -> None:
        if self.draining and not self.streams and self._transport is not None:
            self._write_out()
            self._transport.close()

    def close(self) -> None:
        """Graceful: no new streams; the transport closes when the last stream ends."""
        if self._transport is not None and not self.draining:
            self._write(frames.goaway(0, frames.NO_ERROR))
        self._stop_taking("connection closed by the bridge")
        self._close_if_idle()

    def abort(self, why: str) -> None:
        """Now: every stream still open fails UNAVAILABLE."""
        self._abort(frames.NO_ERROR, why)

    def _abort(self, code: int, why: str) -> None:
        if self._transport is not None:
            self.error = self.error or why
            if code == frames.NO_ERROR:
                # A dead peer (keepalive) or our own shutdown: nothing worth waiting for,
                # but what this iteration wrote (a GOAWAY from close()) goes out first.
                self._write_out()
                self._transport.abort()
            else:
                # The GOAWAY tells the upstream why; close() flushes it first.
                self._write(frames.goaway(0, code, why.encode("utf-8", "replace")[:256]))
                self._write_out()
                self._transport.close()
        self._shutdown(why)

    def _shutdown(self, why: str) -> None:
        self.error = self.error or why
        self._stop_taking(why)
        self._transport = None
        self._out = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(ConnectionClosed(self.error))
            self.ready.exception()  # retrieved: nobody may be waiting any more
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.fail(Status(Code.UNAVAILABLE, self.error or why))
        self._paused = False
        self._wake_writers()
        self._wake_slots()


class _ProtocolError(Exception):
    pass
