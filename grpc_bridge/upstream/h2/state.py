"""The HTTP/2 client's state machine, without I/O: frames in, frames out (RFC 9113).

Fed bytes (:meth:`H2State.receive`), it parses and checks frames, keeps the
stream registry and each stream's HTTP/2 state (:mod:`.outbound`), both
directions of flow control and both sides' settings, and tells each stream's
receiver (the gRPC call, :mod:`.response`) what arrived for it as events:
headers, data, a reset, or an end without the upstream's word. It marks the
upstream's END_STREAM and RST_STREAM on the stream before the event, so a
receiver that ends the call then ends a stream the upstream already closed.
What it writes goes through :meth:`H2State._emit`; the asyncio protocol
(:mod:`.connection`) gathers that into the socket, decides when to read and
keeps the timers. A connection error is raised as :class:`ConnectionError_`
for the protocol to turn into a GOAWAY.

Only what a gRPC client needs: client-initiated streams, HEADERS and
CONTINUATION, DATA with flow control both ways, SETTINGS, PING, RST_STREAM,
WINDOW_UPDATE and GOAWAY. No server push, no priorities.

Flow control: the connection-level receive window is replenished as data
arrives (one slow stream must not stall the others); a stream's window is
replenished only as its reader takes bytes, within ``stream_buffer_bytes``
(:mod:`.response`), so an HTTP client that stops reading makes the upstream wait
rather than the bridge buffer.
"""

from __future__ import annotations

from collections.abc import Callable

from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.grpc_status import Status
from grpc_bridge.upstream.h2.guard import MAX_CONTINUATIONS, Flood, FloodGuard
from grpc_bridge.upstream.h2.hpack_codec import HeaderDecoder, HeaderListTooLarge
from grpc_bridge.upstream.h2.outbound import (
    Call,
    ConnectionError_,
    H2Stream,
    Outbound,
)
from grpc_bridge.upstream.h2.outbound import (
    protocol_error as _protocol,
)

#: Our connection receive window: big enough that a LAN upstream never waits on it.
CONNECTION_WINDOW = 16 * 1024 * 1024
#: Largest DATA/HEADERS frame we take (fewer frames to parse than the 16 KiB default).
MAX_FRAME = 1024 * 1024
MAX_HEADER_LIST = 64 * 1024
#: Header-block bytes kept while CONTINUATIONs arrive: past this it is over the limit anyway.
_BLOCK_KEEP = MAX_HEADER_LIST + 1024
#: Frames handled per :meth:`H2State.receive` call: the rest waits for the next slice.
FRAMES_PER_SLICE = 256
#: Header-block bytes decoded per slice too: HPACK decoding is pure Python, ~15 ms
#: for a 60 KB block of Huffman-coded literals, so 256 such frames held the loop for seconds.
DECODED_PER_SLICE = 256 * 1024
#: Entries one SETTINGS frame may hold (a server sends a handful; nghttp2 allows 32).
_MAX_SETTINGS = 64

_U32 = frames.u32
_HEADER_UNPACK = frames.HEADER.unpack_from
_CONTINUATION = frames.CONTINUATION
# Read for every DATA and HEADERS frame: bound here, not looked up in frames each time.
_END_STREAM = frames.END_STREAM
_END_HEADERS = frames.END_HEADERS
_PADDED = frames.PADDED
_PRIORITY_FLAG = frames.PRIORITY_FLAG

OUR_SETTINGS = {
    frames.SETTINGS_HEADER_TABLE_SIZE: 0,
    frames.SETTINGS_ENABLE_PUSH: 0,
    # A stream's window grows as it opens, within its client's budget (response.py).
    frames.SETTINGS_INITIAL_WINDOW_SIZE: frames.DEFAULT_WINDOW,
    frames.SETTINGS_MAX_FRAME_SIZE: MAX_FRAME,
    frames.SETTINGS_MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
}
#: What a connection starts with: the preface, our SETTINGS, the connection window.
OPENING = (
    frames.PREFACE
    + frames.settings(OUR_SETTINGS)
    + frames.window_update(0, CONNECTION_WINDOW - frames.DEFAULT_WINDOW)
)


#: Frames a stream we reset may still receive free once the upstream ended it.
_AFTER_END = 2


def _size(why: str) -> ConnectionError_:
    return ConnectionError_(frames.FRAME_SIZE_ERROR, why)


