"""Helpers for the response compression tests: bridge processes, raw HTTP, decoders.

Decoding uses the codec libraries directly (zlib, brotli, zstandard), never
the bridge's code, and reads responses from raw sockets so the test sees the
bytes exactly as they were sent.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import aiohttp
import brotli  # type: ignore[import-untyped]
import zstandard

from tests.process import BridgeProcess, bridge_env, serve_args

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


@asynccontextmanager
async def bridge_process(upstream: str, **env: str) -> AsyncIterator[BridgeProcess]:
    """A ready bridge process in front of ``upstream``; ``env``: GRPC_BRIDGE_* settings."""
    bp = await BridgeProcess.start(*serve_args(upstream), env=bridge_env(**env))
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(15):
            while True:
                async with session.get(f"http://127.0.0.1:{bp.admin_port}/readyz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.05)
        yield bp
    finally:
        await bp.stop()


def fast_path_env(fast_path: bool, **env: str) -> dict[str, str]:
    return {"GRPC_BRIDGE_LISTEN__FAST_PATH": "true" if fast_path else "false", **env}


Response = tuple[int, dict[str, str], bytes]


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body (b"" for the last)."""
    size = int((await reader.readline()).strip(), 16)
    data = await reader.readexactly(size) if size else b""
    await reader.readline()
    return data


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


def http_request(method: str, target: str, body: bytes | None = None, *extra: str) -> bytes:
    head = [f"{method} {target} HTTP/1.1", "Host: bridge"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    head += extra
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


def without_volatile(response: Response) -> Response:
    status, headers, body = response
    return status, {k: v for k, v in headers.items() if k not in ("date", "x-request-id")}, body


def vary(headers: Any) -> list[str]:
    return [v.strip().lower() for v in headers.get("vary", "").split(",") if v.strip()]
