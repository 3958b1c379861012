"""Request bodies: media type checks, and reads that are bounded as bytes arrive.

- size: ``limits.max_request_bytes``, counted on the bytes on the wire and, for a
  compressed body (``Content-Encoding``, pipeline/inflate.py), on the inflated bytes
  as they are produced: a 413 at the first byte past it, the rest never inflated;
- time: ``limits.body_read_timeout_s``, by a deadline the caller sets (a unary
  body: its head plus the timeout; a request stream: each message's first byte
  plus the timeout); past it a 408, then the connection is closed (middleware).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import StreamReader, web

from grpc_bridge.errors import BodyTimeout, ClientGone, UnsupportedMediaType
from grpc_bridge.pipeline.inflate import Inflater, inflater_for, too_large

JSON = "application/json"
NDJSON = "application/x-ndjson"


def check_media_type(request: web.Request, accepted: tuple[str, ...] = (JSON,)) -> str:
    """The request's media type; no Content-Type at all counts as JSON."""
    raw = request.headers.get("Content-Type")
    if raw is None:
        return JSON
    if raw in accepted:
        # The usual bare "application/json": what parsing it would return, without
        # aiohttp's header parse (~1.5 µs per request).
        return raw
    mime = request.content_type
    if mime not in accepted:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {request.headers['Content-Type']!r}: "
            f"send {' or '.join(accepted)}"
            + (
                " (curl -d sends a form type: add -H 'Content-Type: application/json')"
                if mime == "application/x-www-form-urlencoded"
                else ""
            )
        )
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"unsupported charset {charset!r}: JSON bodies must be UTF-8")
    return mime


def body_timeout(timeout: float) -> BodyTimeout:
    return BodyTimeout(
        f"request body not received within {timeout:g} s (limits.body_read_timeout_s)"
    )


def body_inflater(request: web.Request) -> Inflater | None:
    """The body's decoder; None when it is not compressed (415 for a coding not served)."""
    if "Content-Encoding" not in request.headers:
        return None
    return inflater_for(request.headers.getall("Content-Encoding"))


class BodyReader:
    """A body's bytes as they arrive, inflated when compressed, each read by ``deadline``.

    ``deadline`` (loop time, None for none) may be moved between reads. An
    inflated chunk comes out in bounded pieces with a pass through the event
    loop between them, so a bomb costs other requests one piece at a time.
    """

    __slots__ = ("_content", "_inflater", "_pieces", "_wire", "_wire_limit", "deadline", "timeout")

    def __init__(
        self,
        request: web.Request,
        timeout: float,
        deadline: float | None,
        wire_limit: int | None = None,
    ) -> None:
        self._content: StreamReader = request.content
        self._inflater = body_inflater(request)
        self._pieces: Iterator[bytes] | None = None
        self.timeout = timeout
        self.deadline = deadline
        #: Bytes received as sent (before inflating), refused past ``wire_limit``: a
        #: compressed body that inflates to little must not stream without end.
        self._wire = 0
        self._wire_limit = wire_limit

    async def read_streamed(self) -> bytes:
        """:meth:`read` for a request stream, whose handler answers a lost connection
        with nothing: it is :class:`~grpc_bridge.errors.ClientGone`, as a failed write is."""
        try:
            return await self.read()
        except ConnectionError as exc:
            raise ClientGone(str(exc)) from exc

    async def read(self) -> bytes:
        """The next bytes of the body; b"" at its end (a compressed one checked complete)."""
        inflater = self._inflater
        while True:
            if self._pieces is not None:
                piece = next(self._pieces, None)
                if piece is not None:
                    await asyncio.sleep(0)
                    if piece:
                        return piece
                    continue
                self._pieces = None
            chunk = await self._next_chunk()
            self._wire += len(chunk)
            if self._wire_limit is not None and self._wire > self._wire_limit:
                raise too_large(self._wire_limit)
            if inflater is None:
                return chunk
            if not chunk:
                inflater.finish()
                return b""
            self._pieces = inflater.feed(chunk)

    async def _next_chunk(self) -> bytes:
        content = self._content
        deadline = self.deadline
        if deadline is None or content.is_eof():
            return await content.readany()
        try:
            async with asyncio.timeout_at(deadline):
                return await content.readany()
        except TimeoutError as exc:
            raise body_timeout(self.timeout) from exc


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole body within ``timeout`` s; too large refused by Content-Length, else as read."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    content = request.content
    if not content.is_eof() or "Content-Encoding" in request.headers:
        return await _read_slow(request, limit, timeout)
    # The whole body is in already, as sent: read without a timer.
    # readany() in a loop, not ``async for ... in iter_any()``: the iterator's extra
    # frame and the StopAsyncIteration it raises at the end cost ~2 µs per request.
    chunks: list[bytes] = []
    total = 0
    while chunk := await content.readany():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _read_slow(request: web.Request, limit: int, timeout: float) -> bytes:
    reader = BodyReader(request, timeout, asyncio.get_running_loop().time() + timeout, limit)
    chunks: list[bytes] = []
    total = 0
    while chunk := await reader.read():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
