"""Response compression for both HTTP edges: ``Accept-Encoding`` negotiation and the encoders.

The aiohttp path (unary answers and errors in edge/middleware.py, NDJSON /
SSE streams in protocol/json_streaming.py) and the lean path (edge/fastpath.py) call
the same :class:`ResponseCompression`, so the same request gets the same bytes
on either. Nothing here touches WebSocket: permessage-deflate is aiohttp's own
(off unless ``compress=True`` is given to its WebSocketResponse).

- Negotiation follows RFC 9110 §12.5.3: each coding takes the ``q`` of its own
  entry, else of ``*``, else it is not acceptable; ``identity`` is acceptable
  unless ``identity;q=0`` (or ``*;q=0`` with no ``identity`` entry) says
  otherwise. The highest ``q`` wins, the configured order breaks ties, and
  ``identity`` wins only when listed (itself or by ``*``) with a strictly
  higher ``q``. If identity is refused
  and no coding is acceptable the answer is a 406 (``Choice.refused``); if
  identity is refused but a coding is acceptable, even a small body is
  compressed (``Choice.forced``). Each distinct header value is parsed once.
- A request without ``Accept-Encoding`` costs a header lookup and ``Vary``.
- A unary body under ``compression.min_bytes`` goes out as it is; bodies (and a
  stream's writes) of ``compression.executor_bytes`` or more are compressed in a
  worker thread: zlib, brotli and zstandard release the GIL, so one large answer
  neither stalls the event loop nor serialises other clients behind it.
- Streams flush after every write (zlib ``Z_SYNC_FLUSH``, brotli ``flush``, zstd
  ``FLUSH_BLOCK``), so the client can decode each message the moment it arrives.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from grpc_bridge.pipeline.negotiate import weighted_items
from grpc_bridge.settings import CompressionSettings

brotli: Any
try:  # optional: the ``compression`` extra (brotli ships no type hints)
    import brotli  # type: ignore[import-untyped, no-redef]
except ImportError:  # pragma: no cover - depends on the install
    brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover - depends on the install
    zstandard = None  # type: ignore[assignment]

__all__ = [
    "ACCEPT_ENCODING",
    "VARY",
    "Choice",
    "ResponseCompression",
    "StreamEncoder",
    "StreamWriter",
    "add_vary",
    "available_codings",
    "compressible",
]

ACCEPT_ENCODING = "Accept-Encoding"
VARY = ("Vary", ACCEPT_ENCODING)
_VARY_ONLY = (VARY,)
#: Header values parsed and kept, per policy; clients send a handful, and a client
#: inventing values cannot grow it past this.
_CACHE_SIZE = 256
#: Media types worth compressing beyond ``text/*``; an HttpBody answer may carry
#: an image or an archive, which compression would only make slower.
_COMPRESSIBLE = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        # Connect's unary protobuf answers: field names aside, as compressible as JSON.
        "application/proto",
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
        "image/svg+xml",
    }
)


def available_codings() -> tuple[str, ...]:
    """The codings this install can produce: gzip always, br and zstd with their packages."""
    out = ["gzip"]
    if brotli is not None:
        out.append("br")
    if zstandard is not None:
        out.append("zstd")
    return tuple(out)


def compressible(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media.startswith("text/") or media in _COMPRESSIBLE or media.endswith(("+json", "+xml"))


def add_vary(headers: MutableMapping[str, str]) -> None:
    """``Vary: Accept-Encoding``, appended to a Vary already there (CORS adds ``Origin``)."""
    current = headers.get("Vary")
    if not current:
        headers["Vary"] = ACCEPT_ENCODING
    elif ACCEPT_ENCODING.lower() not in current.lower():
        headers["Vary"] = f"{current}, {ACCEPT_ENCODING}"


@dataclass(frozen=True, slots=True)
class Choice:
    """What one ``Accept-Encoding`` value allows."""

    #: The coding to use when compressing; None for identity.
    coding: str | None
    #: identity is refused: compress whatever the size.
    forced: bool = False
    #: identity is refused and no coding is acceptable: 406.
    refused: bool = False


IDENTITY = Choice(None)


def _weights(value: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for name, q in weighted_items(value):
        if name == "x-gzip":  # RFC 9110 §8.4.1.3: the same coding
            name = "gzip"
        # A coding listed twice keeps its first weight, as most servers read it.
        weights.setdefault(name, q)
    return weights


def negotiate(value: str, codings: tuple[str, ...]) -> Choice:
    """The coding for ``Accept-Encoding: value``, ``codings`` in the server's order."""
    weights = _weights(value)
    star = weights.get("*")
    # identity unlisted is acceptable (RFC 9110 §12.5.3) but preferred least.
    identity_q = weights.get("identity", star)
    best: str | None = None
    best_q = 0.0
    for coding in codings:
        q = weights.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    if identity_q is not None and identity_q <= 0:
        return Choice(best, forced=True) if best is not None else Choice(None, refused=True)
    if best is None or (identity_q is not None and identity_q > best_q):
        return IDENTITY
    return Choice(best)


