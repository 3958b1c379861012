"""Raw HTTP/1.1 against real bridge processes: exact bytes in, the answer (or its absence) out.

For hostile-client tests: the bytes are written as given (no client library
fixes them up), one bridge process with the lean path and one without, so a
test can require the same answer from both.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson

from tests.process import BridgeProcess, bridge_env, serve_args

#: (status, lower-case headers, body), or "eof" (closed without an answer) / "timeout".
Answer = tuple[int, dict[str, str], bytes] | str

SLEEP = "/bridgetest.v1.TestService/Sleep"
ECHO = "/bridgetest.v1.TestService/Echo"
CLIENT_STREAM = "/bridgetest.v1.TestService/ClientStream"


def raw_request(path: str, body: bytes, *extra: str, length: bool = True) -> bytes:
    """A POST with a JSON Content-Type; ``length``: a Content-Length for ``body``."""
    head = [f"POST {path} HTTP/1.1", "Host: bridge", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}"] if length else []
    return ("\r\n".join([*head, *extra]) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while (size := int((await reader.readline()).strip(), 16)) != 0:
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    else:
        body = await reader.read()
    return status, headers, body


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
async def bridge_process(
    target: str, *, fast_path: bool = True, **env: str
) -> AsyncIterator[BridgeProcess]:
    extra = {"GRPC_BRIDGE_LISTEN__FAST_PATH": "true" if fast_path else "false", **env}
    bp = await BridgeProcess.start(*serve_args(target), env=bridge_env(**extra))
    try:
        await wait_ready(bp)
        yield bp
    finally:
        await bp.stop()


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


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
