"""Load generators: wrk for throughput, curl for NDJSON streams, and two small Python clients.

The Python clients run as their own (pinned) processes and print one JSON line:

    python bench/load.py latency URL BODY_FILE --rate 300 --duration 8
    python bench/load.py websocket URL --messages 20000 --window 64

``latency`` is open-loop (wrk2-style): request i is due at ``start + i / rate``
and its latency counts from then, so a stalled proxy can't hide its queue
(no coordinated omission). Plain wrk has no fixed-rate mode and h2load's
``--rps`` reports no percentiles, hence this client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""


WRK_GET_SCRIPT = 'wrk.method = "GET"\n'


def lua_string(data: bytes) -> str:
    """``data`` as a Lua string literal: long brackets for text, decimal escapes for binary
    (gRPC-Web frames)."""
    if data.isascii() and b"]==]" not in data and all(b >= 0x20 or b in b"\t\n" for b in data):
        return "[==[" + data.decode() + "]==]"
    return '"' + "".join(f"\\{b:03d}" for b in data) + '"'


def wrk(
    url: str,
    body: bytes | None,
    workdir: Path,
    *,
    seconds: float,
    connections: int,
    cpus: str | None,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """wrk at ``url``: a POST of the JSON ``body``, or a plain GET when ``body`` is None;
    ``headers`` are sent besides (Connect's ``Connect-Protocol-Version``)."""
    seconds = max(1, round(seconds))  # wrk takes whole seconds
    script = workdir / "wrk.lua"
    lua = WRK_GET_SCRIPT if body is None else WRK_SCRIPT.format(body=lua_string(body))
    for name, value in (headers or {}).items():
        lua += f'wrk.headers["{name}"] = "{value}"\n'
    script.write_text(lua)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    out = subprocess.run(
        argv, capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return {"requests": requests, "errors": errors, "rps": requests / seconds}


def ndjson_streams(
    url: str, body: bytes, workdir: Path, *, streams: int, cpus: str | None, timeout: float = 120
) -> dict[str, float]:
    """``streams`` concurrent curl downloads of one server stream each; counts the lines."""
    request = workdir / "stream-request.json"
    request.write_bytes(body)
    argv = ["curl", "-s", "-N", "--http1.1", "-X", "POST", "-H", "Content-Type: application/json"]
    argv += ["--data-binary", f"@{request}", url]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    outputs = [workdir / f"stream-{i}.ndjson" for i in range(streams)]
    started = time.monotonic()
    procs = [subprocess.Popen([*argv, "-o", str(out)]) for out in outputs]
    for proc in procs:
        proc.wait(timeout)
    elapsed = time.monotonic() - started
    lines = sum(out.read_bytes().count(b"\n") for out in outputs)
    return {"messages": lines, "seconds": elapsed, "mps": lines / elapsed}


def run_client(args: list[str], cpus: str | None, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), *args]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=timeout).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# --- the Python clients ----------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def latency(
    url: str, body: bytes, rate: float, duration: float, connections: int
) -> dict[str, Any]:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(due: float) -> None:
            nonlocal errors
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append(time.perf_counter() - due)

        for _ in range(connections):  # warm the connection pool, unmeasured
            await one(time.perf_counter())
        latencies.clear()
        total = int(rate * duration)
        start = time.perf_counter() + 0.05
        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "rate": rate,
        "sent": total,
        "errors": errors,
        "p50_ms": _percentile(ms, 0.50),
        "p90_ms": _percentile(ms, 0.90),
        "p99_ms": _percentile(ms, 0.99),
        "max_ms": ms[-1] if ms else 0.0,
        "mean_ms": statistics.fmean(ms) if ms else 0.0,
    }


async def websocket(url: str, messages: int, window: int) -> dict[str, Any]:
    """Bidi over one WebSocket: ``window`` messages in flight, each echoed by the upstream."""
    import aiohttp

    frame = json.dumps({"id": "ws", "seq": 1})
    received = 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        started = time.perf_counter()
        sent = 0
        for _ in range(min(window, messages)):
            await ws.send_str(frame)
            sent += 1
        while received < messages:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"unexpected WebSocket message {msg.type}: {msg.data!r}")
            if '"result"' not in msg.data:
                raise RuntimeError(f"unexpected frame {msg.data[:200]!r}")
            received += 1
            if sent < messages:
                await ws.send_str(frame)
                sent += 1
        elapsed = time.perf_counter() - started
        await ws.send_str("")  # half-close: the call ends with code 1000
        await ws.receive()
    return {"messages": received, "seconds": elapsed, "mps": received / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("url")
    lat.add_argument("body_file")
    lat.add_argument("--rate", type=float, default=300)
    lat.add_argument("--duration", type=float, default=8)
    lat.add_argument("--connections", type=int, default=32)
    ws = sub.add_parser("websocket")
    ws.add_argument("url")
    ws.add_argument("--messages", type=int, default=20000)
    ws.add_argument("--window", type=int, default=64)
    args = parser.parse_args()
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    if args.command == "latency":
        body = Path(args.body_file).read_bytes()
        result = run(latency(args.url, body, args.rate, args.duration, args.connections))
    else:
        result = run(websocket(args.url, args.messages, args.window))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