class StreamEncoder(Protocol):
    def chunk(self, data: bytes) -> bytes:
        """``data`` compressed and flushed: the client can decode all of it from what is out."""

    def finish(self) -> bytes:
        """The end of the compressed stream."""


class _GzipStream:
    __slots__ = ("_z",)

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def chunk(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


#: A stream encoder lives as long as its stream, one per client that asked for it:
#: its window and match tables are capped (128 KiB) whatever the level, so a stream
#: costs about 1-2 MB at any zstd level (80 MB at level 19 uncapped) and brotli's
#: window stays small too. Messages are flushed one by one, so a larger window
#: would find little more to match anyway.
_STREAM_WINDOW_LOG = 17


class _BrotliStream:
    __slots__ = ("_c",)

    def __init__(self, level: int) -> None:
        assert brotli is not None
        self._c = brotli.Compressor(quality=level, lgwin=_STREAM_WINDOW_LOG)

    def chunk(self, data: bytes) -> bytes:
        return bytes(self._c.process(data) + self._c.flush())

    def finish(self) -> bytes:
        return bytes(self._c.finish())


class _ZstdStream:
    __slots__ = ("_c",)

    def __init__(self, level: int) -> None:
        assert zstandard is not None
        full = zstandard.ZstdCompressionParameters.from_level(level)
        params = zstandard.ZstdCompressionParameters.from_level(
            level,
            window_log=min(full.window_log, _STREAM_WINDOW_LOG),
            hash_log=min(full.hash_log, _STREAM_WINDOW_LOG),
            chain_log=min(full.chain_log, _STREAM_WINDOW_LOG),
        )
        self._c = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def chunk(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def _gzip(body: bytes, level: int) -> bytes:
    # zlib's own gzip header (no file name, mtime 0): the same bytes on every call.
    z = zlib.compressobj(level, zlib.DEFLATED, 31)
    return z.compress(body) + z.flush()


def _brotli(body: bytes, level: int) -> bytes:
    assert brotli is not None
    return bytes(brotli.compress(body, quality=level))


def _zstd(body: bytes, level: int) -> bytes:
    assert zstandard is not None
    # A compressor per call: one shared by worker threads would race.
    return zstandard.ZstdCompressor(level=level).compress(body)


_ONE_SHOT: dict[str, Callable[[bytes, int], bytes]] = {"gzip": _gzip, "br": _brotli, "zstd": _zstd}
_STREAMS: dict[str, Callable[[int], StreamEncoder]] = {
    "gzip": _GzipStream,
    "br": _BrotliStream,
    "zstd": _ZstdStream,
}


class ResponseCompression:
    """The configured policy, built once at start-up and shared by both edges."""

    def __init__(self, settings: CompressionSettings) -> None:
        available = available_codings()
        self.enabled = settings.enabled
        self.codings = tuple(c for c in settings.algorithms if c in available)
        self.min_bytes = settings.min_bytes
        self.executor_bytes = settings.executor_bytes
        self._levels = {
            "gzip": settings.gzip_level,
            "br": settings.br_level,
            "zstd": settings.zstd_level,
        }
        self._headers = {c: (("Content-Encoding", c), VARY) for c in _ONE_SHOT}
        #: What an answer to a request without ``Accept-Encoding`` adds.
        self.plain_headers: tuple[tuple[str, str], ...] = _VARY_ONLY if self.enabled else ()
        self._cache: dict[str, Choice] = {}

    def choose(self, accept_encoding: str | None) -> Choice:
        """The negotiated coding; identity for no header (or compression off)."""
        if accept_encoding is None or not self.enabled:
            return IDENTITY
        choice = self._cache.get(accept_encoding)
        if choice is None:
            choice = negotiate(accept_encoding, self.codings)
            if len(self._cache) < _CACHE_SIZE:
                self._cache[accept_encoding] = choice
        return choice

    def coding_for(self, choice: Choice, size: int, content_type: str | None) -> str | None:
        """The coding for a whole body of ``size`` bytes, or None to send it as it is."""
        coding = choice.coding
        if coding is None or not size or not compressible(content_type):
            return None
        return coding if choice.forced or size >= self.min_bytes else None

    async def compress(self, coding: str, body: bytes) -> bytes:
        """``body`` compressed, in a worker thread when it is large."""
        encode = _ONE_SHOT[coding]
        level = self._levels[coding]
        if len(body) < self.executor_bytes:
            return encode(body, level)
        return await asyncio.get_running_loop().run_in_executor(None, encode, body, level)

    def plan(
        self, accept_encoding: str | None, content_type: str | None, size: int
    ) -> tuple[str | None, tuple[tuple[str, str], ...]]:
        """For a whole (unary or error) answer: the coding to apply, and the headers to add.

        Synchronous, so an answer sent as it is (no ``Accept-Encoding``) awaits nothing.
        """
        if accept_encoding is None:
            return None, self.plain_headers
        if not self.enabled:
            return None, ()
        coding = self.coding_for(self.choose(accept_encoding), size, content_type)
        if coding is None:
            return None, _VARY_ONLY
        return coding, self._headers[coding]

    def stream(self, coding: str) -> StreamWriter:
        return StreamWriter(_STREAMS[coding](self._levels[coding]), self.executor_bytes)


class StreamWriter:
    """A stream's encoder: each write compressed and flushed, large ones off the event loop.

    A write cancelled while its compression runs in a thread has still advanced
    the compressor: its output is kept and goes out before the next write's,
    or the client could not decode anything after it.
    """

    __slots__ = ("_carry", "_encoder", "_executor_bytes", "_pending")

    def __init__(self, encoder: StreamEncoder, executor_bytes: int) -> None:
        self._encoder = encoder
        self._executor_bytes = executor_bytes
        self._carry: asyncio.Future[bytes] | None = None
        self._pending = b""

    async def _settle(self) -> None:
        """The output of a compression running in a thread, into ``_pending``."""
        if self._carry is not None:
            self._pending += await asyncio.shield(self._carry)
            self._carry = None

    async def chunk(self, data: bytes) -> bytes:
        await self._settle()
        if len(data) < self._executor_bytes:
            self._pending += self._encoder.chunk(data)
        else:
            loop = asyncio.get_running_loop()
            self._carry = loop.run_in_executor(None, self._encoder.chunk, data)
            await self._settle()
        out, self._pending = self._pending, b""
        return out

    async def finish(self) -> bytes:
        await self._settle()
        out, self._pending = self._pending + self._encoder.finish(), b""
        return out
