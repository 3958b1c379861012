"""The request line's direct JSON path writes exactly what structlog's processor chain writes.

And each line leaves in one write() of at most PIPE_BUF bytes, so the lines of
several workers sharing one stderr pipe are never spliced into each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import os
import re
import select
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import structlog

from grpc_bridge import log
from grpc_bridge.log import configure_logging, get_logger, log_info
from tests.helpers.process import bridge_env, serve_args
from tests.helpers.servers import RunningServer

_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


class _Stream(io.StringIO):
    """A text stream with a binary ``buffer``, as sys.stderr has."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.BytesIO()

    def isatty(self) -> bool:
        return False

    def lines(self) -> list[bytes]:
        return self.buffer.getvalue().splitlines()


@pytest.fixture
def stream() -> Iterator[_Stream]:
    out = _Stream()
    yield out
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    log._batch = log._direct = None


def _fields(**extra: Any) -> dict[str, Any]:
    return {
        "request_id": "abc",
        "http_method": "POST",
        "path": "/p",
        "framing": None,
        "http_status": 200,
        "duration_ms": 1.234,
        **extra,
    }


def _without_timestamp(line: bytes) -> tuple[list[str], dict[str, Any]]:
    value = orjson.loads(line)
    assert _ISO_UTC.fullmatch(value.pop("timestamp")), line
    return list(value), value


def test_direct_line_is_structlogs_line(stream: _Stream) -> None:
    configure_logging("json", "info", stream=stream)
    structlog.contextvars.bind_contextvars(worker=2)
    logger = get_logger("test")
    logger.info("request", **_fields())
    log_info(logger, "request", _fields())
    via_structlog, direct = stream.lines()
    assert _without_timestamp(direct) == _without_timestamp(via_structlog)
    # The same bytes apart from the timestamp: compact orjson, keys in the same order.
    assert direct.rpartition(b'"timestamp"')[0] == via_structlog.rpartition(b'"timestamp"')[0]
    keys, _ = _without_timestamp(direct)
    assert keys == [*_fields(), "event", "worker", "level"]


def test_direct_line_escapes_lone_surrogates_like_structlog(stream: _Stream) -> None:
    configure_logging("json", "info", stream=stream)
    logger = get_logger("test")
    logger.info("request", **_fields(path="/a\udcffb"))
    log_info(logger, "request", _fields(path="/a\udcffb"))
    via_structlog, direct = stream.lines()
    assert b"a\\udcffb" in direct
    assert direct.rpartition(b'"timestamp"')[0] == via_structlog.rpartition(b'"timestamp"')[0]


def test_captured_logs_still_see_the_line(stream: _Stream) -> None:
    configure_logging("json", "info", stream=stream)
    with structlog.testing.capture_logs() as captured:
        log_info(get_logger("test"), "request", _fields())
    assert captured == [{**_fields(), "event": "request", "log_level": "info"}]
    assert stream.lines() == []


def test_below_the_level_nothing_is_written(stream: _Stream) -> None:
    configure_logging("json", "warning", stream=stream)
    log_info(get_logger("test"), "request", _fields())
    assert stream.lines() == []


def test_console_format_goes_through_structlog(stream: _Stream) -> None:
    configure_logging("console", "info", stream=stream)
    log_info(get_logger("test"), "request", _fields())
    assert "request" in stream.getvalue()
    assert stream.lines() == []


@pytest.mark.parametrize(
    "microseconds",
    [
        0,
        1,
        999_999,
        1_000_000,
        1_700_000_000_000_000,
        1_700_000_000_123_456,
        253_402_300_799_999_999,
    ],
)
def test_timestamp_is_timestampers(microseconds: int) -> None:
    # What TimeStamper(fmt="iso", utc=True) renders for that instant.
    second, micro = divmod(microseconds, 1_000_000)
    when = datetime.datetime.fromtimestamp(second, datetime.UTC).replace(microsecond=micro)
    expected = when.isoformat().replace("+00:00", "Z")
    stamp = log._UtcStamp()
    assert stamp.at(microseconds) == expected
    # Cached second, new microseconds.
    assert stamp.at(second * 1_000_000 + (micro + 1) % 1_000_000) == (
        when.replace(microsecond=(micro + 1) % 1_000_000).isoformat().replace("+00:00", "Z")
    )


def test_timestamp_now_is_close_to_datetime_now() -> None:
    stamp = log._UtcStamp()()
    parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert _ISO_UTC.fullmatch(stamp)
    assert abs((datetime.datetime.now(datetime.UTC) - parsed).total_seconds()) < 5


class _CountingBuffer(io.BytesIO):
    """Counts the writes: lines of one event-loop iteration must arrive in one."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> int:
        self.writes += 1
        return super().write(data)


async def test_lines_of_one_loop_iteration_are_written_together(stream: _Stream) -> None:
    stream.buffer = _CountingBuffer()
    configure_logging("json", "info", stream=stream)
    logger = get_logger("test")
    for n in range(3):
        log_info(logger, "request", _fields(n=n))
    assert stream.lines() == []  # not before the iteration ends
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [orjson.loads(line)["n"] for line in stream.lines()] == [0, 1, 2]
    assert stream.buffer.writes == 1
    log_info(logger, "request", _fields(n=3))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [orjson.loads(line)["n"] for line in stream.lines()] == [0, 1, 2, 3]


def test_without_a_running_loop_the_line_is_written_at_once(stream: _Stream) -> None:
    configure_logging("json", "info", stream=stream)
    log_info(get_logger("test"), "request", _fields())
    assert len(stream.lines()) == 1


class _RecordingBuffer(io.BytesIO):
    """Keeps each write: a pipe shared by workers keeps only writes of <= PIPE_BUF whole."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return super().write(data)


async def test_a_batch_is_written_in_whole_lines_of_at_most_pipe_buf(stream: _Stream) -> None:
    buffer = stream.buffer = _RecordingBuffer()
    configure_logging("json", "info", stream=stream)
    logger = get_logger("test")
    for n in range(40):
        log_info(logger, "request", _fields(n=n, pad="x" * 300))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(buffer.chunks) > 1
    for chunk in buffer.chunks:
        assert len(chunk) <= select.PIPE_BUF and chunk.endswith(b"\n")
    assert [orjson.loads(line)["n"] for line in stream.lines()] == list(range(40))


async def test_structlog_lines_keep_their_place_among_request_lines(stream: _Stream) -> None:
    configure_logging("json", "info", stream=stream)
    logger = get_logger("test")
    log_info(logger, "request", _fields(n=0))
    logger.info("lifecycle", n=1)
    log_info(logger, "request", _fields(n=2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [orjson.loads(line)["n"] for line in stream.lines()] == [0, 1, 2]


# -- many workers, one pipe: each line is one write under PIPE_BUF ----------------------


def _read_some(fd: int, size: int) -> bytes:
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return b""


async def test_request_lines_of_two_workers_are_never_spliced(upstream: RunningServer) -> None:
    """Two workers share stderr (a pipe, as under a container runtime).

    A write() of at most PIPE_BUF (4096) bytes is kept whole by a pipe. Batching
    all the lines of an iteration into one larger write() would let the kernel
    put the other worker's bytes in the middle of it whenever the pipe is full
    (a slow log reader), and lines would come out cut in two and glued to the
    other worker's.
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
