"""Connect requests by hand (envelopes, raw POSTs) against a real bridge (test_connect*.py).

Bridges run with ``listen.fast_path: false`` until the lean HTTP/1.1 edge
(edge/fastpath.py) hands Connect requests to aiohttp itself.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from tests.helpers.harness import RunningBridge, running_bridge

TEST = "bridgetest.v1.TestService"
CONNECT = {"Connect-Protocol-Version": "1"}
JSON_UNARY = {**CONNECT, "Content-Type": "application/json"}
PROTO_UNARY = {**CONNECT, "Content-Type": "application/proto"}
JSON_STREAM = {**CONNECT, "Content-Type": "application/connect+json"}
PROTO_STREAM = {**CONNECT, "Content-Type": "application/connect+proto"}

_HEADER = struct.Struct(">BI")

#: Connect's HTTP status of each code (connectrpc.com/docs/protocol#error-codes).
CONNECT_STATUS = {
    1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip


@asynccontextmanager
async def connect_bridge(target: str, **overrides: Any) -> AsyncIterator[RunningBridge]:
    """A bridge for ``target`` on the default edge (the lean one, which serves Connect's
    unary POSTs itself and hands its GETs and streams to aiohttp)."""
    async with running_bridge(target, **overrides) as bridge:
        yield bridge


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return _HEADER.pack(flags, len(payload)) + payload


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """A Connect stream body as (flags, message) pairs; the body must end at an envelope's end."""
    out: list[tuple[int, bytes]] = []
    while body:
        flags, length = _HEADER.unpack_from(body)
        assert len(body) >= 5 + length, f"truncated envelope: {body!r}"
        out.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


def end_of_stream(body: bytes) -> Any:
    """The parsed end-of-stream message, checked to be the body's last and only end."""
    frames = envelopes(body)
    assert frames and frames[-1][0] & 0x02, frames
    assert not any(flags & 0x02 for flags, _ in frames[:-1]), frames
    return orjson.loads(frames[-1][1])


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def post(
    server: RunningBridge | str, method: str, body: bytes, headers: Mapping[str, str]
) -> Answer:
    """A POST of ``body`` as given to ``/<method>`` (``pkg.Svc/Method``); the answer undecoded.

    ``server``: a bridge, or any base URL (Envoy's).
    """
    if isinstance(server, str):
        async with aiohttp.ClientSession() as session:
            return await _post(session, server, method, body, headers)
    return await _post(server.session, server.url, method, body, headers)


async def _post(
    session: aiohttp.ClientSession,
    base_url: str,
    method: str,
    body: bytes,
    headers: Mapping[str, str],
) -> Answer:
    async with session.post(
        f"{base_url}/{method}", data=body, headers=dict(headers), auto_decompress=False
    ) as resp:
        return Answer(resp.status, resp.headers, await resp.read())


async def get(
    bridge: RunningBridge, target: str, headers: Mapping[str, str] | None = None
) -> Answer:
    """A GET of ``target`` (path and query, sent as written)."""
    async with bridge.session.get(
        URL(f"{bridge.url}{target}", encoded=True), headers=dict(headers or {})
    ) as resp:
        return Answer(resp.status, resp.headers, await resp.read())
