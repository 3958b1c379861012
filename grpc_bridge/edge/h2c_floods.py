"""How often an HTTP/2 client may make the bridge do work that serves no request.

A stream reset (CVE-2023-44487, "rapid reset": the call is set up, then torn
down), a PING or a SETTINGS frame (each answered; a SETTINGS that changes the
initial window also walks every open stream) costs the bridge work per frame,
and a client that reads what it is sent can send them as fast as its link
allows: one connection would take the event loop from every other client.
edge/h2c.py counts each kind per connection with a :class:`Flood` and answers
one over its limit with GOAWAY ``ENHANCE_YOUR_CALM``.
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
