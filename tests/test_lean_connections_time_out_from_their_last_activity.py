"""The lean edge's connection timers count from what the connection did last.

An idle keep-alive connection closes ``IDLE_TIMEOUT_S`` after its last answer
(not after it opened, however many requests it served), and a request begun
after an idle spell has ``limits.body_read_timeout_s`` to arrive in whole, even
when the keep-alive timeout is far longer.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from grpc_bridge.edge import fastpath
from tests.helpers.harness import running_bridge
from tests.helpers.lean_path import connection, post, read_response
from tests.helpers.raw_http import ECHO
from tests.helpers.servers import RunningServer


async def test_keep_alive_counts_from_the_last_answer(
    upstream: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastpath, "IDLE_TIMEOUT_S", 1.5)
    async with running_bridge(upstream.target) as b, connection(b) as (reader, writer):
        # Four requests 0.5 s apart: 2 s in all, more than the keep-alive timeout, and
        # each within a second of the timeout (a loaded machine may stall that long).
        for _ in range(4):
            await asyncio.sleep(0.5)
            writer.write(post(ECHO, b"{}"))
            status = (await asyncio.wait_for(read_response(reader), 5))[0]
            assert status == 200
        answered = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # then idle: closed
        assert time.monotonic() - answered >= 1.4


async def test_a_request_begun_after_an_idle_spell_has_the_body_timeout(
    upstream: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastpath, "IDLE_TIMEOUT_S", 30.0)
    limits = {"body_read_timeout_s": 0.3}
    async with running_bridge(upstream.target, limits=limits) as b, connection(b) as (reader, w):
        await asyncio.sleep(0.2)
        w.write(f"POST {ECHO} HTTP/1.1\r\nHost: b\r\n".encode())
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started < 4
