"""Helpers for the response compression tests: decoders, and responses read chunk by chunk.

Decoding uses the codec libraries directly (zlib, brotli, zstandard), never
the bridge's code, and reads responses from raw sockets so the test sees the
bytes exactly as they were sent.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any, Protocol

import brotli  # type: ignore[import-untyped]
import zstandard

from tests.helpers.raw_http import read_chunk, read_head

CODINGS = ("gzip", "br", "zstd")


class Decoder(Protocol):
    def __call__(self, data: bytes) -> bytes: ...


def incremental(coding: str) -> Decoder:
    """A decoder fed a compressed stream piece by piece; returns what each piece completes."""
    if coding == "gzip":
        return zlib.decompressobj(31).decompress
    if coding == "br":
        decompressor = brotli.Decompressor()

        def feed(data: bytes) -> bytes:
            # brotli 1.2 hands out at most ~32 KiB a call: ask again until it is all out.
            out = bytes(decompressor.process(data))
            while more := decompressor.process(b""):
                out += more
            return out

        return feed
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress
    raise ValueError(coding)


def decode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return zlib.decompress(data, 31)
    if coding == "br":
        return bytes(brotli.decompress(data))
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompress(data)
    raise ValueError(coding)


def complete(coding: str, data: bytes) -> bytes:
    """A whole compressed stream decoded; raises unless it was properly ended."""
    if coding == "zstd":
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        out = decompressor.decompress(data)
        assert decompressor.eof, "the zstd frame was not ended"
        return out
    return decode(coding, data)  # zlib and brotli refuse a truncated stream


Response = tuple[int, dict[str, str], bytes]


async def exchange(port: int, request: bytes, *, head_only: bool = False) -> Response:
    """One request on a fresh connection; the status, headers (lower-case) and raw body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        status, headers = await read_head(reader)
        body = b""
        if head_only:
            pass
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            while chunk := await read_chunk(reader):
                body += chunk
        return status, headers, body
    finally:
        writer.close()
        await writer.wait_closed()


def without_volatile(response: Response) -> Response:
    status, headers, body = response
    return status, {k: v for k, v in headers.items() if k not in ("date", "x-request-id")}, body


def vary(headers: Any) -> list[str]:
    return [v.strip().lower() for v in headers.get("vary", "").split(",") if v.strip()]
