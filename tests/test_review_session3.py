"""Review of session 3's changes (gathered HTTP/2 writes, batched request lines, stream work).

Each test reproduced a defect the review found (they were xfail(strict) until
the fixes: PIPE_BUF-sized log writes, one batch for every JSON line, the
GOAWAY written before an abort; the ordering case lives in
tests/test_log_direct.py). The peers are real: a bridge process, a grpc.aio
upstream, or a hand-made HTTP/2 server on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from bridgetest.v1 import kitchen_pb2

from grpc_bridge.errors import BridgeError
from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.native_invoker import NativeInvoker
from grpc_bridge.upstream.native_pool import NativePool
from grpc_bridge.upstream.pool import ChannelPlan
from grpc_bridge.upstream.resolver import parse_target, unresolved
from tests.native_tools import method, sleep_request
from tests.process import bridge_env, serve_args
from tests.servers import RunningServer

SLEEP = method("Sleep", kitchen_pb2.SleepResponse)


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition never held")
        await asyncio.sleep(0.01)


# -- edf55be: request lines of one iteration leave in one write ---------------------------


def _read_some(fd: int, size: int) -> bytes:
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return b""


async def test_request_lines_of_two_workers_are_never_spliced(upstream: RunningServer) -> None:
    """Two workers share stderr (a pipe, as under a container runtime).

    A request line used to be one write() of under PIPE_BUF (4096) bytes, which
    a pipe keeps whole. Now a worker writes all the lines of an iteration in
    one write(): past PIPE_BUF the kernel may put the other worker's bytes in
    the middle of it whenever the pipe is full (a slow log reader), and lines
    come out cut in two and glued to the other worker's.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "grpc_bridge",
        *serve_args(upstream.target, "--workers", "2"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=write_fd,
        env=bridge_env(),
    )
    os.close(write_fd)
    out = bytearray()
    try:
        port = admin = 0
        async with asyncio.timeout(30):
            while not port:
                chunk = _read_some(read_fd, 65536)
                if not chunk:
                    await asyncio.sleep(0.02)
                    continue
                out += chunk
                for line in bytes(out).splitlines():
                    with contextlib.suppress(orjson.JSONDecodeError):
                        event = orjson.loads(line)
                        if event.get("event") == "listening" and "workers" in event:
                            port = int(event["proxy"].rsplit(":", 1)[1])
                            admin = int(event["admin"].rsplit(":", 1)[1])
        # Each line ~3.4 KB (the path twice: path and error): under PIPE_BUF, two are over it.
        path = "/missing/" + "a" * 1500
        url = f"http://127.0.0.1:{port}{path}"
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with asyncio.timeout(30):
                while True:
                    out += _read_some(read_fd, 65536)
                    async with session.get(f"http://127.0.0.1:{admin}/readyz") as resp:
                        if resp.status == 200:
                            break
                    await asyncio.sleep(0.05)

            async def one() -> int:
                async with session.get(url) as resp:
                    await resp.read()
                    return resp.status

            # Nobody reads the log for a while: the pipe fills and both workers block in write().
            requests = [asyncio.create_task(one()) for _ in range(300)]
            await asyncio.sleep(1.5)
            # Then a slow reader: a page at a time.
            async with asyncio.timeout(60):
                while not all(r.done() for r in requests):
                    out += _read_some(read_fd, 4096)
                    await asyncio.sleep(0.002)
            statuses = [r.result() for r in requests]
        assert statuses.count(404) == len(statuses), set(statuses)
        proc.terminate()
        async with asyncio.timeout(30):
            while True:
                chunk = _read_some(read_fd, 65536)
                if chunk:
                    out += chunk
                elif proc.returncode is not None:
                    break
                else:
                    await asyncio.sleep(0.02)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(proc.wait()), 0.001)
            # EOF once every writer (parent and workers) has exited.
            while chunk := _read_some(read_fd, 65536):
                out += chunk
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(read_fd)
    broken: list[bytes] = []
    request_lines = 0
    for line in bytes(out).splitlines():
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            broken.append(line[:60] + b"..." + line[-60:])
            continue
        if event.get("event") == "request" and event.get("path") == path:
            request_lines += 1
    assert not broken, f"{len(broken)} spliced lines, e.g. {broken[:3]}"
    assert request_lines == 300


@dataclass
class _Peer:
    target: str
    #: (frame type, stream id) in the order the peer read them.
    seen: list[tuple[int, int]] = field(default_factory=list)
    ended: bool = False


@asynccontextmanager
async def _recording_peer() -> AsyncIterator[_Peer]:
    """An HTTP/2 server that answers SETTINGS and PING, never a request, and records frames."""
    writers: list[asyncio.StreamWriter] = []
    peer = _Peer("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await reader.readexactly(len(frames.PREFACE))
            writer.write(frames.settings({}))
            while True:
                head = await reader.readexactly(9)
                high, low, kind, flags, stream_id = frames.HEADER.unpack(head)
                payload = await reader.readexactly((high << 16) | low)
                peer.seen.append((kind, stream_id))
                if kind == frames.SETTINGS and not flags & frames.ACK:
                    writer.write(frames.SETTINGS_ACK)
                elif kind == frames.PING and not flags & frames.ACK:
                    writer.write(frames.ping(payload, ack=True))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            peer.ended = True
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    peer.target = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield peer
    finally:
        server.close()
        for writer in writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


def _pool(target: str) -> tuple[NativePool, NativeInvoker]:
    pool = NativePool(Upstream(targets=[target], pool_size=1), retire_grace=1)
    pool.open(ChannelPlan(unresolved([parse_target(target)])))
    return pool, NativeInvoker(pool)


async def test_pool_close_with_a_call_in_flight_sends_goaway() -> None:
    async with _recording_peer() as peer:
        pool, invoker = _pool(peer.target)
        call = asyncio.create_task(
            invoker.unary(SLEEP, sleep_request(10, "x"), metadata=[], timeout=20)
        )
        try:
            await eventually(lambda: (frames.HEADERS, 1) in peer.seen)
            # NativePool.close(): Connection.close() (GOAWAY), then abort() for the
            # connections still busy, as Bridge.stop() does.
            await pool.close()
            await eventually(lambda: peer.ended)
            with pytest.raises(BridgeError):
                await asyncio.wait_for(call, 5)
        finally:
            call.cancel()
            with contextlib.suppress(BaseException):
                await call
        assert (frames.GOAWAY, 0) in peer.seen, peer.seen
