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
"""

from __future__ import annotations

from collections import deque


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
