"""``python -m grpc_bridge ARGS`` as a fork of a process that has already imported it.

A command-line run costs ~0.5 s of CPU to start Python and import the package,
and a few milliseconds to do its work; a bridge process ~0.8 s to start and
stop. The suite runs ~150 of the first and ~130 of the second. So each test
process (xdist worker) starts one fork server, ``python -m
tests.helpers.cli_forkserver``, which imports what ``python -m grpc_bridge``
imports for its commands, ``serve`` and ``demo`` included, and then forks once
per run. The child is a fresh process in every way a test can see: its own
pid, stdin, stdout and stderr on real pipes (``isatty`` false, ``fileno``
real), its own environment and working directory, ``grpc_bridge.cli.main`` run
as ``__main__`` runs it (and ended as the interpreter ends: threads joined,
``atexit`` handlers run), signals as a process started anew gets them, and its
exit status, which the fork server reads with ``waitpid`` and passes on as
asyncio does (a negative signal number for a child a signal killed). Nothing
the test process imported is in it: the fork server imports no test code (a
test's generated protos in the default descriptor pool would let the client
skip asking the server for them).

:meth:`ForkServer.run` runs a command to its end; :meth:`ForkServer.start` only
starts it (a bridge a test talks to, then stops with a signal:
tests/helpers/forked_process.py).

Signals go to a run by a pidfd (a handle on that one process, opened by the fork
server while the child is still unreaped and passed over the socket), never by
its pid: the fork server reaps a run as soon as it ends, and its pid may then be
another process's before the test process reads the exit code.

What the interpreter reads of the environment as it starts (``PYTHONPATH``,
``PYTHONDEVMODE``, ``PYTHONWARNINGS``, ``PYTHONHASHSEED``, ``PYTHONUTF8``,
``PYTHONPYCACHEPREFIX``...) is the fork server's: a run's own ``env`` is only
its ``os.environ``. :meth:`ForkServer.start` refuses a run whose ``PYTHON*``
variables differ from the fork server's; a test that needs its own starts a
real process (``asyncio.create_subprocess_exec(sys.executable, "-m",
"grpc_bridge", ...)``, as tests/test_docs.py does).
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
    # serve and openapi
    "grpc_bridge.app",
    "grpc_bridge.workers",
    "uvloop",
    # demo: its gRPC server (grpcio is imported, not started: a fork of it is safe)
    "grpc_bridge.demo.runner",
)


class Child:
    """A run the fork server started: its pid, the socket on which its exit code arrives,
    and the pidfd it is signalled by (None where the kernel has no pidfds)."""

    def __init__(self, pid: int, reply: socket.socket, pidfd: int | None) -> None:
        self.pid = pid
        self.reply = reply
        self.pidfd = pidfd
        self._ended = False

    def send_signal(self, sig: int) -> None:
        """``sig`` to the run; nothing once it ended, whoever has its pid by then."""
        if self._ended:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.pidfd is None:  # Linux < 5.3: by pid, as asyncio does
                os.kill(self.pid, sig)
            else:
                signal.pidfd_send_signal(self.pidfd, sig)

    def ended(self) -> None:
        """Its exit code arrived (or the fork server went away): nothing more to signal."""
        self._ended = True
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


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
        if stdin is None:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), None
        else:
            in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            child = self.start(argv, env, (in_r, out_w, err_w))
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
        threads = [threading.Thread(target=_drain, args=(fd, chunks[fd])) for fd in chunks]
        if in_w is not None:
            threads.append(threading.Thread(target=_feed, args=(in_w, stdin or b"")))
        for thread in threads:
            thread.start()
        child.reply.settimeout(timeout)
        try:
            code = exit_code(_line_and_fds(child.reply)[0])
        except TimeoutError:
            child.send_signal(signal.SIGKILL)
            raise AssertionError(f"grpc_bridge {' '.join(argv)} ran over {timeout}s") from None
        finally:
            child.ended()
            for thread in threads:
                thread.join(timeout)
            child.reply.close()
        return code, b"".join(chunks[out_r]), b"".join(chunks[err_r])

    def start(self, argv: Sequence[str], env: dict[str, str], fds: tuple[int, int, int]) -> Child:
        """Fork ``grpc_bridge ARGV`` with ``fds`` as its stdin, stdout and stderr (the caller
        keeps its copies). Its exit code arrives on ``reply``, as a line, once it ended (EOF
        instead if the fork server ended first); the caller then calls ``ended()``."""
        startup = {k: v for k, v in env.items() if k.startswith("PYTHON")}
        if startup != {k: v for k, v in self._env.items() if k.startswith("PYTHON")}:
            raise AssertionError(
                f"a forked run takes the fork server's PYTHON* variables, not {startup}:"
                " start a real process for this one"
            )
        reply, theirs = socket.socketpair()
        try:
            with self._lock:
                socket.send_fds(self._running(), [b"r"], [theirs.fileno(), *fds])
        finally:
            theirs.close()
        request = {"argv": list(argv), "env": env, "cwd": os.getcwd()}
        reply.sendall(json.dumps(request).encode() + b"\n")
        reply.settimeout(30)
        line, pidfds = _line_and_fds(reply)
        try:
            pid = int(line)
        except ValueError:  # no pid line: the fork server ended (it is started anew next time)
            reply.close()
            raise AssertionError(f"the fork server did not start grpc_bridge {argv}") from None
        reply.settimeout(None)
        return Child(pid, reply, pidfds[0] if pidfds else None)

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


def exit_code(line: bytes) -> int:
    """A run's exit code from its reply line, as asyncio reports one (negative: the signal
    that killed it). No line: the fork server ended first, killing what still ran."""
    return int(line) if line.strip() else -signal.SIGKILL


def _line_and_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One line read byte by byte (nothing after it is taken out of the socket), and the
    file descriptors that came with it."""
    line, fds = bytearray(), []
    while True:
        byte, got, _, _ = socket.recv_fds(sock, 1, 1)
        for fd in got:  # (recv_fds takes them inheritable: not for the test's other children)
            os.set_inheritable(fd, False)
        fds += got
        if not byte or byte == b"\n":
            return bytes(line), fds
        line += byte


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
    # Each child's reply socket, to which its exit code is written once it is reaped.
    # Reaped here (not SIG_IGN): a child's CPU time then counts in this process's
    # children, and this process is waited for by the test process at its exit.
    running: dict[int, socket.socket] = {}
    signal.signal(signal.SIGCHLD, lambda *_: _reap(running))
    while True:
        message, fds, _, _ = socket.recv_fds(control, 16, 4)
        if not message:  # the test process is ending: let the last runs finish
            _end(running)
            return
        reply = socket.socket(fileno=fds[0])
        # A child that ends at once is reaped only once it is in ``running``.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                control.close()
                for other in running.values():
                    other.close()
                _child(reply, *fds[1:])
            running[pid] = reply
            # Opened while SIGCHLD is blocked: the child is not reaped, so the pid is its.
            pidfd = _pidfd_open(pid)
            with contextlib.suppress(OSError):
                socket.send_fds(reply, [f"{pid}\n".encode()], [] if pidfd is None else [pidfd])
            if pidfd is not None:
                os.close(pidfd)
        finally:
            for fd in fds[1:]:
                os.close(fd)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:  # Linux < 5.3
        return None


