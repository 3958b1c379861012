"""HTTP/2 with prior knowledge (h2c) on the proxy port: the connection.

A connection whose first bytes are the HTTP/2 preface (``PRI * HTTP/2.0``,
RFC 9113 §3.3) is handed here by the lean edge (edge/fastpath.py) or by the
sniffing protocol of the aiohttp-only site (edge/sites.py); any other
stays HTTP/1.1. The frames are the ``h2`` library's (python-hyper, a
well-kept RFC 9113 state machine; the bridge's own upstream/h2 is a client):
this module feeds it bytes, acts on its events and bounds what a peer can
make the bridge hold. Each request stream is served by the proxy app through
edge/h2c_stream.py.

Bounds: ``MAX_STREAMS`` concurrent streams (advertised; h2 makes a stream
beyond it a connection error, refusing it before its header block is decoded,
so the connection's HPACK state cannot go on; a stream whose answer is still
being finished counts too, and one beyond that is refused with REFUSED_STREAM),
``MAX_HEADER_LIST`` bytes of header block (also while it is unfinished: h2
would keep ~1 MiB of one until its end), a header block due within
``limits.body_read_timeout_s`` of its first byte (as an HTTP/1.1 head is,
busy connection or not), the windows of edge/h2c_flow.py both ways (what a
connection's handlers have not read, how long a send may wait for the
client), the answers its streams' upstream calls hold (one stream's
``stream_buffer_bytes`` between them: ``answers``, upstream/client_budget.py),
an idle connection closed after ``IDLE_TIMEOUT_S``, a flood of client
resets (``MAX_RESETS`` within ``RESET_WINDOW_S``, CVE-2023-44487), PINGs,
SETTINGS, their ACKs, GOAWAYs, unearned WINDOW_UPDATEs, PRIORITY frames, frames
of unknown types or frames h2 makes no event of (beyond what the streams opened
earn), or DATA and HEADERS frames on reset streams (each answered with
RST_STREAM) (``MAX_CONTROL_FRAMES`` each), or more than ``MAX_EMPTY_IN_A_ROW``
empty DATA or HEADERS frames without END_STREAM in a row, answered with GOAWAY
(edge/h2c_floods.py). A
malformed request resets its own stream (edge/h2c_malformed.py); any other
protocol error is a GOAWAY naming it, then the connection closes; a stream the
client resets cancels its upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from aiohttp import web
from h2.errors import ErrorCodes

from grpc_bridge.edge.aiohttp_compat import head_limits
from grpc_bridge.edge.cut_off import FLUSH_GRACE, cut_off
from grpc_bridge.edge.h2c_floods import Flood, FrameFlood, PerStream, Unanswered, WindowUpdates
from grpc_bridge.edge.h2c_flow import FlowControlled
from grpc_bridge.edge.h2c_header_blocks import head_begun, unfinished_header_block
from grpc_bridge.edge.h2c_malformed import StreamErrorsConnection, StreamMalformed
from grpc_bridge.edge.h2c_stream import H2Stream, request_parts, serve_stream
from grpc_bridge.log import get_logger
from grpc_bridge.upstream.client_budget import ClientBudget

log = get_logger("grpc_bridge.http")

#: What an HTTP/2 connection with prior knowledge starts with (RFC 9113 §3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_STREAMS = 100
#: h2's own decoder limit (``H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE``), advertised.
MAX_HEADER_LIST = 64 * 1024
#: An idle connection (no stream open) is closed after this (HTTP/1.1's keep-alive timeout).
IDLE_TIMEOUT_S = 75.0
MAX_RESETS = 500
RESET_WINDOW_S = 10.0
#: PINGs and SETTINGS (each kind) a client may send within ``RESET_WINDOW_S``
#: (gRPC's keepalive and BDP pings come far fewer: one outstanding at a time), and
#: WINDOW_UPDATEs beyond those the DATA sent earns (edge/h2c_floods.py).
MAX_CONTROL_FRAMES = 1000


def preface_state(data: bytes | bytearray) -> bool | None:
    """True: ``data`` starts with the preface; None: it may still (too short); False: not."""
    if len(data) >= len(PREFACE):
        return data.startswith(PREFACE)
    return None if PREFACE.startswith(bytes(data)) else False


class H2cEdge:
    """Every h2c connection of a listener, for shutdown."""

    def __init__(self, server: web.Server, *, head_timeout: float, stall_timeout: float) -> None:
        self.server = server
        #: ``limits.body_read_timeout_s``: a header block is due within it of its first byte.
        self.head_timeout = head_timeout
        #: ``streams.idle_timeout_s``: how long a send may wait for the client (h2c_flow.py).
        self.stall_timeout = stall_timeout
        #: HTTP/1.1's head limits, on every stream's header block too (edge/h2c_stream.py).
        self.head_limits = head_limits(server)
        self.connections: set[H2cConnection] = set()
        self.closing = False
        #: Set when the last connection is gone (awaited at shutdown).
        self.emptied = asyncio.Event()

    def adopt(self, transport: asyncio.Transport, data: bytes, *, paused: bool) -> None:
        """An HTTP/2 connection takes over ``transport``; ``data`` was read already."""
        conn = H2cConnection(self)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if paused:
            transport.resume_reading()
        conn.data_received(data)

    async def shutdown(self, timeout: float) -> None:
        """Streams in flight get ``timeout``, then are cancelled; each connection gets its
        GOAWAY once it has none; one that takes nothing more is cut off after a grace."""
        self.closing = True
        for conn in list(self.connections):
            conn.go_away()
        busy = [s.task for c in self.connections for s in c.streams.values() if s.task]
        if busy:
            await asyncio.wait(busy, timeout=timeout)
        await cut_off(self.connections, self.emptied, min(timeout, FLUSH_GRACE))


class H2cConnection(FlowControlled):
    """One HTTP/2 client connection (its flow control: edge/h2c_flow.py)."""

    def __init__(self, edge: H2cEdge) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self._checked = StreamErrorsConnection(config)
        super().__init__(asyncio.get_running_loop(), self._checked, edge.stall_timeout)
        self._edge = edge
        self.sockname: object = None
        self.streams: dict[int, H2Stream] = {}
        self._idle: asyncio.TimerHandle | None = None
        #: Set while a header block is unfinished: it is due as a request head is.
        self._head_due: asyncio.TimerHandle | None = None
        self._streams_opened = 0
        self._window_updates = WindowUpdates(Flood(MAX_CONTROL_FRAMES, RESET_WINDOW_S))
        self._resets = Flood(MAX_RESETS, RESET_WINDOW_S)
        self._pings = Flood(MAX_CONTROL_FRAMES, RESET_WINDOW_S)
        self._settings = Flood(MAX_CONTROL_FRAMES, RESET_WINDOW_S)
        self._priorities = PerStream(Flood(MAX_CONTROL_FRAMES, RESET_WINDOW_S))
        self._unknown = PerStream(Flood(MAX_CONTROL_FRAMES, RESET_WINDOW_S))
        self._unanswered = Unanswered(MAX_CONTROL_FRAMES, RESET_WINDOW_S)
        self._settings_acks = Flood(MAX_CONTROL_FRAMES, RESET_WINDOW_S)
        self._ping_acks = Flood(MAX_CONTROL_FRAMES, RESET_WINDOW_S)
        self._goaways = Flood(MAX_CONTROL_FRAMES, RESET_WINDOW_S)
        self._going_away = False
        #: What the upstream calls of this connection's streams hold between them.
        self.answers = ClientBudget()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.peername = transport.get_extra_info("peername")
        self.sockname = transport.get_extra_info("sockname")
        self._edge.connections.add(self)
        self._edge.emptied.clear()
        h2conn = self._h2
        h2conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        # Settings made at start are in force at once (h2 never sees them "change" at the
        # peer's acknowledgement), so the decoder's limit is set here too.
        h2conn.decoder.max_header_list_size = MAX_HEADER_LIST
        h2conn.initiate_connection()
        self.open_connection_window()
        self._flush()
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except FrameFlood as exc:
            self._flood(None, str(exc))
            return
        except h2.exceptions.ProtocolError as exc:
            self._protocol_error(exc)
            return
        counted = self._checked
        if counted.frames_on_reset_streams or counted.silent_frames:
            flood = self._unanswered.take(counted, self._loop.time(), self._streams_opened)
            if flood is not None:
                self._flood(*flood)
                return
        if unfinished_header_block(self._h2) > MAX_HEADER_LIST:
            log.info("h2_protocol_error", peer=str(self.peername), error="header block too large")
            self._close_with(ErrorCodes.PROTOCOL_ERROR, "header block over the limit")
            return
        if head_begun(self._h2):
            # A block unfinished at the last read's end has ended if this read made events
            # (no other frame may come inside a block): the one unfinished now began in
            # this read, and is due from then.
            if self._head_due is None or events:
                if self._head_due is not None:
                    self._head_due.cancel()
                timeout = self._edge.head_timeout
                self._head_due = self._loop.call_later(timeout, self._head_late, timeout)
        elif self._head_due is not None:
            self._head_due.cancel()
            self._head_due = None
        try:
            for event in events:
                self._event(event)
        except Exception as exc:  # a bug here must not reach the event loop
            log.error("h2_error", error=repr(exc))
            self._close_with(ErrorCodes.INTERNAL_ERROR, "internal error")
            return
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._edge.connections.discard(self)
        if not self._edge.connections:
            self._edge.emptied.set()
        for timer in (self._idle, self._head_due):
            if timer is not None:
                timer.cancel()
        for stream in list(self.streams.values()):
            stream.cancel()
        self._wake_writable()

    def _head_late(self, timeout: float) -> None:
        self._head_due = None
        log.info("h2_protocol_error", peer=str(self.peername), error="header block late")
        why = f"header block not complete within {timeout:g} s (limits.body_read_timeout_s)"
        self._close_with(ErrorCodes.PROTOCOL_ERROR, why)

    # -- events ---------------------------------------------------------------------

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            size = event.flow_controlled_length or 0
            if stream is None or stream.reset:
                # Nobody reads it: its window goes back to the connection at once.
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self._h2.acknowledge_received_data(size, event.stream_id)
                return
            stream.data(event.data or b"", size)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.end()
        elif isinstance(event, StreamMalformed):
            # (A malformed DATA frame's bytes h2 gave back to the connection window itself.)
            log.info("h2_request_refused", peer=str(self.peername), error=event.reason)
            self._client_reset(event.stream_id, malformed=True)
        elif isinstance(event, h2.events.StreamReset):
            self._client_reset(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            earned = self._streams_opened, self.data_frames_sent
            if self._window_updates.over(self._loop.time(), *earned):
                self._flood(self._window_updates.flood, "too many WINDOW_UPDATE frames")
            if event.stream_id:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.wake()
            else:
                self._wake_all()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._count(self._settings, "SETTINGS frames")
            self._wake_all()
        elif isinstance(event, h2.events.PingReceived):
            self._count(self._pings, "PING frames")
        elif isinstance(event, h2.events.PriorityUpdated):
            self._per_stream(self._priorities, "PRIORITY frames")
        elif isinstance(event, h2.events.UnknownFrameReceived):
            self._per_stream(self._unknown, "frames of unknown types")
        elif isinstance(event, h2.events.SettingsAcknowledged):
            self._count(self._settings_acks, "SETTINGS ACK frames")
        elif isinstance(event, h2.events.PingAckReceived):
            self._count(self._ping_acks, "PING ACK frames")
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._count(self._goaways, "GOAWAY frames")
            self._going_away = True
            if not self.streams and self.transport is not None:
                self.transport.close()

    def _request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        self._streams_opened += 1
        if self._edge.closing or self._going_away or len(self.streams) >= MAX_STREAMS:
            self._refuse(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        parts = request_parts(list(event.headers or ()))
        if isinstance(parts, str):
            log.info("h2_request_refused", peer=str(self.peername), error=parts)
            self._refuse(stream_id, ErrorCodes.PROTOCOL_ERROR)
            self._count(self._resets, "streams reset")
            return
        stream = H2Stream(self, stream_id, self._loop)
        stream.without_content(event.stream_ended is not None, parts[2])
        self.streams[stream_id] = stream  # (an END_STREAM with the head is an event of its own)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        stream.task = self._loop.create_task(
            serve_stream(
                self, stream, self._edge.server, parts, self._edge.head_limits, self._stream_done
            )
        )

    def _client_reset(self, stream_id: int, *, malformed: bool = False) -> None:
        """The client reset a stream, or made it malformed: a malformed request costs what a
        reset does (decoded, then torn down) and counts with them, served or not."""
        stream = self.streams.pop(stream_id, None)
        if stream is None and not malformed:
            return
        if stream is not None:
            stream.cancel()
        self._count(self._resets, "streams reset")
        self._maybe_idle()

    def _count(self, flood: Flood, what: str) -> None:
        """One more of ``what``; over its limit, GOAWAY ``ENHANCE_YOUR_CALM`` (h2c_floods.py)."""
        if flood.over(self._loop.time()):
            self._flood(flood, f"too many {what}")

    def _per_stream(self, counter: PerStream, what: str) -> None:
        if counter.over(self._loop.time(), self._streams_opened):
            self._flood(counter.flood, f"too many {what}")

    def _flood(self, flood: Flood | None, why: str) -> None:
        count = len(flood) if flood is not None else None
        log.warning("h2_flood", peer=str(self.peername), what=why, count=count)
        self._close_with(ErrorCodes.ENHANCE_YOUR_CALM, why)

    def _stream_done(self, stream: H2Stream) -> None:
        self.give_back(stream, stream.release())  # what it did not read, to the connection
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            if not stream.reset and not stream.ended:
                # Answered before the request's end: the client need not send the rest
                # (RFC 9113 §8.1).
                self._send_reset(stream, ErrorCodes.NO_ERROR)
        self._flush()
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self.streams or self.transport is None:
            return
        if self._edge.closing:
            self._close_with(ErrorCodes.NO_ERROR, "shutting down")
            return
        if self._going_away:  # the client's GOAWAY
            self._flush()
            self.transport.close()
            return
        self._arm_idle()

    def _arm_idle(self) -> None:
        if self._idle is None:
            self._idle = self._loop.call_later(IDLE_TIMEOUT_S, self._idle_close)

    def _idle_close(self) -> None:
        self._idle = None
        if not self.streams:
            self._close_with(ErrorCodes.NO_ERROR, "idle")

    def _wake_all(self) -> None:
        for stream in self.streams.values():
            stream.wake()

    # -- errors and closing ----------------------------------------------------------

    def _protocol_error(self, exc: h2.exceptions.ProtocolError) -> None:
        code = getattr(exc, "error_code", None) or ErrorCodes.PROTOCOL_ERROR
        log.info("h2_protocol_error", peer=str(self.peername), error=str(exc))
        self._close_with(code, str(exc))

    def _close_with(self, code: int, why: str) -> None:
        """GOAWAY naming ``why``, then the connection closes (its streams are cancelled)."""
        if self.transport is None:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):  # closed already
            self._h2.close_connection(code, additional_data=why.encode()[:256])
        self._flush()
        self.transport.close()

    def go_away(self) -> None:
        """Shutdown: new streams are refused (REFUSED_STREAM: safe to retry elsewhere); the
        GOAWAY goes once the streams in flight have ended (h2 sends no frame after its own
        GOAWAY, and its clients take none), then the connection closes."""
        self._maybe_idle()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def reset_stream(self, stream: H2Stream) -> None:
        """A stream whose answer failed midway: RST_STREAM INTERNAL_ERROR."""
        self._send_reset(stream, ErrorCodes.INTERNAL_ERROR)

    def close_stream_after(self, stream: H2Stream) -> None:
        """HTTP/1.1's "close after this answer" (a late body): the stream alone ends."""
        if stream.sent_end and not stream.ended:
            self._send_reset(stream, ErrorCodes.NO_ERROR)
