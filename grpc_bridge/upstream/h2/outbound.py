"""The streams of an HTTP/2 client connection and what it sends on them, without I/O.

The base of :class:`~.state.H2State`: the stream registry, stream ids, the
HTTP/2 side of each stream (:class:`H2Stream`: its send window, the request
bytes waiting for window, which sides ended it), the send side of flow
control, and the peer's settings that shape what we write. Output goes
through :meth:`Outbound._emit`; the asyncio protocol puts it on the socket.

Each stream's receiver (the gRPC call, :mod:`.stream`) is made by the
protocol's ``new_call`` and is told what arrives through
:class:`StreamEvents`; it asks for what it needs (RST_STREAM, window, to be
forgotten) by the methods :meth:`reset`, :meth:`grant` and :meth:`forget`.
Neither side writes the other's fields.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import frames, hpack_codec
from grpc_bridge.upstream.h2.fields import Block
from grpc_bridge.upstream.h2.grpc_status import Status

#: The most receive window a stream is granted: big enough that a LAN upstream never
#: waits on it. Each starts with the initial one (64 KiB) and is granted the rest once
#: it used half of that, or, for a call of an h2c client connection, as it opens and
#: within what that connection's budget allows (upstream/client_budget.py).
STREAM_WINDOW = 4 * 1024 * 1024


#: How many streams reset by the bridge are remembered (see Outbound.reset_by_us).
_RESET_KEPT = 1024
#: Frames a stream reset by the bridge may still receive for free: what a peer had in
#: flight when our RST_STREAM reached it (a few DATA frames, trailers, WINDOW_UPDATEs).
IN_FLIGHT_FRAMES = 64


class ConnectionError_(Exception):  # not the builtin ConnectionError, an OSError
    """A connection error (RFC 9113 §5.4.1): ``code`` goes in the GOAWAY."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


def protocol_error(why: str) -> ConnectionError_:
    return ConnectionError_(frames.PROTOCOL_ERROR, why)


class StreamEvents(Protocol):
    """What the state machine tells a stream's receiver (the events of h2's H2Connection)."""

    @property
    def id(self) -> int: ...

    def on_headers(self, block: Block, end_stream: bool) -> None: ...

    def on_data(self, payload: bytes, end_stream: bool, flow_length: int) -> None: ...

    def on_reset(self, code: int) -> None:
        """The upstream reset the stream (RST_STREAM with ``code``)."""

    def fail(self, status: Status) -> None:
        """The stream ends without the upstream's word (GOAWAY, connection lost, reset by us)."""


Call = TypeVar("Call", bound=StreamEvents)


class H2Stream(Generic[Call]):
    """The HTTP/2 side of one open stream: written by the state machine only."""

    __slots__ = (
        "call",
        "id",
        "local_closed",
        "pending",
        "pending_end",
        "remote_closed",
        "send_window",
    )

    def __init__(self, call: Call, stream_id: int, send_window: int) -> None:
        #: The stream's receiver: the gRPC call.
        self.call = call
        self.id = stream_id
        self.send_window = send_window
        #: Request bytes waiting for flow-control window (made when the first
        #: has to wait: a unary request is written whole), and whether
        #: END_STREAM follows them.
        self.pending: deque[memoryview] | None = None
        self.pending_end = False
        #: We sent END_STREAM; the upstream sent END_STREAM (or either side RST_STREAM).
        self.local_closed = False
        self.remote_closed = False


class HeadersTooLarge(Exception):
    """A request's header block is over the upstream's SETTINGS_MAX_HEADER_LIST_SIZE."""


