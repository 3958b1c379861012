"""An h2c connection's flow control, both ways, and how long a send may stall.

Receiving: a stream's window (``STREAM_WINDOW``, RFC 9113's default) and the
connection's (``CONNECTION_WINDOW``) are given back only for bytes the
stream's handler has read (edge/h2c_stream.py says when), so what one
connection can make the bridge hold is its connection window, however many
streams it opens (it was 100 streams times a window and a body buffer each:
12.8 MiB). The bytes of a stream that ends or is reset unread go back to the
connection at once. One fast stream is paced by its own window alone.

Sending: DATA only within the client's windows (stream and connection) and
while the socket drains. A write that has waited for a window for
``stall_s`` (``streams.idle_timeout_s``; 0: never) without ``PROGRESS`` bytes
going out resets its stream with ``CANCEL``: its call is cancelled and what it
held freed, as Envoy's flush timeout does on its ``stream_idle_timeout``. A
socket that takes nothing for as long (the client reads nothing at all) is
aborted: no frame would reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import h2.connection
import h2.exceptions
from h2.errors import ErrorCodes

from grpc_bridge.edge.h2c_stream import StreamGone
from grpc_bridge.log import get_logger

if TYPE_CHECKING:
    from grpc_bridge.edge.h2c_stream import H2Stream

log = get_logger("grpc_bridge.http")

#: RFC 9113's initial window: a stream's, and the connection's before it is opened.
STREAM_WINDOW = 65535
#: What one connection may have sent that its handlers have not read (Go's default too).
CONNECTION_WINDOW = 1024 * 1024
#: Bytes a stalled send must get out for its stall to start over: a frame's worth (RFC
#: 9113's default SETTINGS_MAX_FRAME_SIZE), so a client that reads steadily is never
#: stalled however long its answer takes, and one that opens its window a few bytes at
#: a time (a "slow read") is, as a shut window is.
PROGRESS = 16384


class FlowControlled(asyncio.Protocol):
    """The flow-control half of an h2c connection (edge/h2c.py's ``H2cConnection``)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, h2conn: h2.connection.H2Connection, stall_s: float
    ) -> None:
        self._loop = loop
        self._h2 = h2conn
        self._stall_s = stall_s
        self.transport: asyncio.Transport | None = None
        self.peername: object = None
        self._writable: asyncio.Future[None] | None = None
        self._socket_stall: asyncio.TimerHandle | None = None
        #: DATA frames sent: the WINDOW_UPDATEs a client may send (edge/h2c_floods.py).
        self.data_frames_sent = 0

    def open_connection_window(self) -> None:
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - STREAM_WINDOW)

    # -- the socket ------------------------------------------------------------------

    def pause_writing(self) -> None:
        # The client is not reading: no more input either until it does (bounds the
        # control frames it could make the bridge answer meanwhile: PINGs, SETTINGS).
        self._writable = self._loop.create_future()
        if self.transport is not None:
            self.transport.pause_reading()
        if self._stall_s and self._socket_stall is None:
            self._socket_stall = self._loop.call_later(self._stall_s, self._socket_stalled)

    def resume_writing(self) -> None:
        self._wake_writable()
        if self.transport is not None:
            self.transport.resume_reading()

    def _wake_writable(self) -> None:
        if self._socket_stall is not None:
            self._socket_stall.cancel()
            self._socket_stall = None
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _socket_stalled(self) -> None:
        self._socket_stall = None
        if self.transport is not None and self._writable is not None:
            log.info(
                "h2_send_stalled", peer=str(self.peername), what="socket", waited=self._stall_s
            )
            self.transport.abort()

    async def drained(self) -> None:
        """Returns once the socket takes more (at once unless the client is not reading)."""
        if self._writable is not None:
            await self._writable

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    # -- receiving -------------------------------------------------------------------

    def give_back(self, stream: H2Stream, size: int) -> None:
        """``size`` bytes of ``stream``'s body were read (or are dropped): both windows
        reopen (h2 sends the WINDOW_UPDATEs once half a window is due; a stream that
        is closed reopens the connection's alone)."""
        if size <= 0 or self.transport is None:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):  # the connection is closed
            self._h2.acknowledge_received_data(size, stream.stream_id)
        self._flush()

    # -- sending ---------------------------------------------------------------------

    def _refuse(self, stream_id: int, code: int) -> None:
        # The client may have reset it already, in the same read (h2 then forgets it).
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
            self._h2.reset_stream(stream_id, code)

    def _send_reset(self, stream: H2Stream, code: int) -> None:
        if stream.reset or self.transport is None:
            return
        stream.reset = True
        self._refuse(stream.stream_id, code)  # (closed both ways already: nothing to do)
        self._flush()

    def send_headers(self, stream: H2Stream, fields: list[tuple[str, str]]) -> None:
        if stream.reset or self.transport is None:
            raise StreamGone("the HTTP/2 stream is gone")
        try:
            self._h2.send_headers(stream.stream_id, fields)
        except (h2.exceptions.ProtocolError, KeyError) as exc:
            raise StreamGone(f"the HTTP/2 stream is gone: {exc!r}") from exc
        self._flush()

    async def send_data(self, stream: H2Stream, data: bytes, *, end: bool) -> None:
        """``data`` within the peer's window (waiting for it to open), then END_STREAM
        if ``end``."""
        try:
            await self._send_data(stream, data, end)
        except (h2.exceptions.ProtocolError, KeyError) as exc:
            raise StreamGone(f"the HTTP/2 stream is gone: {exc!r}") from exc

    async def _send_data(self, stream: H2Stream, data: bytes, end: bool) -> None:
        view = memoryview(data)
        h2conn = self._h2
        waited_since: float | None = None
        sent_since = 0  # since the stall began
        while True:
            if stream.reset or self.transport is None:
                raise StreamGone("the HTTP/2 stream is gone")
            if not view:
                if end:
                    h2conn.end_stream(stream.stream_id)
                    stream.sent_end = True
                    self.data_frames_sent += 1
                    self._flush()
                return
            window = min(
                h2conn.local_flow_control_window(stream.stream_id), h2conn.max_outbound_frame_size
            )
            if window <= 0:
                if waited_since is None:
                    waited_since = self._loop.time()
                await self._window(stream, waited_since)
                continue
            size = min(window, len(view))
            last = end and size == len(view)
            h2conn.send_data(stream.stream_id, view[:size].tobytes(), end_stream=last)
            self.data_frames_sent += 1
            if waited_since is not None:
                sent_since += size
                if sent_since >= PROGRESS:
                    waited_since, sent_since = None, 0
            view = view[size:]
            self._flush()
            if last:
                stream.sent_end = True
                return
            await self.drained()

    async def _window(self, stream: H2Stream, waited_since: float) -> None:
        """Until the client opens ``stream``'s window (or the connection's); a write that
        has sent less than ``PROGRESS`` bytes in the ``stall_s`` since it first waited
        resets its stream (CANCEL) and cancels its call."""
        stream.window = self._loop.create_future()
        if not self._stall_s:
            await stream.window
            return
        try:
            async with asyncio.timeout_at(waited_since + self._stall_s):
                await stream.window
        except TimeoutError:
            log.info(
                "h2_send_stalled",
                peer=str(self.peername),
                what="window",
                stream=stream.stream_id,
                waited=self._stall_s,
            )
            self._send_reset(stream, ErrorCodes.CANCEL)
            stream.cancel()
            raise StreamGone("the client kept its window shut (streams.idle_timeout_s)") from None