class H2State(Outbound[Call]):
    """See the module docstring. Subclasses provide ``_emit`` and the hooks."""

    def __init__(self, new_call: Callable[[int], Call]) -> None:
        super().__init__(new_call)
        #: No new streams (GOAWAY received or sent, or closed).
        self.draining = False
        #: The peer acknowledged our SETTINGS.
        self.settings_acked = False
        self.got_settings = False
        #: The last :meth:`receive` stopped at its budget with whole frames left.
        self.slice_full = False
        self.guard = FloodGuard()
        self._decoder = HeaderDecoder(MAX_HEADER_LIST)
        #: Header-block bytes decoded in the current slice.
        self._decoded = 0
        # Receive side: bytes taken since our last connection WINDOW_UPDATE.
        self._recv_unacked = 0
        #: A header block in CONTINUATIONs: stream id, HEADERS flags, bytes, frame count.
        self._continuing: tuple[int, int, bytearray, int] | None = None
        self._handlers: dict[int, Callable[[int, int, int, bytes], None]] = {
            frames.DATA: self._data,
            frames.HEADERS: self._headers,
            frames.CONTINUATION: self._continuation,
            frames.SETTINGS: self._settings,
            frames.WINDOW_UPDATE: self._window_update,
            frames.PING: self._ping,
            frames.RST_STREAM: self._rst_stream,
            frames.GOAWAY: self._goaway_frame,
            frames.PRIORITY: self._priority,
            frames.PUSH_PROMISE: self._push_promise,
        }

    # -- hooks of the I/O side -------------------------------------------------------

    def _on_goaway(self, why: str, code: int, debug: bytes) -> None:
        """The peer sent GOAWAY: stop taking streams."""

    # -- receiving -------------------------------------------------------------------

    def receive(self, view: bytes | bytearray, pos: int, end: int) -> int:
        """Handle the whole frames of ``view[pos:end]``, up to a slice; returns where it stopped.

        Raises :class:`ConnectionError_` for a connection error.
        """
        handlers = self._handlers
        budget = FRAMES_PER_SLICE
        self._decoded = 0
        if not self.got_settings and end - pos >= 9 and view[pos + 3] != frames.SETTINGS:
            # RFC 9113 §3.4: a server's first frame is SETTINGS.
            sample = bytes(view[pos : pos + 24])
            raise _protocol(f"upstream does not speak HTTP/2 (it sent {sample!r})")
        try:
            while end - pos >= 9 and budget and self._decoded < DECODED_PER_SLICE:
                high, low, kind, flags, stream_id = _HEADER_UNPACK(view, pos)
                length = (high << 16) | low
                if length > MAX_FRAME:
                    raise _size(f"upstream sent a {length}-byte frame")
                if end - pos - 9 < length:
                    break
                payload = bytes(view[pos + 9 : pos + 9 + length])
                pos += 9 + length
                budget -= 1
                if self._continuing is not None and kind != _CONTINUATION:
                    raise _protocol("upstream interrupted a header block")
                handler = handlers.get(kind)
                if handler is not None:
                    handler(flags, stream_id & 0x7FFFFFFF, length, payload)
                else:
                    self.guard.cheap("unknown-type")  # ignored (RFC 9113 §5.5), but not free
        except Flood as exc:
            raise ConnectionError_(frames.ENHANCE_YOUR_CALM, str(exc)) from None
        self.slice_full = end - pos >= 9 and (not budget or self._decoded >= DECODED_PER_SLICE)
        if self._recv_unacked >= CONNECTION_WINDOW // 4:
            increment, self._recv_unacked = self._recv_unacked, 0
            self._emit(frames.window_update(0, increment))
        return pos

    def _in_flight(self, stream_id: int, ended: bool, *, reset: bool = False) -> bool:
        """Whether a frame for a stream gone from ``streams`` is one we reset and the upstream
        had in flight: free, up to IN_FLIGHT_FRAMES. After the upstream's END_STREAM
        (``ended``) only a WINDOW_UPDATE or RST_STREAM may follow (RFC 9113 §5.1), and
        nothing after its RST_STREAM (``reset``)."""
        kept = self.reset_by_us
        left = kept.get(stream_id)
        if not left:
            return False
        if reset:
            del kept[stream_id]
        else:
            kept[stream_id] = min(left - 1, _AFTER_END) if ended else left - 1
        return True

    def _stream_of(self, stream_id: int, what: str) -> H2Stream[Call] | None:
        """The open stream ``stream_id``; None for one already closed; raises for any other."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream
        if stream_id == 0:
            raise _protocol(f"upstream sent {what} on stream 0")
        if not stream_id & 1:
            raise _protocol(f"upstream sent {what} on stream {stream_id}, which it cannot open")
        if stream_id >= self._next_id:
            raise _protocol(f"upstream sent {what} on stream {stream_id}, which is idle")
        return None

    def _data(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        stream = self.streams.get(stream_id) or self._stream_of(stream_id, "DATA")
        self._recv_unacked += length
        if self._recv_unacked > CONNECTION_WINDOW:
            raise ConnectionError_(
                frames.FLOW_CONTROL_ERROR, "upstream sent more data than the connection window"
            )
        body = frames.unpad(payload, flags) if flags & _PADDED else payload
        if body is None:
            raise _protocol("upstream sent DATA with bad padding")
        end_stream = bool(flags & _END_STREAM)
        if stream is None:
            # Its bytes are handed back as window above, but the frame carries nothing.
            if not ((body or end_stream) and self._in_flight(stream_id, end_stream)):
                self.guard.cheap("DATA on a finished stream")
            return
        if not body and not end_stream:
            self.guard.cheap("empty DATA")
        if end_stream:
            stream.remote_closed = True
        stream.call.on_data(body, end_stream, length)

    def _headers(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        stream = self.streams.get(stream_id) or self._stream_of(stream_id, "HEADERS")
        block = frames.unpad(payload, flags) if flags & _PADDED else payload
        if block is None:
            raise _protocol("upstream sent HEADERS with bad padding")
        if flags & _PRIORITY_FLAG:
            if len(block) < 5:
                raise _size("upstream sent HEADERS too short for its priority fields")
            block = block[5:]
        if stream is None and not (block and self._in_flight(stream_id, bool(flags & _END_STREAM))):
            self.guard.cheap("HEADERS on a finished stream")
        if not flags & _END_HEADERS:
            if not block and stream is not None:
                self.guard.cheap("empty HEADERS")
            self._continuing = (stream_id, flags, bytearray(block[:_BLOCK_KEEP]), 0)
            return
        if stream is not None:
            # Without a dynamic table no HPACK state follows a block: a closed
            # stream's need not be decoded.
            self._header_block(stream, flags, block)

    def _continuation(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        continuing = self._continuing
        if continuing is None or continuing[0] != stream_id:
            raise _protocol("upstream sent an unexpected CONTINUATION")
        _, first_flags, block, count = continuing
        if count >= MAX_CONTINUATIONS:
            raise Flood(
                f"upstream flooded a header block with over {MAX_CONTINUATIONS} CONTINUATION frames"
            )
        if not payload and not flags & frames.END_HEADERS:
            self.guard.cheap("empty CONTINUATION")
        elif stream_id not in self.streams and not self._in_flight(stream_id, False):
            self.guard.cheap("CONTINUATION on a finished stream")
        if len(block) < _BLOCK_KEEP:
            block += payload[: _BLOCK_KEEP - len(block)]
        if flags & frames.END_HEADERS:
            self._continuing = None
            stream = self.streams.get(stream_id)
            if stream is not None:
                self._header_block(stream, first_flags, bytes(block))
        else:
            self._continuing = (stream_id, first_flags, block, count + 1)

    def _header_block(self, stream: H2Stream[Call], flags: int, block: bytes) -> None:
        # Decoding is bounded per call (a few 1xx blocks, response.py) and per read slice
        # (DECODED_PER_SLICE); only informational blocks, which carry nothing, are charged.
        self._decoded += len(block)
        try:
            decoded = self._decoder.decode(block)
        except HeaderListTooLarge:
            status = Status(
                Code.RESOURCE_EXHAUSTED,
                f"upstream sent a header list over {MAX_HEADER_LIST} bytes",
            )
            self.reset(stream.call, frames.CANCEL, status)
            return
        informational = decoded.status
        if informational is not None and informational[0] == "1":
            self.guard.cheap("informational HEADERS")  # allowed, but they carry nothing
        end_stream = bool(flags & _END_STREAM)
        if end_stream:
            stream.remote_closed = True
        stream.call.on_headers(decoded, end_stream)

    def _settings(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        if stream_id:
            raise _protocol("upstream sent SETTINGS on a stream")
        if flags & frames.ACK:
            if payload:
                raise _size("upstream sent a SETTINGS ACK with a payload")
            self.guard.cheap("SETTINGS ACK")  # we sent one SETTINGS: the rest are free
            self.settings_acked = True
            return
        if length % 6:
            raise _size("upstream sent a SETTINGS frame of a bad length")
        if length > 6 * _MAX_SETTINGS:
            raise Flood(f"upstream sent over {_MAX_SETTINGS} settings in one frame")
        if self.got_settings:
            self.guard.cheap("SETTINGS")
        initial_window = self._initial_window
        for key, value in frames.parse_settings(payload):
            if key == frames.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > frames.MAX_WINDOW:
                    raise ConnectionError_(
                        frames.FLOW_CONTROL_ERROR, "upstream sent an initial window over 2^31-1"
                    )
                initial_window = value  # the last in a frame wins (RFC 9113 §6.5.3)
            else:
                self._setting(key, value)
        if initial_window != self._initial_window:
            self._new_initial_window(initial_window)
        self._emit(frames.SETTINGS_ACK)
        self._acked()
        if not self.got_settings:
            self.got_settings = True
            self._on_ready()
        self._flush_blocked()
        self._wake_slots()

    def _on_ready(self) -> None:
        """The peer's first SETTINGS arrived: streams may start."""

    def _acked(self) -> None:
        """An ACK was emitted (the protocol counts the ones the socket has not taken)."""

    def _ping(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        if stream_id:
            raise _protocol("upstream sent PING on a stream")
        if length != 8:
            raise _size("upstream sent a PING that is not 8 bytes")
        if flags & frames.ACK:
            # Ours are one per keepalive interval (any read counts as the answer).
            self.guard.cheap("PING ACK")
            return
        self.guard.cheap("PING")
        self._emit(frames.ping(payload, ack=True))
        self._acked()

    def _rst_stream(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        if length != 4:
            raise _size("upstream sent an RST_STREAM that is not 4 bytes")
        stream = self._stream_of(stream_id, "RST_STREAM")
        if stream is None:
            if not self._in_flight(stream_id, True, reset=True):
                self.guard.cheap("RST_STREAM")
            return
        stream.local_closed = stream.remote_closed = True
        stream.call.on_reset(_U32(payload))

    def _priority(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _protocol("upstream sent PRIORITY on stream 0")
        self.guard.cheap("PRIORITY")
        if length != 5:
            # RFC 9113 §6.3: a stream error FRAME_SIZE_ERROR.
            stream = self.streams.get(stream_id)
            if stream is not None:
                status = Status(Code.INTERNAL, "upstream sent a PRIORITY that is not 5 bytes")
                self.reset(stream.call, frames.FRAME_SIZE_ERROR, status)

    def _push_promise(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        raise _protocol("upstream sent PUSH_PROMISE though push is disabled")

    def _window_update(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        if length != 4:
            raise _size("upstream sent a WINDOW_UPDATE that is not 4 bytes")
        increment = _U32(payload) & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise _protocol("upstream sent a connection WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > frames.MAX_WINDOW:
                raise ConnectionError_(
                    frames.FLOW_CONTROL_ERROR, "upstream overflowed the connection window"
                )
        else:
            stream = self._stream_of(stream_id, "WINDOW_UPDATE")
            if stream is None:
                if not self._in_flight(stream_id, False):
                    self.guard.cheap("WINDOW_UPDATE")
                return
            if increment == 0:
                status = Status(Code.INTERNAL, "upstream sent a stream WINDOW_UPDATE of 0")
                self.reset(stream.call, frames.PROTOCOL_ERROR, status)
                return
            stream.send_window += increment
            if stream.send_window > frames.MAX_WINDOW:
                status = Status(Code.INTERNAL, "upstream overflowed the stream's window")
                self.reset(stream.call, frames.FLOW_CONTROL_ERROR, status)
                return
        self._flush_blocked()

    def _goaway_frame(self, flags: int, stream_id: int, length: int, payload: bytes) -> None:
        if stream_id:
            raise _protocol("upstream sent GOAWAY on a stream")
        if length < 8:
            raise _size("upstream sent a GOAWAY shorter than 8 bytes")
        last = _U32(payload) & 0x7FFFFFFF
        code = _U32(payload, 4)
        debug = payload[8:]
        text = debug[:256].decode("utf-8", "replace")
        why = f"upstream sent GOAWAY (HTTP/2 error code {code}{': ' + text if text else ''})"
        self._on_goaway(why, code, debug)
        for stream in [s for i, s in self.streams.items() if i > last]:
            stream.call.fail(Status(Code.UNAVAILABLE, why, unprocessed=True))
