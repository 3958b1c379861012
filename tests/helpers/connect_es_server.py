"""bridgetest.v1.TestService served by connect-es (tests/js/connect_server.cjs): a reference.

Envoy (tests/helpers/envoy_tools.py) only passes message bytes, so with the protobuf
Python upstream it cannot answer the JSON encodings. connect-es's own server
is the reference implementation of the Connect protocol, JSON, GET and
streams included (and of gRPC-Web), and it uses Connect's current HTTP status
table and bare detail type names, which Envoy 1.40 does not. It serves Echo,
Lookup, Fail, Sleep, EchoMetadata and ServerStream like tests/helpers/servers.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

from tests.helpers.js_clients import JS_DIR, descriptor_set, node_binary, node_modules


@dataclass
class ConnectEsServer:
    port: int
    #: Tags of Sleep / ServerStream calls that ran to the end, or were cancelled.
    completed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_for(
        self, which: Literal["completed", "cancelled"], tag: str, *, within: float = 10.0
    ) -> None:
        """Wait until ``tag`` shows up in ``completed`` or ``cancelled``."""
        tags = self.completed if which == "completed" else self.cancelled
        async with asyncio.timeout(within):
            while tag not in tags:
                self._changed.clear()
                await self._changed.wait()


async def _read_events(stdout: asyncio.StreamReader, server: ConnectEsServer) -> None:
    while line := await stdout.readline():
        event = json.loads(line)
        tags = server.completed if event.get("event") == "completed" else server.cancelled
        tags.append(event["tag"])
        server._changed.set()


@asynccontextmanager
async def running_connect_es(
    http_version: Literal["1.1", "2"] = "1.1",
) -> AsyncIterator[ConnectEsServer]:
    """The connect-es TestService on an ephemeral loopback port (``"2"``: h2c only)."""
    proc = await asyncio.create_subprocess_exec(
        node_binary(),
        str(JS_DIR / "connect_server.cjs"),
        str(descriptor_set()),
        http_version,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(node_modules())},
    )
    assert proc.stdout is not None
    reader: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):
            first = await proc.stdout.readline()
        if not first:
            raise AssertionError(f"connect_server.cjs exited {await proc.wait()} before listening")
        server = ConnectEsServer(port=int(json.loads(first)["port"]))
        reader = asyncio.create_task(_read_events(proc.stdout, server))
        yield server
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        if reader is not None:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader
