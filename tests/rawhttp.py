"""Exact request bytes to a real bridge process, on either HTTP path (lean or aiohttp only).

For hostile-input tests: the bytes sent are exactly the ones written here
(no client library normalizes a path or refuses a header name), and every
test runs against ``python -m grpc_bridge`` with ``listen.fast_path`` on and off.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.process import BridgeProcess, bridge_env, serve_args

#: ``lean`` parametrisation: the lean HTTP/1.1 path on (the default) and off.
PATHS = ("lean", "aiohttp")

Response = tuple[int, dict[str, list[str]], bytes]


@asynccontextmanager
async def bridge_on(
    upstream: str | None,
    path: str,
    *extra: str,
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[BridgeProcess]:
    """A bridge process, ``path`` one of :data:`PATHS`, once it discovered its methods.

    ``upstream`` is a target for ``--upstream``; or None, with ``config``
    (a YAML configuration as a dict) giving the upstreams.
    """
    fast = "true" if path == "lean" else "false"
    with tempfile.TemporaryDirectory() as directory:
        args: tuple[str, ...]
        if upstream is not None:
            args = serve_args(upstream, *extra)
        else:
            args = ("serve", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0")
            args += ("--log-format", "json", *extra)
        if config is not None:
            file = Path(directory) / "bridge.yaml"
            file.write_text(yaml.safe_dump(config))
            args += ("--config", str(file))
        bridge = await BridgeProcess.start(
            *args, env=bridge_env(GRPC_BRIDGE_LISTEN__FAST_PATH=fast, **(env or {}))
        )
        try:
            await bridge.wait_for("discovered")
            yield bridge
        finally:
            await bridge.stop()


def request(method: str, target: str, body: bytes | None = None, *headers: str) -> bytes:
    """One HTTP/1.1 request; a body gets a JSON Content-Type and its Content-Length."""
    head = [f"{method} {target} HTTP/1.1", "Host: bridge"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    head += headers
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Status, headers (lower-case name → every value, in order) and the body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"][0]))
    elif "chunked" in headers.get("transfer-encoding", [""])[0]:
        body = b""
        while (size := int((await reader.readline()).strip(), 16)) != 0:
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    else:
        body = await reader.read()
    return status, headers, body


async def exchange(bridge: BridgeProcess, data: bytes) -> Response:
    """Send ``data`` on a new connection; the one response to it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.proxy_port)
    try:
        writer.write(data)
        async with asyncio.timeout(10):
            return await read_response(reader)
    finally:
        writer.close()
        await writer.wait_closed()


def request_logs(bridge: BridgeProcess) -> list[dict[str, object]]:
    """The bridge's ``request`` log lines so far."""
    return [e for e in bridge.events if e.get("event") == "request"]


async def next_request_log(bridge: BridgeProcess, seen: int = 0) -> dict[str, object]:
    """The ``request`` log line after the first ``seen`` (written once the answer is sent)."""
    await bridge.wait_until(lambda _: len(request_logs(bridge)) > seen, timeout=10)
    return request_logs(bridge)[seen]
