"""A trickled request head is closed after limits.body_read_timeout_s, whichever edge reads it.

The lean edge reads every head whole under its deadline, even one it then hands to
aiohttp (OPTIONS, HEAD), and keeps the connection after the calls it serves itself
(gRPC-Web and Connect unary among them); every head after a hand-over (a Connect
GET, say), and every head on the aiohttp-only edge, is aiohttp's, read under the
same deadline (edge/head_deadline.py).
An idle keep-alive connection is not closed by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Iterator

import pytest

from tests.helpers.process import BridgeProcess
from tests.helpers.raw_http import held_for, read_answer
from tests.helpers.shared_bridges import SharedBridges, shared_bridges

ECHO = "/bridgetest.v1.TestService/Echo"
LOOKUP = "/bridgetest.v1.TestService/Lookup"
FRAME = struct.pack(">BI", 0, 0)


pytestmark = pytest.mark.both_edges


@pytest.fixture(scope="module")
def edges() -> Iterator[SharedBridges]:
    """A lean and an aiohttp bridge whose heads and bodies have 1 s, shared by the
    module's tests: each looks only at when its own connection is answered or closed."""
    with shared_bridges(GRPC_BRIDGE_LIMITS__BODY_READ_TIMEOUT_S="1") as pair:
        yield pair


@pytest.fixture
def lean(edges: SharedBridges, edge: str | None) -> BridgeProcess:
    """The shared bridge on the test's edge."""
    return edges.lean if (edge or "lean") == "lean" else edges.plain


@pytest.mark.parametrize("method", ["OPTIONS", "HEAD"])
async def test_a_trickled_head_of_a_method_the_lean_path_hands_over_is_closed(
    lean: BridgeProcess, method: str
) -> None:
    """A browser's preflight starts with OPTIONS: ``_could_start`` is false for it, so the
    connection goes to aiohttp at its first bytes, and aiohttp has no head deadline."""
    reader, writer = await asyncio.open_connection("127.0.0.1", lean.proxy_port)
    try:
        held = await held_for(
            reader, writer, f"{method} {ECHO} HTTP/1.1\r\nHost: b\r\n".encode(), 6.0
        )
    finally:
        writer.close()
    # The lean path closes a POST head trickled like this after ~1 s (test_body_read_timeout).
    assert held < 4.0, f"connection held {held:.1f} s by a head that never ends"


GRPC_WEB_HEAD = (
    f"POST {ECHO} HTTP/1.1\r\nHost: b\r\nContent-Type: application/grpc-web\r\n"
    f"Content-Length: {len(FRAME)}\r\n\r\n"
).encode()


async def grpc_web_call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *parts: bytes
) -> None:
    """One gRPC-Web call (the lean edge serves it, or aiohttp on the aiohttp-only edge),
    its request written in ``parts``."""
    for part in parts:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.05)  # each part a read of its own
    status, _, _ = await read_answer(reader)
    assert status == 200


@pytest.mark.parametrize(
    "parts", [(GRPC_WEB_HEAD + FRAME,), (GRPC_WEB_HEAD, FRAME)], ids=["whole", "body_apart"]
)
async def test_a_trickled_head_after_a_grpc_web_call_is_closed(
    lean: BridgeProcess, parts: tuple[bytes, ...]
) -> None:
    """After one gRPC-Web call, the next head on the connection has the same deadline."""
    reader, writer = await asyncio.open_connection("127.0.0.1", lean.proxy_port)
    try:
        await grpc_web_call(reader, writer, *parts)
        held = await held_for(reader, writer, f"POST {ECHO} HTTP/1.1\r\nHost: b\r\n".encode(), 6.0)
    finally:
        writer.close()
    assert held < 4.0, f"connection held {held:.1f} s by a head that never ends"


#: A request without a body, answered (404) by aiohttp on either edge.
NOT_FOUND = b"GET /nowhere HTTP/1.1\r\nHost: b\r\n\r\n"


@pytest.mark.parametrize("first", [GRPC_WEB_HEAD + FRAME, NOT_FOUND], ids=["body", "bodyless"])
async def test_a_head_left_unfinished_behind_a_request_is_closed(
    lean: BridgeProcess, first: bytes
) -> None:
    """A head begun in the same read as the request before it, then nothing more: its deadline
    runs all the same (no later byte is there to start it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", lean.proxy_port)
    try:
        writer.write(first + f"POST {ECHO} HTTP/1.1\r\nHost: b\r\n".encode())
        status, headers, _ = await read_answer(reader)
        assert status in (200, 404) and headers.get("connection") != "close", (status, headers)
        # Nothing more is sent: no later byte starts the deadline.
        began = time.perf_counter()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(6.0):
                await reader.read()
        held = time.perf_counter() - began
    finally:
        writer.close()
    assert held < 4.0, f"connection held {held:.1f} s by a head that never ends"


@pytest.mark.parametrize("idle", [0.8, 1.6])
async def test_an_idle_connection_outlives_the_head_deadline(
    lean: BridgeProcess, idle: float
) -> None:
    """The deadline is the head's, from its first byte: a keep-alive connection idle for a
    while (across the timer a body's end started, or past it), then sending a head in two
    parts, is served."""
    reader, writer = await asyncio.open_connection("127.0.0.1", lean.proxy_port)
    try:
        await grpc_web_call(reader, writer, GRPC_WEB_HEAD, FRAME)
        await asyncio.sleep(idle)
        half = len(GRPC_WEB_HEAD) // 2
        writer.write(GRPC_WEB_HEAD[:half])
        await writer.drain()
        # A read of its own, well within the 1 s the head has (a loaded machine stalls).
        await asyncio.sleep(0.1)
        await grpc_web_call(reader, writer, GRPC_WEB_HEAD[half:] + FRAME)
    finally:
        writer.close()


async def test_a_trickled_head_after_a_connect_get_is_closed(lean: BridgeProcess) -> None:
    """A Connect GET is handed to aiohttp by the lean edge: the rest of the connection is
    aiohttp's, and its next head has the same deadline."""
    query = "connect=v1&encoding=json&message=%7B%7D"
    reader, writer = await asyncio.open_connection("127.0.0.1", lean.proxy_port)
    try:
        writer.write(f"GET {LOOKUP}?{query} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        status, _, _ = await read_answer(reader)
        assert status == 200
        held = await held_for(reader, writer, f"POST {ECHO} HTTP/1.1\r\nHost: b\r\n".encode(), 6.0)
    finally:
        writer.close()
    assert held < 4.0, f"connection held {held:.1f} s by a head that never ends"


async def test_a_trickled_head_to_the_admin_port_is_closed(lean: BridgeProcess) -> None:
    """The admin listener reads heads under the same deadline as the proxy's."""
    reader, writer = await asyncio.open_connection("127.0.0.1", lean.admin_port)
    try:
        held = await held_for(reader, writer, b"GET /v1/services HTTP/1.1\r\nHost: b\r\n", 6.0)
    finally:
        writer.close()
    assert held < 4.0, f"admin connection held {held:.1f} s by a head that never ends"
