"""A long-running ``python -m grpc_bridge`` (``serve``, ``demo``) forked from the fork server.

:func:`spawn` gives what tests use of ``asyncio.subprocess.Process``: ``pid``,
``returncode``, ``stdout`` and ``stderr`` as stream readers (or None),
``send_signal``, ``terminate``, ``kill`` and ``wait``. The child is not the
test process's own: signals go to it by a pidfd (never to a pid the fork
server may have reaped already), and its exit status comes from the fork
server, which reaps it (tests/helpers/cli_forkserver.py).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import Sequence

from tests.helpers.cli_forkserver import Child, ForkServer, exit_code


class ForkedProcess:
    """A child of the fork server, seen as asyncio sees a process it started."""

    def __init__(
        self,
        child: Child,
        stdout: asyncio.StreamReader | None,
        stderr: asyncio.StreamReader | None,
    ) -> None:
        self.pid = child.pid
        self.returncode: int | None = None
        self.stdout = stdout
        self.stderr = stderr
        self._child = child
        self._ended = asyncio.create_task(self._exit_code())

    async def _exit_code(self) -> int:
        reader, writer = await asyncio.open_connection(sock=self._child.reply)
        try:
            line = await reader.readline()
        finally:
            self._child.ended()
            writer.close()
            await writer.wait_closed()
        self.returncode = exit_code(line)
        return self.returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    def send_signal(self, sig: int) -> None:
        # As asyncio's: nothing once the process ended.
        self._child.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


async def spawn(
    server: ForkServer, argv: Sequence[str], env: dict[str, str], *, stdout: bool, stderr: bool
) -> ForkedProcess:
    """``grpc_bridge ARGV`` started with stdin from /dev/null; stdout and stderr piped to
    this process where asked, else to /dev/null."""
    loop = asyncio.get_running_loop()
    ours: list[int | None] = []
    theirs: list[int] = [os.open(os.devnull, os.O_RDONLY)]
    for piped in (stdout, stderr):
        if piped:
            read, write = os.pipe()
            ours.append(read)
            theirs.append(write)
        else:
            ours.append(None)
            theirs.append(os.open(os.devnull, os.O_WRONLY))
    try:
        fds = (theirs[0], theirs[1], theirs[2])
        child = await asyncio.to_thread(server.start, argv, env, fds)
    except BaseException:
        for fd in ours:
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    readers: list[asyncio.StreamReader | None] = []
    for fd in ours:
        if fd is None:
            readers.append(None)
            continue
        reader = asyncio.StreamReader(limit=2**16)  # asyncio.subprocess's
        await loop.connect_read_pipe(
            functools.partial(asyncio.StreamReaderProtocol, reader),
            os.fdopen(fd, "rb", buffering=0),
        )
        readers.append(reader)
    return ForkedProcess(child, readers[0], readers[1])
