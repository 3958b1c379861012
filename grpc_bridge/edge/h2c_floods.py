"""How often an HTTP/2 client may make the bridge do work that serves no request.

A stream reset (CVE-2023-44487, "rapid reset": the call is set up, then torn
down), a PING or a SETTINGS frame (each answered; a SETTINGS that changes the
initial window also walks every open stream), a DATA or HEADERS frame on a
stream already reset (h2 answers each with RST_STREAM; edge/h2c_malformed.py
counts them) costs the bridge work per frame,
and a client that reads what it is sent can send them as fast as its link
allows: one connection would take the event loop from every other client.
edge/h2c.py counts each kind per connection with a :class:`Flood` and answers
one over its limit with GOAWAY ``ENHANCE_YOUR_CALM``.

A WINDOW_UPDATE (each one on the connection wakes every stream waiting to
send) is also what a client sends as it reads what the bridge sends, so only
those beyond what the DATA sent earns are counted (:class:`WindowUpdates`):
Envoy's bound, ``5 + 2 * (streams opened + 10 * DATA frames sent)``
(``max_inbound_window_update_frames_per_data_frame_sent``: 10), which a client
that updates both windows for every DATA frame it reads stays far within.

A PRIORITY frame, or a frame of a type RFC 9113 does not define (which h2 must
ignore, §5.5, and reports), is answered with nothing but still parsed and
handled; a browser sends a few per stream it opens. Those beyond Envoy's bound
for PRIORITY frames, ``100 * (1 + streams opened)``
(``max_inbound_priority_frames_per_stream``), are counted (:class:`PerStream`,
one for each kind).

Some frames make h2 report nothing, or nothing the bridge acts on, and cost a
frame parsed all the same: an ALTSVC (RFC 7838; a server ignores it), a
WINDOW_UPDATE or RST_STREAM on a stream already closed, an unsolicited SETTINGS
or PING ACK, a GOAWAY after the first. :class:`CountedConnection` counts the
frames h2 makes no event of, by the same allowance as PRIORITY frames (a few come
legitimately for each stream opened: a late WINDOW_UPDATE, a reset crossing the
bridge's END_STREAM); edge/h2c.py counts ACKs and GOAWAYs by their events, as
PINGs. An empty DATA or HEADERS frame without END_STREAM (CVE-2019-9518, "empty
frames flood") is an event, so the bridge handles it; a row of them bounds them,
as Envoy's ``max_consecutive_inbound_frames_with_empty_payload`` does: more than
:data:`MAX_EMPTY_IN_A_ROW` such frames in a row on one connection (frames with
payload or END_STREAM end a row; nothing else does) is a flood. A row rather than
a count in 10 s: it costs no clock and no deque per DATA frame, and since every
frame with payload spends flow-control window the bridge gives back only as it
reads, empty ones are at most that many per frame that carries something; netty
and SwiftNIO bound empty DATA frames in a row too. Frames on a reset stream are
counted apart (edge/h2c_malformed.py documents why) and neither extend nor end a
row.
"""

from __future__ import annotations

from collections import deque

import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, Frame, HeadersFrame


class Flood:
    """At most ``limit`` hits within any ``window`` seconds."""

    __slots__ = ("_hits", "_limit", "_window")

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._hits: deque[float] = deque()

    def over(self, now: float) -> bool:
        """One more hit at ``now``: whether there are now more than the limit."""
        hits = self._hits
        hits.append(now)
        while hits[0] < now - self._window:
            hits.popleft()
        return len(hits) > self._limit

    def __len__(self) -> int:
        return len(self._hits)


#: WINDOW_UPDATEs a client may send per DATA frame sent to it (Envoy's default).
UPDATES_PER_DATA_FRAME = 10


class WindowUpdates:
    """WINDOW_UPDATE frames: those beyond what was earned are counted by ``flood``."""

    __slots__ = ("_count", "flood")

    def __init__(self, flood: Flood) -> None:
        self.flood = flood
        self._count = 0

    def over(self, now: float, streams_opened: int, data_frames_sent: int) -> bool:
        """One more at ``now``: whether unearned ones are now over the flood's limit."""
        self._count += 1
        earned = 5 + 2 * (streams_opened + UPDATES_PER_DATA_FRAME * data_frames_sent)
        return self._count > earned and self.flood.over(now)


