"""What every Connect request shares: its codec, protocol version, envelopes and compression.

- Codec: the one codec/message.py names by the media type's subtype (its
  ``json`` transcodes with the method's codecs, its ``proto`` passes the
  upstream's message bytes through untouched); Connect's own part is only the
  media types that name them: ``application/<codec>`` for unary calls,
  ``application/connect+<codec>`` for streams.
- Envelopes (streams): a flags byte (0x01 compressed, 0x02 end of stream), a
  4-byte big-endian length, the message. :class:`EnvelopeParser` takes request
  bytes as they arrive and refuses a length past ``limits.max_request_bytes``
  from its header, before the message is read; :func:`read_envelopes` reads
  them off a request body under its deadlines (gRPC-Web's request frames too,
  which have the same shape).
- Compression: ``gzip`` (and ``identity``) for a request message, whether the
  unary body (``Content-Encoding``, inflated by pipeline/body.py), a GET's
  ``compression=`` or a stream's envelopes (``Connect-Content-Encoding``); an
  inflated message is bounded by the same limit, as it is produced. Another
  coding is Connect's ``unimplemented``, naming what is supported.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from aiohttp import web

from grpc_bridge.codec.message import Codec
from grpc_bridge.errors import (
    BridgeError,
    InvalidArgument,
    PayloadTooLarge,
    UnsupportedMediaType,
    shown,
)
from grpc_bridge.pipeline.body import BodyReader
from grpc_bridge.pipeline.inflate import inflate_message, inflater_for
from grpc_bridge.status import Code

PROTOCOL_VERSION_HEADER = "Connect-Protocol-Version"
#: Envelope flags.
COMPRESSED = 0x01
END_STREAM = 0x02
_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size


class UnsupportedCompression(BridgeError):
    """A request compressed with a coding the bridge does not inflate (Connect: unimplemented)."""

    code = Code.UNIMPLEMENTED
    reject_reason = "unsupported_media_type"


def unary_type(codec: Codec) -> str:
    """A codec's media type for unary calls: ``application/json``, ``application/proto``."""
    return f"application/{codec.name}"


def stream_type(codec: Codec) -> str:
    """A codec's media type for streams: ``application/connect+json``, ``+proto``."""
    return f"application/connect+{codec.name}"


def media_type(request: web.Request) -> str:
    """The request's media type, lower-case, without parameters ("" for none)."""
    value = request.headers.get("Content-Type")
    return "" if value is None else value.partition(";")[0].strip().lower()


def check_version(request: web.Request) -> None:
    """``Connect-Protocol-Version`` is optional, and 1 when sent."""
    version = request.headers.get(PROTOCOL_VERSION_HEADER)
    if version is not None and version.strip() != "1":
        raise InvalidArgument(
            f"unsupported {PROTOCOL_VERSION_HEADER} {shown(version)}: grpc-bridge speaks version 1",
            reason="bad_header",
        )


def check_content_encoding(values: Iterable[str], header: str) -> bool:
    """Whether a request message is gzip-compressed; another coding is refused."""
    try:
        inflater = inflater_for(values)
    except UnsupportedMediaType as exc:
        raise UnsupportedCompression(f"{header}: {exc.message}") from exc
    if inflater is not None and inflater.coding != "gzip":
        raise UnsupportedCompression(
            f"unsupported {header} {inflater.coding!r}: send gzip or identity"
        )
    return inflater is not None


def accepts_gzip(value: str | None) -> bool:
    """Whether an ``Accept-Encoding``-style list (Connect's ordered subset) names gzip."""
    if not value:
        return False
    return any(part.partition(";")[0].strip().lower() == "gzip" for part in value.split(","))


async def inflate(data: bytes, limit: int, what: str) -> bytes:
    """``data`` gunzipped, refused at the first byte past ``limit``; the loop is let run
    between bounded pieces (pipeline/inflate.py)."""
    if not data:
        return data  # Connect: a zero-length message is never decompressed
    try:
        return await inflate_message(data, "gzip", limit)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc.message}", reason="malformed_request") from exc


