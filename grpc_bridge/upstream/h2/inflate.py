"""Inflating compressed gRPC messages (``grpc-encoding: gzip`` / ``deflate``), bounded.

A small compressed message can inflate to gigabytes: output stops one byte
past the limit. Inflating a large one takes milliseconds of CPU, so the
stream hands messages above :data:`OFF_LOOP_BYTES` to a worker thread.
"""

from __future__ import annotations

import zlib

#: Compressed messages above this are inflated on a worker thread, not on the loop.
OFF_LOOP_BYTES = 64 * 1024


class TooBig(Exception):
    pass


def decompress(encoding: str | None, data: bytes, limit: int) -> bytes:
    """The message inflated, never past ``limit`` bytes (a small message can inflate to GBs)."""
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=31)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    else:
        raise ValueError(f"compressed message with unsupported grpc-encoding {encoding!r}")
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit:
        raise TooBig(len(out))
    if not inflater.eof or inflater.unused_data:
        raise ValueError("truncated or trailing data in a compressed message")
    return out
