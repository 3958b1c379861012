"""Choosing a streamed response's framing from ``Accept`` (spec §4).

Server-streaming and bidi responses are NDJSON unless the client prefers
``text/event-stream``. Anything else — no ``Accept``, ``*/*``,
``application/json``, a type the bridge can't produce — falls back to
NDJSON rather than 406: like grpc-gateway, a stream is always answered in
the default framing rather than refused over a header. Unary and
client-streaming methods answer one JSON message whatever ``Accept`` says.

Preference follows RFC 9110 §12.5.1: each candidate takes the ``q`` of the
most specific range that matches it (``text/event-stream`` over ``text/*``
over ``*/*``); the higher ``q`` wins, NDJSON on a tie.
"""

from __future__ import annotations

import functools

from grpc_bridge.codec.framing import EVENT_STREAM, NDJSON, NDJSON_FRAMING, SSE_FRAMING, Framing


def weighted_items(value: str) -> list[tuple[str, float]]:
    """The (lower-cased item, q) pairs of an RFC 9110 §12.4.2 weighted list, empty items left out.

    ``Accept`` here and ``Accept-Encoding`` (pipeline/compress.py) are read alike:
    q clamped to 0-1, a malformed q taken as 0.
    """
    out: list[tuple[str, float]] = []
    for item in value.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        if not name:
            continue
        q = 1.0
        for param in params:
            key, _, number = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(number.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0  # a malformed weight counts as "not acceptable", not as a crash
        out.append((name.lower(), q))
    return out


def _ranges(accept: str) -> list[tuple[str, float]]:
    return [(media, q) for media, q in weighted_items(accept) if "/" in media]


def _quality(media_type: str, ranges: list[tuple[str, float]]) -> float:
    kind = media_type.split("/", 1)[0]
    best: tuple[int, float] | None = None  # (specificity, q)
    for media, q in ranges:
        if media == media_type:
            specificity = 2
        elif media == f"{kind}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, q)
    return best[1] if best else 0.0


def stream_framing(accept: str | None) -> Framing:
    """The framing for a streamed response given the request's ``Accept``."""
    if not accept:
        return NDJSON_FRAMING
    return _framing_for(accept)


# Pure, and clients send the same few Accept strings over and over: parse each once.
@functools.lru_cache(maxsize=256)
def _framing_for(accept: str) -> Framing:
    ranges = _ranges(accept)
    ndjson_q = _quality(NDJSON, ranges)
    sse_q = _quality(EVENT_STREAM, ranges)
    return SSE_FRAMING if sse_q > ndjson_q else NDJSON_FRAMING
