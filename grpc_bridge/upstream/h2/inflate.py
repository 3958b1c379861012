"""Inflating compressed gRPC messages (``grpc-encoding: gzip`` / ``deflate``), bounded.

A small compressed message can inflate to gigabytes: output stops one byte
past the limit. Inflating a large one takes milliseconds of CPU, so the
stream hands messages above :data:`OFF_LOOP_BYTES` to a worker thread.
"""

from __future__ import annotations

import zlib

from grpc_bridge.status import Code
from grpc_bridge.upstream.h2.grpc_status import Status

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


class Compressed(bytes):
    """A message received with the compressed flag, kept as it came until it is taken.

    Inflating on arrival would let a window of small compressed messages become
    gigabytes held for a reader that stopped: flow control counts wire bytes.
    """

    __slots__ = ()


class MessageError(Exception):
    """A received message that cannot be handed on (it does not inflate, or inflates too far)."""

    def __init__(self, status: Status) -> None:
        super().__init__(status.message)
        self.status = status


def message(encoding: str | None, data: bytes, limit: int) -> bytes:
    """:func:`decompress`, its failures as the call's status (:class:`MessageError`)."""
    try:
        return decompress(encoding, data, limit)
    except TooBig:
        raise MessageError(
            Status(
                Code.RESOURCE_EXHAUSTED,
                "upstream sent a compressed message that inflates past "
                f"max_receive_message_bytes ({limit})",
            )
        ) from None
    except Exception as exc:  # zlib.error, ValueError, EOFError, MemoryError
        raise MessageError(Status(Code.INTERNAL, f"cannot decompress a message: {exc}")) from exc