#: PRIORITY frames (or frames of unknown types) a client may send per stream it opens
#: (Envoy's ``max_inbound_priority_frames_per_stream`` default).
FRAMES_PER_STREAM = 100


class PerStream:
    """Frames a stream opened earns: those beyond them are counted by ``flood``."""

    __slots__ = ("_count", "flood")

    def __init__(self, flood: Flood) -> None:
        self.flood = flood
        self._count = 0

    def over(self, now: float, streams_opened: int) -> bool:
        """One more at ``now``: whether unearned ones are now over the flood's limit."""
        self._count += 1
        return self._count > FRAMES_PER_STREAM * (1 + streams_opened) and self.flood.over(now)


#: Empty DATA or HEADERS frames without END_STREAM a client may send in a row on one
#: connection. Envoy's ``max_consecutive_inbound_frames_with_empty_payload`` is 1, but
#: the row is the connection's: two streams each ending a body with one flagless empty
#: frame (as some clients do: Bun's http2 before oven-sh/bun#26410) would trip it. Ten
#: still bounds a flood: empty frames at most ten per frame that spends window.
MAX_EMPTY_IN_A_ROW = 10

_FRAME_NAMES = {0x0: "DATA", 0x1: "HEADERS", 0x3: "RST_STREAM", 0x8: "WINDOW_UPDATE", 0xA: "ALTSVC"}


def frame_name(kind: int) -> str:
    """What RFC 9113 (or RFC 7838) calls a frame of type ``kind``."""
    return _FRAME_NAMES.get(kind) or f"type {kind:#x}"


class FrameFlood(h2.exceptions.ProtocolError):
    """A flood found as a frame is read: the connection ends with ENHANCE_YOUR_CALM."""

    error_code = ErrorCodes.ENHANCE_YOUR_CALM


class CountedConnection(h2.connection.H2Connection):
    """h2's connection, counting the frames that make it do work no event shows."""

    #: Since :meth:`Unanswered.take` last took them: DATA and HEADERS frames received on
    #: a stream closed by a reset (each answered), frames h2 made no event of (the last
    #: one's type).
    frames_on_reset_streams = 0
    silent_frames = 0
    silent_kind = 0
    _empty_in_a_row = 0

    def _receive_frame(self, frame: Frame) -> list[h2.events.Event]:
        if isinstance(frame, DataFrame | HeadersFrame):
            if self._stream_is_closed_by_reset(frame.stream_id):
                self.frames_on_reset_streams += 1
            elif frame.data or "END_STREAM" in frame.flags:
                self._empty_in_a_row = 0
            else:
                self._empty_in_a_row += 1
                if self._empty_in_a_row > MAX_EMPTY_IN_A_ROW:
                    name = frame_name(frame.type)
                    raise FrameFlood(f"too many empty {name} frames without END_STREAM in a row")
            return super()._receive_frame(frame)
        events = super()._receive_frame(frame)
        if not events:
            self.silent_frames += 1
            self.silent_kind = frame.type or 0  # (None only on hyperframe's base class)
        return events


class Unanswered:
    """What a :class:`CountedConnection` counted: frames on reset streams (``MAX_CONTROL_FRAMES``
    in 10 s, as PINGs) and frames it made no event of (:class:`PerStream`'s allowance)."""

    __slots__ = ("on_reset", "silent")

    def __init__(self, limit: int, window: float) -> None:
        self.on_reset = Flood(limit, window)
        self.silent = PerStream(Flood(limit, window))

    def take(
        self, conn: CountedConnection, now: float, streams_opened: int
    ) -> tuple[Flood, str] | None:
        """Count what ``conn`` counted since the last take: the flood it makes, named, if any."""
        fresh, conn.frames_on_reset_streams = conn.frames_on_reset_streams, 0
        if any(self.on_reset.over(now) for _ in range(fresh)):
            return self.on_reset, "too many frames on reset streams"
        fresh, conn.silent_frames = conn.silent_frames, 0
        if any(self.silent.over(now, streams_opened) for _ in range(fresh)):
            return self.silent.flood, f"too many {frame_name(conn.silent_kind)} frames"
        return None
