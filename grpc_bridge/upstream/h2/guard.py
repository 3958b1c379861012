"""Per-connection accounting of the frames an upstream can send for free.

PING and SETTINGS make us answer; PRIORITY, unknown types, empty DATA,
HEADERS or CONTINUATION frames, informational (1xx) header blocks, and any
frame on a stream already gone cost us a parse each and carry nothing a gRPC
call needs. A peer
sending them without pause can make the bridge spend its event loop (or, if
it stops reading, its memory for our ACKs) on one connection: the 2019
"ping/settings flood" advisories (CVE-2019-9512/9515), the 2023 rapid reset
and the 2024 CONTINUATION flood are this class. As nghttp2 and Go's http2 do,
such frames draw on a token bucket (a burst, refilled at a steady rate), ACKs
waiting to be written are counted, and a connection over either limit is
closed with GOAWAY ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

import time

#: Cheap frames a connection may send at once, and per second after that.
BURST = 1000
RATE = 100.0
#: ACKs (PING, SETTINGS) queued and not yet taken by the socket (nghttp2's max_outbound_ack).
MAX_QUEUED_ACKS = 1000
#: CONTINUATION frames one header block may take (nghttp2: 8 with 16 KiB frames).
MAX_CONTINUATIONS = 32


class Flood(Exception):
    """The peer went over a limit above: a connection error ENHANCE_YOUR_CALM."""


class FloodGuard:
    __slots__ = ("_stamp", "_tokens", "queued_acks")

    def __init__(self) -> None:
        self._tokens = float(BURST)
        self._stamp = time.monotonic()
        self.queued_acks = 0

    def cheap(self, what: str) -> None:
        """One frame that carries nothing for a call; raises :class:`Flood` past the budget."""
        tokens = self._tokens - 1.0
        if tokens < 0.0:
            # Refilled lazily: the clock is read only once the burst is spent.
            now = time.monotonic()
            tokens = min(float(BURST), tokens + (now - self._stamp) * RATE)
            self._stamp = now
            if tokens < 0.0:
                raise Flood(
                    f"upstream flooded the connection with {what} frames "
                    f"(over {BURST} at once, {RATE:g}/s after)"
                )
        self._tokens = tokens

    def ack(self) -> None:
        """An ACK was queued while our writes are backed up."""
        self.queued_acks += 1
        if self.queued_acks > MAX_QUEUED_ACKS:
            raise Flood(
                f"upstream sent PING/SETTINGS without reading our {MAX_QUEUED_ACKS} queued ACKs"
            )
