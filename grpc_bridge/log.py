"""structlog set-up: JSON lines in production, readable console output on a TTY."""

from __future__ import annotations

import asyncio
import atexit
import datetime
import json
import logging
import select
import sys
import threading
import time
from typing import Any, TextIO

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _dumps(obj: Any, default: Any = None) -> bytes:
    try:
        return orjson.dumps(obj, default=default or str)
    except orjson.JSONEncodeError:
        # A str orjson refuses (lone surrogates: header bytes aiohttp decoded with
        # surrogateescape); the line must still be written, with them escaped.
        return json.dumps(obj, default=default or str, ensure_ascii=False).encode(
            "utf-8", "backslashreplace"
        )


class _UtcStamp:
    """Now as ``TimeStamper(fmt="iso", utc=True)`` writes it, at under half the cost.

    ``datetime.now(utc).isoformat()`` is ~1.3 µs; the date and time of day change
    once a second, so they are formatted once a second and the microseconds added.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self) -> str:
        # Floor to microseconds, as datetime.now() rounds the same clock.
        return self.at(time.time_ns() // 1000)

    def at(self, microseconds: int) -> str:
        second, micro = divmod(microseconds, 1_000_000)
        if second != self._second:
            start = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self._prefix = start.isoformat().removesuffix("+00:00")
            self._second = second
        # isoformat() leaves the fraction out when it is zero.
        return f"{self._prefix}.{micro:06d}Z" if micro else f"{self._prefix}Z"


#: A write of at most this many bytes reaches a pipe in one piece even while other
#: processes (the workers) write to the same pipe (POSIX PIPE_BUF: 4096 on Linux).
_ATOMIC_WRITE = getattr(select, "PIPE_BUF", 512)


class _LineBatch:
    """The JSON lines of one event-loop iteration, written and flushed together at its end.

    Under load that is one ``write`` for many requests instead of one each,
    and the pipe's reader (the container runtime) wakes up once for them;
    Envoy buffers its access log for a second, this holds a line only until
    the iteration ends. Every JSON line goes through it, the request lines and
    structlog's alike, so they keep the order they were logged in. The writes
    are cut at line ends into pieces of at most PIPE_BUF bytes: with
    ``--workers`` several processes share the pipe, and only such writes are
    never interleaved with another writer's. Without a running loop (start-up,
    another thread) a line is written at once, after any still pending.
    """

    __slots__ = ("_binary", "_lock", "_pending")

    def __init__(self, binary: Any) -> None:
        self._binary = binary
        self._pending: list[bytes] = []
        self._lock = threading.Lock()

    def add(self, line: bytes) -> None:
        with self._lock:
            pending = self._pending
            pending.append(line)
            if len(pending) > 1:
                return  # a flush is scheduled already
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            if not lines:
                return
            write, flush = self._binary.write, self._binary.flush
            piece: list[bytes] = []
            size = 0
            for line in lines:
                if piece and size + len(line) >= _ATOMIC_WRITE:
                    piece.append(b"")
                    write(b"\n".join(piece))
                    flush()
                    piece, size = [], 0
                piece.append(line)
                size += len(line) + 1
            piece.append(b"")
            write(b"\n".join(piece))
            flush()


class _BatchedBytesLogger:
    """structlog's ``BytesLogger``, writing through the batch instead of straight to the stream."""

    __slots__ = ("_batch",)

    def __init__(self, batch: _LineBatch) -> None:
        self._batch = batch

    def msg(self, message: bytes) -> None:
        self._batch.add(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _DirectJson:
    """The JSON configuration's processors, applied without structlog's bound-logger machinery.

    ``log.info(event, **kw)`` copies the keywords into a fresh dict, runs all six
    processors and goes through a lazy proxy: ~8 µs in a warm loop and ~20 µs
    per request in the server, for the one line every request writes. This runs
    the processors that do anything (the stack-info and exc-info ones only pop
    keys the request line never has) on the caller's dict, and hands the same
    bytes to the same line batch; the timestamp comes from :class:`_UtcStamp`.
    """

    __slots__ = ("_batch", "_chain", "_configured", "_renderer", "_stamp")

    def __init__(self, processors: list[Any], renderer: Any, batch: _LineBatch) -> None:
        self._configured = processors
        self._chain = list(processors)
        self._stamp = _UtcStamp()
        self._renderer = renderer
        self._batch = batch

    def active(self) -> bool:
        # structlog.testing.capture_logs swaps the processors in place: structlog then logs.
        # (Only configure_logging() configures structlog in this process otherwise.)
        return self._configured == self._chain

    def info(self, event: str, fields: dict[str, Any]) -> None:
        fields["event"] = event
        structlog.contextvars.merge_contextvars(None, "info", fields)
        fields["level"] = "info"
        fields["timestamp"] = self._stamp()
        self._batch.add(self._renderer(None, "info", fields))


_batch: _LineBatch | None = None


@atexit.register
def _flush_at_exit() -> None:
    # Lines of the last iteration, if the loop stopped before running its flush.
    if _batch is not None:
        _batch.flush()


_direct: _DirectJson | None = None


def log_info(logger: Any, event: str, fields: dict[str, Any]) -> None:
    """``logger.info(event, **fields)`` for hot paths: the same line, cheaper in JSON mode.

    ``fields`` is consumed (the event, level and timestamp are added to it).
    """
    direct = _direct
    if direct is not None and direct.active():
        direct.info(event, fields)
    else:
        logger.info(event, **fields)


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for the process; called once by the CLI (tests keep the defaults)."""
    global _batch, _direct
    if _batch is not None:
        _batch.flush()
    _batch = _direct = None
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    logger_factory: Any
    if console:
        processors += [
            structlog.processors.StackInfoRenderer(),
            structlog.dev.ConsoleRenderer(colors=out.isatty()),
        ]
        logger_factory = structlog.PrintLoggerFactory(out)
    else:
        # Bytes straight from orjson to the binary stream: no str round trip per line,
        # which matters for the one canonical line every request writes.
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        processors += [
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ]
        binary: Any = out.buffer if hasattr(out, "buffer") else out
        batch = _batch = _LineBatch(binary)
        logger_factory = lambda *args: _BatchedBytesLogger(batch)  # noqa: E731
        if _LEVELS[level] <= logging.INFO:
            _direct = _DirectJson(processors, renderer, batch)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=logger_factory,
        # Module-level loggers resolve their configuration once instead of per call.
        cache_logger_on_first_use=True,
    )
    # aiohttp's access log would duplicate the canonical request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
