"""Raw HTTP/1.1 against real bridge processes: exact bytes in, the answer (or its absence) out.

For hostile-client tests: the bytes are written as given (no client library
normalizes a path, refuses a header name or fixes up framing), against
``python -m grpc_bridge`` with ``listen.fast_path`` on and off, so a test can
require the same answer from both HTTP paths.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.helpers.process import BridgeProcess, bridge_env, serve_args

#: ``lean`` parametrisation: the lean HTTP/1.1 path on (the default) and off.
PATHS = ("lean", "aiohttp")

#: Status, headers (lower-case name → every value, in order) and the body.
Response = tuple[int, dict[str, list[str]], bytes]

#: (status, lower-case headers, body), or "eof" (closed without an answer) / "timeout".
Answer = tuple[int, dict[str, str], bytes] | str

SLEEP = "/bridgetest.v1.TestService/Sleep"
ECHO = "/bridgetest.v1.TestService/Echo"
CLIENT_STREAM = "/bridgetest.v1.TestService/ClientStream"
FAIL = "/bridgetest.v1.TestService/Fail"


def request(
    method: str, target: str, body: bytes | None = None, *headers: str, json: bool = True
) -> bytes:
    """One HTTP/1.1 request; a body gets its Content-Length (and a JSON Content-Type unless
    ``json`` is false), no body gets neither."""
    head = [f"{method} {target} HTTP/1.1", "Host: bridge"]
    if body is not None:
        head += ["Content-Type: application/json"] if json else []
        head.append(f"Content-Length: {len(body)}")
    head += headers
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


def raw_request(path: str, body: bytes, *extra: str, length: bool = True) -> bytes:
    """A POST with a JSON Content-Type; ``length``: a Content-Length for ``body``."""
    if length:
        return request("POST", path, body, *extra)
    return request("POST", path, None, "Content-Type: application/json", *extra) + body


async def read_head_lists(reader: asyncio.StreamReader) -> tuple[int, dict[str, list[str]]]:
    """Status and headers (lower-case name → every value, in order) of one response."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """:func:`read_head_lists` with one value per header (the last)."""
    status, headers = await read_head_lists(reader)
    return status, {name: values[-1] for name, values in headers.items()}


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body (b"" for the last)."""
    size = int((await reader.readline()).strip(), 16)
    data = await reader.readexactly(size) if size else b""
    await reader.readline()
    return data


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Status, headers (lower-case name → every value, in order) and the body."""
    status, headers = await read_head_lists(reader)
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"][0]))
    elif "chunked" in headers.get("transfer-encoding", [""])[0].lower():
        body = b""
        while chunk := await read_chunk(reader):
            body += chunk
    else:
        body = await reader.read()
    return status, headers, body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """:func:`read_response` with one value per header (the last)."""
    status, headers, body = await read_response(reader)
    return status, {name: values[-1] for name, values in headers.items()}, body


async def response_to(bridge: BridgeProcess, data: bytes) -> Response:
    """Send ``data`` to the proxy port on a new connection; the one response to it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.proxy_port)
    try:
        writer.write(data)
        async with asyncio.timeout(10):
            return await read_response(reader)
    finally:
        writer.close()
        await writer.wait_closed()


async def exchange(port: int, data: bytes, within: float = 10.0) -> Answer:
    """Send ``data`` on a new connection; the first answer, or what happened instead."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(within):
            return await read_answer(reader)
    except (asyncio.IncompleteReadError, ConnectionResetError, ValueError, IndexError):
        return "eof"
    except TimeoutError:
        return "timeout"
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()


_STAMP = re.compile(rb'"requestId"\s*:\s*"[^"]*"')


def comparable(answer: Answer) -> Any:
    """An answer without what differs between any two (request id, Date)."""
    if isinstance(answer, str):
        return answer
    status, headers, body = answer
    fixed = {k: v for k, v in headers.items() if k not in ("date", "x-request-id")}
    return status, fixed, _STAMP.sub(b"", body)


def message_of(answer: Answer) -> str:
    assert not isinstance(answer, str), answer
    return str(orjson.loads(answer[2])["message"])


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


@asynccontextmanager
async def bridge_process(
    target: str, *, fast_path: bool = True, **env: str
) -> AsyncIterator[BridgeProcess]:
    """:func:`bridge_on` ``target``, once its admin port says it is ready."""
    async with bridge_on(target, "lean" if fast_path else "aiohttp", env=env) as bp:
        await wait_ready(bp)
        yield bp


async def wait_ready(bp: BridgeProcess, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            answer = await exchange(
                bp.admin_port, b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            if not isinstance(answer, str) and answer[0] == 200:
                return
            await asyncio.sleep(0.05)


@asynccontextmanager
async def both_paths(target: str, **env: str) -> AsyncIterator[tuple[BridgeProcess, BridgeProcess]]:
    """A bridge process with the lean path and one without, same settings otherwise."""
    async with (
        bridge_process(target, fast_path=True, **env) as fast,
        bridge_process(target, fast_path=False, **env) as plain,
    ):
        yield fast, plain


def request_logs(bridge: BridgeProcess) -> list[dict[str, object]]:
    """The bridge's ``request`` log lines so far."""
    return [e for e in bridge.events if e.get("event") == "request"]


async def next_request_log(bridge: BridgeProcess, seen: int = 0) -> dict[str, object]:
    """The ``request`` log line after the first ``seen`` (written once the answer is sent)."""
    await bridge.wait_until(lambda _: len(request_logs(bridge)) > seen, timeout=10)
    return request_logs(bridge)[seen]


async def held_for(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, start: bytes, seconds: float
) -> float:
    """Trickle a head that never ends (``start``, then a header line every 0.3 s); how long
    the bridge kept the connection open (``seconds`` when it never closed it)."""
    began = time.perf_counter()
    writer.write(start)
    try:
        while time.perf_counter() - began < seconds:
            with suppress(TimeoutError):
                async with asyncio.timeout(0.3):
                    if await reader.read(1) == b"" or reader.at_eof():
                        return time.perf_counter() - began
            writer.write(b"X-Slow: a\r\n")
            await writer.drain()
    except ConnectionError:
        return time.perf_counter() - began
    return seconds
