"""Compressed request bodies (``Content-Encoding``), inflated in bounded steps as bytes arrive.

aiohttp's own decompression is off on the proxy listener (app.py): it
inflated a whole chunk on the event loop before any size check, turned a bad
stream into a 500 and a truncated one into an empty or short body. Here
instead:

- :func:`inflater_for` reads the header once: no coding (or ``identity``) is
  None, ``gzip`` (``x-gzip``) and ``deflate`` get an :class:`Inflater`;
  anything else, or codings stacked one on another, is a 415 naming what is
  supported.
- :meth:`Inflater.feed` yields the inflated bytes in pieces of at most
  :data:`STEP` bytes, consuming at most :data:`STEP` input bytes per zlib
  call, so each step costs a bounded, small amount of CPU; the caller counts
  the pieces against its limit and stops at the first byte past it (the rest
  is never inflated), and yields to the event loop between pieces.
- :meth:`Inflater.finish` at the end of the body checks the stream ended
  properly: zlib verifies gzip's CRC-32 and length (zlib's Adler-32) as the
  stream completes, so a stream that never reaches its end is truncated.
  Bytes after the end (but a further gzip member, RFC 1952 §2.2) are refused.

Every failure is a :class:`~grpc_bridge.errors.BridgeError` whose message
names the coding (``malformed gzip request body: ...``). No aiohttp here.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable, Iterator

from grpc_bridge.errors import InvalidArgument, PayloadTooLarge, UnsupportedMediaType, shown

#: The codings served, as named in the 415's message.
SUPPORTED = ("gzip", "deflate")
#: Inflated bytes per step, and compressed bytes per zlib call: ~0.1 ms of CPU.
STEP = 64 * 1024
_ALIASES = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
_GZIP_MAGIC = 0x1F
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_SUPPORTED_TEXT = f"send {', '.join(SUPPORTED)} or identity"


def inflater_for(values: Iterable[str]) -> Inflater | None:
    """The inflater for a request's ``Content-Encoding`` field values; None for none needed."""
    codings = [
        coding
        for value in values
        for part in value.split(",")
        if (coding := part.strip(" \t").lower()) and coding != "identity"
    ]
    if not codings:
        return None
    if len(codings) > 1:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding: {shown(', '.join(codings))} stacks "
            f"{len(codings)} codings; {_SUPPORTED_TEXT}, one at a time"
        )
    served = _ALIASES.get(codings[0])
    if served is None:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {shown(codings[0])}: {_SUPPORTED_TEXT}"
        )
    return Inflater(served)


#: Inflation steps with no output between two passes through the event loop.
_IDLE_STEPS = 32


class Inflater:
    """One body's decompression state; feed it the body's bytes in order, then finish."""

    __slots__ = ("_fed", "_obj", "coding")

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._obj: zlib._Decompress | None = None
        self._fed = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The bytes ``data`` inflates to, in pieces of at most :data:`STEP` bytes.

        An empty piece is no output, only a point at which the reader yields.
        """
        view = memoryview(data)
        while view:
            take, view = view[:STEP], view[STEP:]
            yield from self._inflate(bytes(take))

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        # Steps that inflate nothing (empty gzip members, stored empty blocks) still cost
        # CPU: every _IDLE_STEPS of them hand an empty piece out, so the reader yields.
        idle = 0
        while True:
            obj = self._obj
            if obj is None or obj.eof:
                if not data:
                    return
                obj = self._next_stream(data)
            try:
                out = obj.decompress(data, STEP)
            except zlib.error as exc:
                raise self.malformed(_zlib_reason(exc)) from exc
            if out:
                idle = 0
                yield out
            else:
                idle += 1
                if idle >= _IDLE_STEPS:
                    idle = 0
                    yield b""
            data = obj.unused_data if obj.eof else obj.unconsumed_tail
            # A full piece may leave output inside zlib with no input left: ask again.
            if not data and (obj.eof or len(out) < STEP):
                return

    def _next_stream(self, data: bytes) -> zlib._Decompress:
        # One stream ended: only another gzip member may follow it.
        if self._obj is not None and (self.coding != "gzip" or data[0] != _GZIP_MAGIC):
            raise self.malformed("data after the end of the compressed stream")
        wbits = _WBITS[self.coding]
        if self.coding == "deflate" and not self._fed and data[0] & 0x0F != 8:
            # Raw deflate without the zlib wrapper, as some clients send it (and aiohttp took).
            wbits = -zlib.MAX_WBITS
        self._fed = True
        self._obj = zlib.decompressobj(wbits)
        return self._obj

    def finish(self) -> None:
        """The body ended: refuse a stream that did not (an empty body is an empty body)."""
        obj = self._obj
        if obj is not None and not obj.eof:
            raise self.malformed("truncated: the body ends before the end of the compressed stream")

    def malformed(self, reason: str) -> InvalidArgument:
        return InvalidArgument(
            f"malformed {self.coding} request body: {reason}", reason="malformed_request"
        )


def _zlib_reason(exc: zlib.error) -> str:
    # "Error -3 while decompressing data: incorrect header check" → "incorrect header check"
    text = str(exc)
    return text.rpartition(": ")[2] or text


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes (limits.max_request_bytes)")


async def inflate_message(data: bytes, coding: str, limit: int) -> bytes:
    """One whole compressed message (a gRPC-Web frame, a Connect envelope or GET message)
    inflated in :data:`STEP` pieces, the loop let run between them (a bomb costs other
    requests one piece at a time); :func:`too_large` at the first byte past ``limit``."""
    inflater = Inflater(coding)
    pieces: list[bytes] = []
    total = 0
    for piece in inflater.feed(data):
        total += len(piece)
        if total > limit:
            raise too_large(limit)
        pieces.append(piece)
        await asyncio.sleep(0)
    inflater.finish()
    return b"".join(pieces)