def envelope(flags: int, payload: bytes) -> bytes:
    return _HEADER.pack(flags, len(payload)) + payload


class EnvelopeParser:
    """Request envelopes out of body bytes fed as they arrive."""

    __slots__ = ("_buffer", "_limit", "count", "started")

    def __init__(self, limit: int) -> None:
        self._buffer = bytearray()
        self._limit = limit
        #: Envelopes parsed so far.
        self.count = 0
        #: The envelope now pending began in the last :meth:`feed` (its deadline starts).
        self.started = False

    @property
    def pending(self) -> bool:
        """Part of an envelope is buffered (a message has started)."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The envelopes ``data`` completes, as (flags, message)."""
        buffer = self._buffer
        was_pending = bool(buffer)
        buffer += data
        out: list[tuple[int, bytes]] = []
        start = 0
        while len(buffer) - start >= HEADER_SIZE:
            flags, length = _HEADER.unpack_from(buffer, start)
            number = self.count + 1
            if length > self._limit:
                raise too_large_envelope(number, length, self._limit)
            if flags & END_STREAM:
                raise InvalidArgument(
                    f"request envelope {number} has the end-of-stream flag (0x02), "
                    "which only a response stream may set"
                )
            if flags & ~COMPRESSED:
                raise InvalidArgument(f"request envelope {number} has unknown flags 0x{flags:02x}")
            end = start + HEADER_SIZE + length
            if len(buffer) < end:
                break
            out.append((flags, bytes(buffer[start + HEADER_SIZE : end])))
            self.count = number
            start = end
        del buffer[:start]
        self.started = bool(buffer) and (start > 0 or not was_pending)
        return out

    def deadline(self, current: float | None, timeout: float, now: float) -> float | None:
        """When the pending envelope is due: ``timeout`` after the read it began in (not
        after its latest byte: one byte now and then must not hold it open); None when
        none is pending (between messages the stream's idle timeout is the bound)."""
        if not self._buffer:
            return None
        return now + timeout if self.started or current is None else current

    def finish(self) -> None:
        """The body ended: refuse one that stops inside an envelope."""
        if self._buffer:
            raise InvalidArgument(
                f"request body ends inside envelope {self.count + 1} "
                f"({len(self._buffer)} bytes of it received)"
            )


def too_large_envelope(number: int, length: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request envelope {number} is {length} bytes, larger than {limit} bytes "
        "(limits.max_request_bytes)"
    )


async def envelope_message(
    flags: int, data: bytes, compressed: bool, limit: int, number: int
) -> bytes:
    """An envelope's message, inflated when its flag says so."""
    if not flags & COMPRESSED:
        return data
    if not compressed:
        raise InvalidArgument(
            f"request envelope {number} is flagged compressed, "
            "but no Connect-Content-Encoding was sent"
        )
    return await inflate(data, limit, f"request envelope {number}")


class BodyDecoder(Protocol):
    """Body bytes → envelope bytes as they arrive (gRPC-Web's text mode: base64)."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> None: ...


async def read_envelopes(
    request: web.Request,
    limit: int,
    timeout: float,
    *,
    whole_body: bool,
    decoder: BodyDecoder | None = None,
) -> AsyncIterator[tuple[int, bytes, int]]:
    """(flags, message, number) of each request envelope (or gRPC-Web frame, which has
    the same shape) as it arrives.

    ``whole_body``: the body is due within ``timeout`` from now; else each
    envelope within ``timeout`` of its first byte (a stream may pause between).
    """
    loop = asyncio.get_running_loop()
    reader = BodyReader(request, timeout, loop.time() + timeout if whole_body else None)
    parser = EnvelopeParser(limit)
    while True:
        chunk = await reader.read_streamed()
        if not chunk:
            break
        if decoder is not None:
            chunk = decoder.feed(chunk)
        first = parser.count + 1
        for index, (flags, data) in enumerate(parser.feed(chunk)):
            yield flags, data, first + index
        if not whole_body:
            reader.deadline = parser.deadline(reader.deadline, timeout, loop.time())
    if decoder is not None:
        decoder.finish()
    parser.finish()
