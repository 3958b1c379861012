"""One large client-stream upload over h2c, timed: what the h2c edge's receive windows cost.

A bridge process (``python -m grpc_bridge`` from the current directory: run
it from another checkout to measure that one) in front of the test upstream; an ``h2``
client sends one Connect client stream (``application/connect+proto``) of
``--mb`` MiB in 16 KiB messages as fast as the bridge's windows let it, and the
time to the answer is reported (best of ``--runs``). The client and the
upstream share this process; the bridge has its own.

    python bench/h2c_upload.py [--mb 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT), str(_ROOT / "tests" / "gen")]

from bridgetest.v1 import kitchen_pb2  # noqa: E402

from tests.helpers.h2c_client import H2cClient, envelope  # noqa: E402
from tests.helpers.process import BridgeProcess, serve_args  # noqa: E402
from tests.helpers.servers import start_server  # noqa: E402

_HEADERS = [("content-type", "application/connect+proto"), ("connect-protocol-version", "1")]


async def _upload(port: int, total: int) -> float:
    message = envelope(kitchen_pb2.StreamReply(text="u" * 16000).SerializeToString())
    client = await H2cClient.open(port)
    try:
        await client.pump(1.0)
        began = time.perf_counter()
        stream = client.request("/bridgetest.v1.TestService/ClientStream", _HEADERS, b"", end=False)
        sent = 0
        while sent < total:
            window = client.conn.local_flow_control_window(stream)
            if window >= len(message):
                client.conn.send_data(stream, message)
                sent += len(message)
                client.flush()
                if client.writer.transport.get_write_buffer_size() > 1 << 20:
                    await client.writer.drain()
                continue
            client.flush()
            if not await client.pump(10.0):
                raise SystemExit(f"the bridge closed the connection: {client.terminated}")
            state = client.streams[stream]
            if state.ended or state.reset is not None:
                raise SystemExit(f"answered early: {state.headers} {bytes(state.body)[:300]!r}")
        client.send(stream, b"", end=True)
        state = await client.answer(stream, 120.0)
        elapsed = time.perf_counter() - began
        assert state.headers.get(":status") == "200", state.headers
        return elapsed
    finally:
        await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    upstream = await start_server()
    bridge = await BridgeProcess.start(*serve_args(upstream.target))
    await bridge.wait_for("discovered")
    try:
        total = args.mb * 1024 * 1024
        times = [await _upload(bridge.proxy_port, total) for _ in range(args.runs)]
        best = min(times)
        print(
            f"{args.mb} MiB client stream over h2c: best {best:.2f} s "
            f"({args.mb / best:.1f} MiB/s); runs {', '.join(f'{t:.2f}' for t in times)}"
        )
    finally:
        await bridge.stop()
        await upstream.stop()


if __name__ == "__main__":
    asyncio.run(main())
