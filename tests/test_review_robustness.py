"""Review of the recent robustness commits: each test reproduced a defect (xfail until fixed).

- c023c81 native_pool ``retry_now``: the Event could be left set with nobody waiting
  (fixed: it is set only while a backoff pause runs).
- 33f2892 parse_errors ``JsonErrorHandler.data_received``: a body failed this way was
  read again by aiohttp's lingering close, which logged "Unhandled exception"
  (fixed: the failed body is also ended).

Real peers only: a hand-made HTTP/2 server (``h2_peer``), real bridges over raw sockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from grpc_bridge.upstream.h2 import frames
from tests.harness import RunningBridge, running_bridge
from tests.native_tools import native
from tests.servers import RunningServer
from tests.test_native_edge_cases import echo_handler, eventually, h2_peer

ECHO = "/bridgetest.v1.TestService/Echo"
HOST = b"Host: bridge"


def http_request(*lines: bytes, body: bytes = b"") -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


CHUNKED_ECHO_HEAD = http_request(
    b"POST " + ECHO.encode() + b" HTTP/1.1",
    HOST,
    b"Content-Type: application/json",
    b"Transfer-Encoding: chunked",
)


# -- c023c81: Slot.retry_now -----------------------------------------------------------


async def test_retry_now_before_the_attempt_starts_does_not_skip_a_later_backoff() -> None:
    """retry_now in the same iteration as connect(): the slot is IDLE, its task not run.

    retry_now sets the Event; the task then connects without pausing, so the Event
    stays set. The first connection fails (GOAWAY with the server's SETTINGS), and
    the 30 s backoff that should follow is skipped: the slot reconnects at once.
    In the bridge: discovery finishing in the iteration a slot's reconnect was
    scheduled (``_lost`` after a stable connection, or a rebuild).
    """

    def first(index: int) -> bytes:
        settings = frames.settings({})
        return settings + frames.goaway(0, frames.NO_ERROR) if index == 0 else settings

    reconnect = {"initial_backoff_s": 30, "max_backoff_s": 30}
    async with (
        h2_peer(echo_handler, first_bytes=first) as peer,
        native(peer.target, pool_size=1, reconnect=reconnect) as invoker,
    ):
        pool = invoker._pool
        # What discovery does (bridge.py) when it succeeds in this iteration.
        pool.retry_now()
        await eventually(
            lambda: pool.states() == ["TRANSIENT_FAILURE"] or len(peer.connections) > 1
        )
        await asyncio.sleep(1.0)
        # The first attempt failed: the slot waits out its 30 s backoff, no second connection.
        assert len(peer.connections) == 1, (
            f"{len(peer.connections)} connections within a second; states {pool.states()}"
        )


# -- 33f2892: JsonErrorHandler.data_received ---------------------------------------------


@pytest.fixture(params=[True, False], ids=["fast_path", "aiohttp_only"])
async def bridge(request: Any, upstream: RunningServer) -> AsyncIterator[RunningBridge]:
    async with running_bridge(upstream.target, listen={"fast_path": request.param}) as b:
        yield b


async def test_a_body_failed_mid_way_is_not_logged_as_an_unhandled_exception(
    bridge: RunningBridge, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.server.proxy_port)
    try:
        with caplog.at_level(logging.ERROR, logger="aiohttp.server"):
            writer.write(CHUNKED_ECHO_HEAD)
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b'5\r\n{"fSt\r\n')
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"zz\r\n")
            async with asyncio.timeout(5):
                raw = await reader.read()
            await asyncio.sleep(0.1)
    finally:
        writer.close()
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw
    unhandled = [
        r.getMessage() for r in caplog.records if r.name == "aiohttp.server" and r.levelno >= 40
    ]
    assert not unhandled, unhandled