def _reap(running: dict[int, socket.socket]) -> bool:
    """Reap the children that ended and tell each one's caller; whether any still runs."""
    try:
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if not pid:
                return True
            if (reply := running.pop(pid, None)) is not None:
                with contextlib.suppress(OSError):
                    reply.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                reply.close()
    except ChildProcessError:
        return False


def _end(running: dict[int, socket.socket]) -> None:
    """The runs still going get 10 s to end, then SIGKILL (a bridge no test stopped)."""
    # Reaped here only from now on: a pid still in ``running`` is that unreaped child's.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _reap(running):
        time.sleep(0.05)
    for pid in list(running):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    while _reap(running):
        time.sleep(0.05)


def _child(reply: socket.socket, stdin_fd: int, stdout_fd: int, stderr_fd: int) -> None:
    with reply, reply.makefile("rb") as lines:
        request = json.loads(lines.readline())
    for fd, target in ((stdin_fd, 0), (stdout_fd, 1), (stderr_fd, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [str(ROOT / "grpc_bridge" / "__main__.py"), *request["argv"]]
    code = 1
    interrupted = False
    try:
        from grpc_bridge.cli import main

        code = main(request["argv"])
    except SystemExit as exc:  # what the interpreter makes of it at exit
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        interrupted = isinstance(exc, KeyboardInterrupt)
    # As the interpreter ends: non-daemon threads joined, then the atexit handlers
    # (grpc_bridge.log writes the lines of the loop's last iteration there).
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    if interrupted:
        # As the interpreter ends on a KeyboardInterrupt nothing caught: killed by SIGINT,
        # so that its parent (a shell, asyncio: -2) sees the signal, not an exit code.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        os.kill(os.getpid(), signal.SIGINT)
        code = 128 + signal.SIGINT  # the interpreter's too, were the signal not to kill
    os._exit(code & 0xFF)


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
