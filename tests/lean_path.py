"""The lean HTTP/1.1 path beside the aiohttp one, in-process: bridge pairs and raw exchanges.

For tests that send the same bytes to a bridge with ``listen.fast_path`` on
and to one with it off (tests/harness.py bridges, not processes: for bridge
processes see tests/raw_http.py, whose request builders these tests share).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from grpc_bridge.http import fastpath
from tests.harness import RunningBridge, running_bridge
from tests.raw_http import raw_request as post
from tests.raw_http import read_chunk, read_head
from tests.servers import RunningServer, StartServer

__all__ = [
    "ROUTES",
    "bridges",
    "comparable",
    "connection",
    "post",
    "read_response",
    "rest_bridges",
    "spy_hand_overs",
]


async def read_response(
    reader: asyncio.StreamReader, *, to_head: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One response on a kept-alive connection (a Content-Length or chunked body);
    ``to_head``: the answer to a HEAD (Content-Length, no body)."""
    status, headers = await read_head(reader)
    if to_head:
        body = b""
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:  # chunked (aiohttp's streamed answers)
        body = b""
        while chunk := await read_chunk(reader):
            body += chunk
    return status, headers, body


def comparable(response: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], bytes]:
    """A response without the headers that differ between any two (Date, X-Request-Id);
    unlike :func:`tests.raw_http.comparable`, the body is compared whole."""
    status, headers, body = response
    fixed = {k: v for k, v in headers.items() if k not in ("date", "x-request-id")}
    return status, fixed, body


@asynccontextmanager
async def connection(b: RunningBridge) -> AsyncIterator[tuple[Any, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", b.server.proxy_port)
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


@asynccontextmanager
async def bridges(upstream: RunningServer) -> AsyncIterator[tuple[RunningBridge, RunningBridge]]:
    async with (
        running_bridge(upstream.target) as fast,
        running_bridge(upstream.target, listen={"fast_path": False}) as plain,
    ):
        yield fast, plain


#: YAML routes on TestService (added to RestService's annotations): an error answered
#: after the upstream call, and the kitchen-sink message's types in the query string.
ROUTES = [
    {"method": "bridgetest.v1.TestService/Fail", "post": "/v1/fail", "body": "*"},
    {
        "method": "bridgetest.v1.TestService/Echo",
        "get": "/v1/echo/{f_string}",
        "additional_bindings": [{"patch": "/v1/echo/{f_int32}", "body": "*"}],
    },
]


@asynccontextmanager
async def rest_bridges(
    upstream_factory: StartServer, **overrides: Any
) -> AsyncIterator[tuple[RunningBridge, RunningBridge]]:
    """A lean-path bridge and an aiohttp-only one, both with REST bindings."""
    server = await upstream_factory(services=("rest", "test"))
    async with (
        running_bridge(server.target, routes=ROUTES, **overrides) as fast,
        running_bridge(
            server.target,
            routes=ROUTES,
            **{**overrides, "listen": {**overrides.get("listen", {}), "fast_path": False}},
        ) as plain,
    ):
        yield fast, plain


def spy_hand_overs(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every hand-over to aiohttp (its ``raw`` request), to tell served requests apart."""
    seen: list[bytes] = []
    original = fastpath.FastConnection._hand_over

    def spy(self: fastpath.FastConnection, raw: bytes) -> None:
        seen.append(raw)
        original(self, raw)

    monkeypatch.setattr(fastpath.FastConnection, "_hand_over", spy)
    return seen
