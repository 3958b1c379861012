"""Run ``grpc-bridge`` as a real process and read its JSON log lines."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.helpers import forked_process
from tests.helpers.cli_forkserver import ForkServer
from tests.helpers.forked_process import ForkedProcess


def serve_args(upstream: str, *extra: str, port: int | str = 0) -> tuple[str, ...]:
    """``serve`` on loopback with an ephemeral admin port and JSON logs (which tests read)."""
    return (
        *("serve", "--upstream", upstream, "--host", "127.0.0.1", "--port", str(port)),
        *("--admin-port", "0", "--log-format", "json", *extra),
    )


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def free_port() -> int:
    """A loopback port nothing listens on (for an upstream started later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Where the processes tests start keep their bytecode when the test's environment
#: turns caching off (PYTHONDONTWRITEBYTECODE): each ``python -m grpc_bridge`` would
#: otherwise compile the package anew, ~0.1 s of CPU per process, hundreds of them in
#: the suite. Outside the source tree, so the tree stays as clean as that setting wants.
PYCACHE = Path(tempfile.gettempdir()) / f"grpc-bridge-tests-pycache-{os.getuid()}"


def bridge_env(**extra: str) -> dict[str, str]:
    """The test's environment without GRPC_BRIDGE_* or OTEL_* (tracing), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRPC_BRIDGE_", "OTEL_"))}
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    env.update(extra)
    return env


@dataclass
class BridgeProcess:
    """A bridge process whose stderr is read continuously.

    The reader never stops: a busy bridge writes a log line per request, and a
    pipe nobody empties fills up (64 KiB) and blocks the process. The process is
    a fork of the fork server (tests/helpers/forked_process.py): ~0.1 s of CPU
    to start rather than ~0.8 s.
    """

    proc: ForkedProcess
    events: list[dict[str, Any]] = field(default_factory=list)
    proxy_port: int = 0
    admin_port: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> BridgeProcess:
        """Spawn and wait until it listens; ports are read from its ``listening`` line."""
        bp = await cls.spawn(*args, env=env)
        event = await bp.wait_for("listening")
        bp.proxy_port = int(event["proxy"].rsplit(":", 1)[1])
        bp.admin_port = int(event["admin"].rsplit(":", 1)[1])
        return bp

    @classmethod
    async def spawn(cls, *args: str, env: dict[str, str] | None = None) -> BridgeProcess:
        bp = cls(await spawn_forked(*args, env=env, stderr=True))
        bp._reader = asyncio.create_task(bp._read())
        return bp

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            with contextlib.suppress(orjson.JSONDecodeError):
                event = orjson.loads(line)
                if isinstance(event, dict):
                    self.events.append(event)
            async with self._changed:
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for event in self.events:
                    if event.get("event") == name:
                        return dict(event)
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"process exited before logging {name!r}: {self.events}")
                await self._changed.wait()

    async def wait_until(
        self, ready: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> None:
        """Until ``ready(events)`` holds (checked as each log line arrives)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: ready(self.events))

    async def drain_logs(self) -> None:
        """Until the process closed its stderr (it exited): every line is in ``events``."""
        if self._reader is not None:
            async with asyncio.timeout(20):
                await self._reader

    async def wait(self, timeout: float = 20.0) -> int:
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(20):
            code = await self.proc.wait()
        await self.drain_logs()
        return code


@functools.cache
def _fork_server() -> ForkServer:
    return ForkServer(bridge_env())


def close_fork_server() -> None:
    if _fork_server.cache_info().currsize:
        _fork_server().close()


async def run_forked(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``python -m grpc_bridge ARGS`` run to its end: (exit code, stdout, stderr).

    A fork of a process that has imported grpc_bridge already
    (tests/helpers/cli_forkserver.py), with its own pipes, environment (default
    :func:`bridge_env`) and exit code; stdin is ``stdin``, or /dev/null.
    """
    code, out, err = await asyncio.to_thread(
        _fork_server().run, args, stdin, env or bridge_env(), 60.0
    )
    return code, out.decode(), err.decode()


async def spawn_forked(
    *args: str, env: dict[str, str] | None = None, stdout: bool = False, stderr: bool = False
) -> ForkedProcess:
    """``python -m grpc_bridge ARGS`` started (a fork, as :func:`run_forked`'s), stdin from
    /dev/null, stdout and stderr piped where asked (else /dev/null)."""
    return await forked_process.spawn(
        _fork_server(), args, bridge_env() if env is None else env, stdout=stdout, stderr=stderr
    )


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await run_forked(*args, env=env)


async def spawn_demo(env: dict[str, str] | None = None) -> ForkedProcess:
    """``grpc-bridge demo`` on ephemeral ports, its stdout (ports and curl lines) piped.

    ``env``: the whole environment (default :func:`bridge_env`).
    """
    return await spawn_forked("demo", "--port", "0", "--admin-port", "0", env=env, stdout=True)


_DEMO_BANNER = re.compile(
    r"on 127\.0\.0\.1:(\d+), bridge on 127\.0\.0\.1:(\d+) \(admin (\d+)\)",
)


@contextlib.asynccontextmanager
async def demo_process(
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[ForkedProcess, dict[str, int]]]:
    """:func:`spawn_demo` once it printed its ports (proxy, admin, grpc); stopped by SIGINT.

    The process's stdout is left where the banner ended, for a test that reads on.
    """
    proc = await spawn_demo(env)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "demo exited early"
                match = _DEMO_BANNER.search(line)
                if match:
                    grpc, proxy, admin = map(int, match.groups())
                    break
        yield proc, {"proxy": proxy, "admin": admin, "grpc": grpc}
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await proc.wait()


@contextlib.asynccontextmanager
async def running_demo() -> AsyncIterator[dict[str, int]]:
    """``grpc-bridge demo`` on ephemeral ports, once it printed them (proxy, admin, grpc)."""
    async with demo_process() as (_, ports):
        yield ports


def expected_status(command: str) -> str:
    """Documented curl lines succeed, except the ones showing a not-found error."""
    return "404" if '"404"' in command else "200"


async def curl_status(command: str) -> str:
    """Run a curl command line as documented; the HTTP status it got."""
    curl = await asyncio.create_subprocess_shell(
        command + " -o /dev/null -w '%{http_code}'", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await curl.communicate()
    return out.decode()
