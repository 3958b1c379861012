"""Request messages from ``-d``: JSON documents split off text as it arrives.

One document per line (NDJSON) is the normal form for request streams, but a
document may span lines (an indented object from a heredoc, as in grpcurl's
README): a document ends at the end of the line where its brackets balance.
Each document is bounded as it is read, not after.

stdin is read on a daemon thread, line by line, so a bidi call sends each
line as it is typed and an unfinished read never keeps the process alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

__all__ = ["InputError", "documents", "lines_from"]

#: The largest JSON document accepted for one request message.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 64 * 1024


class InputError(Exception):
    """The request data is unusable (the message says where)."""


class _Splitter:
    """Tracks brackets and strings across lines to tell where a document ends."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def scan(self, line: str) -> None:
        for char in line:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1

    @property
    def balanced(self) -> bool:
        return self.depth <= 0 and not self.in_string


async def documents(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Complete JSON documents (as text) from ``lines``; raises InputError for a cut-off one."""
    splitter = _Splitter()
    parts: list[str] = []
    size = 0
    started_at = 0
    number = 0
    async for line in lines:
        number += 1
        if not parts and not line.strip():
            continue
        if not parts:
            started_at = number
        parts.append(line)
        size += len(line)
        if size > MAX_DOCUMENT_BYTES:
            raise InputError(
                f"the JSON document starting on line {started_at} is over "
                f"{MAX_DOCUMENT_BYTES} bytes"
            )
        splitter.scan(line)
        if splitter.balanced:
            yield "".join(parts)
            parts, size, splitter = [], 0, _Splitter()
    if parts and "".join(parts).strip():
        raise InputError(f"the JSON document starting on line {started_at} is incomplete")


async def lines_from(data: str | None) -> AsyncIterator[str]:
    """The lines of ``-d``: a literal, ``@FILE``, or ``@-`` / ``@`` for stdin."""
    if data is None:
        return
    if data in ("@", "@-"):
        async for line in _stdin_lines(sys.stdin.fileno()):
            yield line
        return
    text = _read_file(data[1:]) if data.startswith("@") else data
    for line in _split(text):
        yield line


def _split(text: str) -> Iterable[str]:
    return text.splitlines(keepends=True)


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text("utf-8")
    except OSError as exc:
        raise InputError(f"-d @{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"-d @{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


async def _stdin_lines(fd: int) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=64)

    def put(item: bytes | BaseException) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def pump() -> None:
        # os.read on the descriptor, not sys.stdin.buffer: a daemon thread blocked
        # inside BufferedReader holds its lock, and the interpreter aborts at exit
        # (Ctrl-C or a finished call while stdin is still open) when it can't take it.
        pending = b""
        try:
            while chunk := os.read(fd, _READ_CHUNK):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    put(line + b"\n")
                if len(pending) > MAX_DOCUMENT_BYTES:
                    put(pending)  # the document splitter reports it as too large
                    pending = b""
            if pending:
                put(pending)
            put(b"")
        except BaseException as exc:  # handed to the reader, which raises it
            with contextlib.suppress(BaseException):
                put(exc)

    # Ctrl-C is the main thread's: the kernel hands a process's SIGINT to any thread that
    # does not block it, and taken by this one it only interrupted the read, while the
    # event loop, whose handler cancels the call, slept on (seen: the call went on).
    # The thread is born with SIGINT blocked (a new thread takes its creator's mask);
    # one arriving meanwhile waits for the main thread to unblock it.
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        threading.Thread(target=pump, name="stdin", daemon=True).start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
    while True:
        item = await queue.get()
        if isinstance(item, BaseException):
            raise InputError(f"cannot read stdin: {item}") from item
        if not item:
            return
        try:
            yield item.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"stdin is not UTF-8 text ({exc.reason})") from exc
