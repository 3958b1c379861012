"""The lean HTTP/1.1 path beside the aiohttp one, in-process: bridge pairs and raw exchanges.

For tests that send the same bytes to a bridge with ``listen.fast_path`` on
and to one with it off (tests/helpers/harness.py bridges, not processes: for bridge
processes see tests/helpers/raw_http.py, whose request builders these tests share).
"""

from __future__ import annotations

import asyncio
import binascii
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from grpc_bridge.edge import fastpath
from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.raw_http import raw_request as post
from tests.helpers.servers import RunningServer, StartServer

__all__ = [
    "ROUTES",
    "Answer",
    "bridges",
    "comparable",
    "comparable_bytes",
    "connection",
    "post",
    "read_response",
    "rest_bridges",
    "spy_hand_overs",
]


class Answer(tuple[int, dict[str, str], bytes]):
    """Status, headers (lower-case name → last value) and body; ``raw``: the bytes as received."""

    raw: bytes

    def __new__(cls, status: int, headers: dict[str, str], body: bytes, raw: bytes) -> Answer:
        answer = super().__new__(cls, (status, headers, body))
        answer.raw = raw
        return answer


async def read_response(reader: asyncio.StreamReader, *, to_head: bool = False) -> Answer:
    """One response on a kept-alive connection (a Content-Length or chunked body);
    ``to_head``: the answer to a HEAD (Content-Length, no body)."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if to_head:
        pass
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        raw += body
    else:  # chunked (aiohttp's streamed answers)
        while True:
            size_line = await reader.readline()
            size = int(size_line.strip(), 16)
            data = await reader.readexactly(size + 2)
            raw += size_line + data
            if not size:
                break
            body += data[:-2]
    return Answer(int(lines[0].split()[1]), headers, body, raw)


_MADE_UP_ID = re.compile(rb"\r\nX-Request-Id: ([0-9a-f]{32})\r\n")
_DATE = re.compile(rb"\r\nDate: [^\r]*")
_PEER = re.compile(rb"ipv[46]:[^\"]*:\d+")


#: One base64 piece of a gRPC-Web text body: each frame is encoded on its own, so a
#: padded piece ends where the next begins.
_BASE64_PIECE = re.compile(rb"[A-Za-z0-9+/]+={0,2}")


def _text_body_decoded(raw: bytes) -> bytes:
    """A whole (not chunked) gRPC-Web text answer with its body base64-decoded, so that
    the ids and ports echoed inside it can be blanked too; any other answer as it is."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lowered = head.lower()
    if not sep or b"application/grpc-web-text" not in lowered or b"chunked" in lowered:
        return raw
    pieces = _BASE64_PIECE.findall(body)
    if b"".join(pieces) != body:
        return raw
    return head + sep + b"".join(binascii.a2b_base64(piece) for piece in pieces)


def comparable_bytes(raw: bytes) -> bytes:
    """An answer's bytes but what differs between any two: its ``Date``, a request id
    the bridge made up (a placeholder wherever it appears) and the upstream's view of
    the bridge's port. Every other header stays, in order, repeated ones included (a
    gRPC-Web text body is compared decoded: the ids it echoes are base64 there)."""
    raw = _text_body_decoded(raw)
    made_up = _MADE_UP_ID.search(raw)
    if made_up is not None:
        raw = raw.replace(made_up.group(1), b"<request-id>")
    return _PEER.sub(b"<peer>", _DATE.sub(b"", raw))


def comparable(response: Answer) -> bytes:
    """:func:`comparable_bytes` of a response read by :func:`read_response`."""
    return comparable_bytes(response.raw)


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