class Outbound(Generic[Call]):
    """See the module docstring. Subclasses provide ``_emit`` and the hooks.

    ``new_call(stream_id)`` makes the receiver of a new stream's events.
    """

    def __init__(self, new_call: Callable[[int], Call]) -> None:
        self._new_call = new_call
        #: The receive window each stream starts with (our SETTINGS_INITIAL_WINDOW_SIZE),
        #: and the most it is granted.
        self.stream_window = frames.DEFAULT_WINDOW
        self.max_stream_window = STREAM_WINDOW
        self.streams: dict[int, H2Stream[Call]] = {}
        self._next_id = 1
        #: Streams with request bytes waiting for window.
        self._blocked: dict[int, H2Stream[Call]] = {}
        #: Streams the bridge reset itself, oldest first (at most _RESET_KEPT), with
        #: how many more frames each may receive free: frames the upstream had in
        #: flight still arrive (RFC 9113 §5.4.2), as after every cancelled call, and
        #: must not count as a flood; past IN_FLIGHT_FRAMES they do.
        self.reset_by_us: OrderedDict[int, int] = OrderedDict()
        # Peer settings, and the connection's send window.
        self._max_frame = frames.DEFAULT_MAX_FRAME
        self._initial_window = frames.DEFAULT_WINDOW
        self.max_concurrent = 2**31
        self.peer_max_header_list = 2**32
        self._send_window = frames.DEFAULT_WINDOW

    # -- hooks of the I/O side -------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        raise NotImplementedError

    def _wake_writers(self, *, force: bool = False) -> None:
        """Request writers may proceed (window opened or their stream ended)."""

    def _wake_slots(self) -> None:
        """A stream slot may have opened (a stream ended, MAX_CONCURRENT_STREAMS rose)."""

    def _on_stream_gone(self) -> None:
        """A stream left the registry (a draining connection may close now)."""

    # -- streams ---------------------------------------------------------------------

    def new_stream(self, block: bytes, data: bytes | None, end_stream: bool) -> Call:
        """Start a stream with a header block and, optionally, its first DATA.

        Raises :class:`HeadersTooLarge` when ``block`` is over the peer's limit.
        """
        limit = self.peer_max_header_list
        # Each field is at least one byte and counts 32 more: only a big block needs the sum.
        if len(block) * 33 > limit and (size := hpack_codec.list_size(block)) > limit:
            raise HeadersTooLarge(
                f"request headers of {size} bytes are over the upstream's "
                f"SETTINGS_MAX_HEADER_LIST_SIZE ({limit})"
            )
        stream_id = self._next_id
        self._next_id += 2
        call = self._new_call(stream_id)
        stream = H2Stream(call, stream_id, self._initial_window)
        self.streams[stream_id] = stream
        headers_end = end_stream and data is None
        out = frames.header_frames(stream_id, block, headers_end, self._max_frame)
        if headers_end:
            stream.local_closed = True
            self._emit(out)
            return call
        if data is not None:
            size = len(data)
            if size <= stream.send_window and size <= self._send_window and size <= self._max_frame:
                # The usual unary request: HEADERS and DATA in one write.
                stream.send_window -= size
                self._send_window -= size
                out += frames.frame_header(
                    frames.DATA, frames.END_STREAM if end_stream else 0, stream_id, size
                )
                self._emit(out + data)
                stream.local_closed = end_stream
                return call
            self._emit(out)
            self.queue(stream, data, end_stream)
        else:
            self._emit(out)
        return call

    def queue(self, stream: H2Stream[Call], data: bytes, end_stream: bool) -> None:
        if data:
            if stream.pending is None:
                stream.pending = deque()
            stream.pending.append(memoryview(data))
        stream.pending_end = stream.pending_end or end_stream
        self._flush(stream)

    def _flush(self, stream: H2Stream[Call]) -> None:
        if stream.local_closed:
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
            self._emit(b"".join(out))
        if not pending:
            self._wake_writers()

    # -- the peer's settings ---------------------------------------------------------

    def _new_initial_window(self, value: int) -> None:
        """Every open stream's send window moves by the change (RFC 9113 §6.9.2).

        Once per SETTINGS frame, with its net change: per entry, a frame of 64
        of them would walk every open stream 64 times.
        """
        delta = value - self._initial_window
        self._initial_window = value
        for stream in self.streams.values():
            stream.send_window += delta
            if stream.send_window > frames.MAX_WINDOW:
                raise ConnectionError_(
                    frames.FLOW_CONTROL_ERROR, "upstream's new initial window overflows 2^31-1"
                )

    def _setting(self, key: int, value: int) -> None:
        """One setting other than SETTINGS_INITIAL_WINDOW_SIZE (H2State._settings takes that)."""
        if key == frames.SETTINGS_MAX_FRAME_SIZE:
            if not frames.DEFAULT_MAX_FRAME <= value <= 2**24 - 1:
                raise protocol_error("upstream sent an invalid max frame size")
            self._max_frame = value
        elif key == frames.SETTINGS_MAX_CONCURRENT_STREAMS:
            self.max_concurrent = value
        elif key == frames.SETTINGS_ENABLE_PUSH:
            if value != 0:
                raise protocol_error(
                    f"upstream sent SETTINGS_ENABLE_PUSH={value}: a server cannot push"
                )
        elif key == frames.SETTINGS_MAX_HEADER_LIST_SIZE:
            self.peer_max_header_list = value

    def _flush_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            self._flush(stream)

    def grant(self, call: StreamEvents, increment: int) -> None:
        if call.id in self.streams:
            self._emit(frames.window_update(call.id, increment))

    def reset(self, call: StreamEvents, code: int, status: Status | None = None) -> None:
        """Ends the stream now: RST_STREAM if it is still open on our side, then ``status``.

        Also when the frame it answers ended the upstream's side (a malformed
        response is a stream error, RFC 9113 §8.1.1).
        """
        stream = self.streams.get(call.id)
        if stream is not None:
            self._emit_reset(call.id, code)
            stream.local_closed = stream.remote_closed = True
        call.fail(status or Status(Code.CANCELLED, "call cancelled"))
        self.forget(call)

    def forget(self, call: StreamEvents) -> None:
        """The stream is over on our side: it no longer counts against concurrency."""
        stream = self.streams.pop(call.id, None)
        if stream is None:
            return
        self._blocked.pop(call.id, None)
        if not (stream.local_closed and stream.remote_closed):
            # NO_ERROR: the upstream answered before we finished sending (it
            # must not wait for the rest); CANCEL: we gave up on the call.
            code = frames.NO_ERROR if stream.remote_closed else frames.CANCEL
            self._emit_reset(call.id, code)
        stream.local_closed = stream.remote_closed = True
        self._wake_slots()
        self._wake_writers(force=True)
        self._on_stream_gone()

    def _emit_reset(self, stream_id: int, code: int) -> None:
        self._emit(frames.rst_stream(stream_id, code))
        kept = self.reset_by_us
        kept[stream_id] = IN_FLIGHT_FRAMES
        if len(kept) > _RESET_KEPT:
            kept.popitem(last=False)

    def fail_all(self, status: Status) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        self._blocked.clear()
        for stream in streams:
            stream.call.fail(status)
