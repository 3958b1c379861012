"""``python -m grpc_bridge ARGS`` as a fork of a process that has already imported it.

A command-line run costs ~0.5 s of CPU to start Python and import the package,
and a few milliseconds to do its work; the suite runs ~150 of them. So each
test process (xdist worker) starts one fork server, ``python -m
tests.helpers.cli_forkserver``, which imports what ``python -m grpc_bridge``
and the client commands import, and then forks once per run. The child is a
fresh process in every way a test can see: its own pid, stdin, stdout and
stderr on real pipes (``isatty`` false, ``fileno`` real), its own environment
and working directory, ``grpc_bridge.cli.main`` run as ``__main__`` runs it,
and its exit code. Nothing the test process imported is in it: the fork server
imports no test code (a test's generated protos in the default descriptor pool
would let the client skip asking the server for them).

A run whose child was killed (or crashed) reports exit code -1.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What ``python -m grpc_bridge`` imports, and what the client commands import
#: when they run (a module missing here is imported by the child, as usual).
PRELOAD = (
    "grpc_bridge.cli",
    "grpc_bridge.client.session",
    "grpc_bridge.client.invoke",
    "grpc_bridge.client.connection",
    "grpc_bridge.client.requests",
    "grpc_bridge.client.protoprint",
    "grpc_bridge.openapi_command",
    "grpc_bridge.log",
    # serve (the runs that end early: a busy port, a bad config) and openapi
    "grpc_bridge.app",
    "grpc_bridge.workers",
)


class ForkServer:
    """The fork server of this process, started on first use (again if it died)."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    def run(
        self,
        argv: Sequence[str],
        stdin: bytes | None,
        env: dict[str, str],
        timeout: float,
    ) -> tuple[int, bytes, bytes]:
        """``grpc_bridge ARGV`` run to its end: (exit code, stdout, stderr). Blocks the thread."""
        reply, theirs = socket.socketpair()
        if stdin is None:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), None
        else:
            in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            with self._lock:
                socket.send_fds(self._running(), [b"r"], [theirs.fileno(), in_r, out_w, err_w])
        finally:
            theirs.close()
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        request = {"argv": list(argv), "env": env, "cwd": os.getcwd()}
        reply.sendall(json.dumps(request).encode() + b"\n")
        chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
        threads = [threading.Thread(target=_drain, args=(fd, chunks[fd])) for fd in chunks]
        if in_w is not None:
            threads.append(threading.Thread(target=_feed, args=(in_w, stdin or b"")))
        for thread in threads:
            thread.start()
        lines = reply.makefile("rb")
        reply.settimeout(timeout)
        pid = 0
        try:
            pid = int(lines.readline() or 0)
            code = int(lines.readline() or -1)
        except TimeoutError:
            if pid:
                os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"grpc_bridge {' '.join(argv)} ran over {timeout}s") from None
        finally:
            for thread in threads:
                thread.join(timeout)
            lines.close()
            reply.close()
        return code, b"".join(chunks[out_r]), b"".join(chunks[err_r])

    def close(self) -> None:
        """End the fork server (it lets the runs in flight finish first)."""
        control, proc, self._control, self._proc = self._control, self._proc, None, None
        if control is None or proc is None:
            return
        control.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _running(self) -> socket.socket:
        if self._control is not None and self._proc is not None and self._proc.poll() is None:
            return self._control
        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.cli_forkserver", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=self._env,
            cwd=ROOT,
        )
        theirs.close()
        self._control = ours
        return ours


def _drain(fd: int, into: list[bytes]) -> None:
    with open(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            into.append(chunk)


def _feed(fd: int, data: bytes) -> None:
    # The command may end without reading it all, as a process may.
    with open(fd, "wb", buffering=0) as pipe, contextlib.suppress(BrokenPipeError):
        view = memoryview(data)
        while view:
            view = view[pipe.write(view) or 0 :]


def _serve(control: socket.socket) -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # Reaped here (not SIG_IGN): a child's CPU time then counts in this process's
    # children, and this process is waited for by the test process at its exit.
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        message, fds, _, _ = socket.recv_fds(control, 16, 4)
        if not message:  # the test process is ending: let the last runs finish
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _reap():
                time.sleep(0.05)
            return
        if os.fork() == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _child(*fds)
        for fd in fds:
            os.close(fd)


def _reap(*_: object) -> bool:
    """Reap the children that ended; whether any is still running."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        return False
    return True


def _child(reply_fd: int, stdin_fd: int, stdout_fd: int, stderr_fd: int) -> None:
    reply = socket.socket(fileno=reply_fd)
    request = json.loads(reply.makefile("rb").readline())
    for fd, target in ((stdin_fd, 0), (stdout_fd, 1), (stderr_fd, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [str(ROOT / "grpc_bridge" / "__main__.py"), *request["argv"]]
    reply.sendall(f"{os.getpid()}\n".encode())
    code = 1
    try:
        from grpc_bridge.cli import main

        code = main(request["argv"])
    except SystemExit as exc:  # what the interpreter makes of it at exit
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    reply.sendall(f"{code & 0xFF}\n".encode())
    os._exit(code & 0xFF)


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
