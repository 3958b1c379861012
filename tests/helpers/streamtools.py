"""Helpers for streaming tests: read NDJSON lines and SSE events as they arrive, with times."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

TEST_SERVICE = "/bridgetest.v1.TestService"
SERVER_STREAM = f"{TEST_SERVICE}/ServerStream"
CLIENT_STREAM = f"{TEST_SERVICE}/ClientStream"
BIDI = f"{TEST_SERVICE}/Bidi"
ECHO = f"{TEST_SERVICE}/Echo"
META = f"{TEST_SERVICE}/EchoMetadata"
NDJSON = "application/x-ndjson"


@dataclass
class Timed:
    at: float  # seconds since the request was sent
    value: Any


async def ndjson_lines(resp: aiohttp.ClientResponse, started: float) -> AsyncIterator[Timed]:
    """Each NDJSON line, parsed, with the time it arrived."""
    async for raw in resp.content:
        if raw.strip():
            yield Timed(time.monotonic() - started, orjson.loads(raw))


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event, parsed data) pairs of a complete SSE body."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields:
            events.append((fields.get("event", "message"), orjson.loads(fields["data"])))
    return events


async def sse_stream(resp: aiohttp.ClientResponse, started: float) -> AsyncIterator[Timed]:
    """Each SSE event as (event, data), with the time its blank line arrived."""
    block: list[str] = []
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line:
            block.append(line)
            continue
        fields = dict(item.split(": ", 1) for item in block)
        block = []
        yield Timed(time.monotonic() - started, (fields["event"], orjson.loads(fields["data"])))
