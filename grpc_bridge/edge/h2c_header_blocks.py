"""The header block an h2c client has begun and not ended, as ``h2`` keeps it.

edge/h2c.py bounds a header block while it is still unfinished, as an
HTTP/1.1 head is bounded as it arrives: its size (h2 checks the decoded size
at the block's end only) and the time since its first byte. Both read h2's
``FrameBuffer``, whose fields are private; the tests in
tests/test_h2c_hostile_peers.py fail if they are gone.
"""

from __future__ import annotations

import h2.connection

#: Frame types whose bytes, while a frame of them is unfinished, are a request head begun.
_HEAD_FRAMES = frozenset({0x1, 0x9})  # HEADERS, CONTINUATION


def unfinished_header_block(conn: h2.connection.H2Connection) -> int:
    """Bytes of a header block whose end has not come yet.

    h2 keeps its frames (up to 64 CONTINUATIONs of a frame's size each: ~1 MiB)
    and checks the decoded size at the end only. An encoder's block is no longer
    than the list it encodes (HPACK's literals and Huffman are used where they are
    shorter), so one past edge/h2c.py's ``MAX_HEADER_LIST`` already is over the
    limit. (h2's ``FrameBuffer._headers_buffer``.)
    """
    frames = getattr(conn.incoming_buffer, "_headers_buffer", ())
    return sum(len(frame.data) for frame in frames) if frames else 0


def head_begun(conn: h2.connection.H2Connection) -> bool:
    """Whether a header block has begun and not ended: frames of it kept, or a HEADERS or
    CONTINUATION frame in part (h2's ``FrameBuffer._data``; the type is its 4th byte)."""
    if getattr(conn.incoming_buffer, "_headers_buffer", None):
        return True
    partial = getattr(conn.incoming_buffer, "_data", b"")
    return len(partial) > 3 and partial[3] in _HEAD_FRAMES
