"""A long-lived helper process answering JSON requests, one line each way, for any event loop.

Tests run each in its own event loop, so the process is driven from threads: a
request is written under a lock, a reader thread matches each answer line to
its request by ``id`` and resolves that request's future in whichever loop
awaits it. stderr is drained continuously (a full pipe would block the
process) and its tail is quoted when the process dies.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import itertools
import json
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

Json = dict[str, Any]


class JsonLinesProcess:
    """``argv`` started on first use (again if it died), shared by every caller in this process."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], name: str) -> None:
        self._argv = list(argv)
        self._env = env
        self._name = name
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        # id -> (the process it was sent to, its answer)
        self._waiting: dict[
            int, tuple[subprocess.Popen[bytes], concurrent.futures.Future[Json]]
        ] = {}
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=200)
        atexit.register(self.close)

    async def request(self, payload: Json, *, timeout: float) -> Json:
        """``payload`` sent with a fresh ``id``; the answer line, parsed (without raising on it)."""
        future: concurrent.futures.Future[Json] = concurrent.futures.Future()
        with self._lock:
            proc = self._running()
            key = next(self._ids)
            self._waiting[key] = (proc, future)
            line = json.dumps({**payload, "id": key}).encode() + b"\n"
            assert proc.stdin is not None
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except OSError:
                pass  # the process died: its reader fails every waiting request
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            raise AssertionError(f"{self._name} did not answer within {timeout}s") from None
        finally:
            with self._lock:
                self._waiting.pop(key, None)

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
        )
        self._proc = proc
        self._readers = [
            threading.Thread(target=self._read_answers, args=(proc,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(proc,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        return proc

    def _read_answers(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:  # closed here: the pipe is this thread's
            for line in proc.stdout:
                answer: Json = json.loads(line)
                with self._lock:
                    _, future = self._waiting.pop(answer["id"], (proc, None))
                if future is not None and not future.done():
                    future.set_result(answer)
        code = proc.wait()
        tail = b"".join(self._stderr).decode(errors="replace")[-4000:]
        failure = AssertionError(f"{self._name} exited {code}: {tail}")
        with self._lock:
            for key, (sent_to, future) in list(self._waiting.items()):
                if sent_to is proc:
                    del self._waiting[key]
                    if not future.done():
                        future.set_exception(failure)

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with proc.stderr:
            for line in proc.stderr:
                self._stderr.append(line)

    def close(self) -> None:
        """End the process: its stdin closes, and it exits once its calls are answered; its
        pipes are closed when this returns (an unclosed one is a ResourceWarning, an error
        in the suite, once the process object is collected)."""
        proc, self._proc = self._proc, None
        readers, self._readers = self._readers, []
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join(10)
