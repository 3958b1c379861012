"""The test suite's fork server ends and signals its runs as a process started anew would be.

A forked ``python -m grpc_bridge`` (tests/helpers/cli_forkserver.py) reports the
exit status asyncio reports for a real one, and a signal sent to a run that
already ended reaches nobody, whoever has its pid by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from tests.helpers.process import spawn_forked


@contextlib.asynccontextmanager
async def _silent_upstream() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A TCP listener that accepts and never answers: ``openapi`` against it waits for
    discovery (inside ``main()``, on its event loop) once ``connected`` is set."""
    connected = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield f"127.0.0.1:{port}", connected


async def _signalled_while_discovering(sig: signal.Signals) -> int:
    async with _silent_upstream() as (target, connected):
        proc = await spawn_forked("openapi", "--upstream", target, "--timeout", "60", stderr=True)
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            await connected.wait()
        proc.send_signal(sig)
        async with asyncio.timeout(30):
            await proc.stderr.read()
            return await proc.wait()


async def test_a_run_a_signal_kills_reports_minus_the_signal() -> None:
    """``openapi`` does not handle SIGTERM: the run dies by it, and reports -15."""
    assert await _signalled_while_discovering(signal.SIGTERM) == -signal.SIGTERM


async def test_a_keyboard_interrupt_out_of_main_ends_the_run_by_sigint() -> None:
    """SIGINT makes asyncio's runner raise KeyboardInterrupt out of ``main()``; the
    interpreter then kills itself by SIGINT (-2), and so does the fork."""
    assert await _signalled_while_discovering(signal.SIGINT) == -signal.SIGINT


def _pidfd_pid(pidfd: int) -> int:
    """The pid a pidfd names, as the kernel shows it (-1 once that process is reaped)."""
    for line in Path(f"/proc/self/fdinfo/{pidfd}").read_text().splitlines():
        if line.startswith("Pid:"):
            return int(line.split()[1])
    raise AssertionError(f"fd {pidfd} is not a pidfd")


async def test_signalling_a_run_that_ended_reaches_no_other_process() -> None:
    """A run is signalled by a pidfd on that process: once the fork server reaped it
    (its pid free for another process) the pidfd names nobody; once its exit code
    arrived, nothing is sent at all."""
    proc = await spawn_forked("version", stdout=True)
    child = proc._child
    assert child.pidfd is not None and _pidfd_pid(child.pidfd) in (proc.pid, -1)
    pidfd = os.dup(child.pidfd)  # kept past the exit code, when the run closes its own
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            assert (await proc.stdout.read()).strip()
            assert await proc.wait() == 0
        assert child.pidfd is None
        assert _pidfd_pid(pidfd) == -1  # reaped: the pid may be anyone's now
        for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            proc.send_signal(sig)
        proc.kill()
        proc.terminate()
        assert proc.returncode == 0
    finally:
        os.close(pidfd)
