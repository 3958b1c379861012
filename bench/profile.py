"""Profile grpc_bridge under load with py-spy: the method behind bench/PROFILE.md.

    python bench/profile.py [--codec fast|reference] [--case order|ping|stream] [--seconds 10]

Starts the echo upstream (CPU 0) and a bridge (CPU 1), drives it with wrk
(CPU 0) or, for ``stream``, with curl reading NDJSON server streams, records
the bridge with ``py-spy record --gil`` (samples only while
Python code holds the GIL, i.e. the CPU work of the event loop thread) and
prints the top frames by self and inclusive time. ``--codec reference`` turns
the compiled codec off (validate.py + json_format only), for the "before".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The checkout this script is in, before any installed grpc_bridge: its code is profiled
# (a script's own folder is on sys.path, not the working directory).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import load
import payloads
import profile_summary
import run
import servers


def serve(config: str, codec: str) -> None:
    """The bridge itself (a child of this script): the CLI's serve path, codec chosen."""
    if codec == "reference":
        from grpc_bridge.codec import json_codec

        json_codec._fast_path_applies = lambda: False
    from grpc_bridge.cli import main

    sys.exit(main(["serve", "--config", config]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codec", choices=["fast", "reference"], default="fast")
    parser.add_argument(
        "--case",
        choices=["order", "ping", "rest", "grpcweb", "connect", "stream"],
        default="order",
    )
    parser.add_argument("--upstream", choices=list(run.UPSTREAMS), default="c")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="keep the raw py-spy profile here")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.codec)
        return
    node_modules = Path(sys.prefix) / "bench-node" / "node_modules"
    c_binary = Path(sys.prefix) / "bench-upstream"
    with tempfile.TemporaryDirectory(prefix="grpc-bridge-profile-") as tmp:
        workdir = Path(tmp)
        gen, descriptor = run.generate(workdir)
        upstream = servers.start_upstream(workdir, gen, "0", args.upstream, node_modules, c_binary)
        config, port, admin = servers.bridge_config(workdir, upstream, descriptor)
        # The CLI's serve path, run by this script so that --codec applies.
        argv = [sys.executable, __file__, "--serve", str(config), "--codec", args.codec]
        bridge = servers.start("bridge", argv, workdir, port, "1")
        servers.wait_ready(bridge, f"http://127.0.0.1:{admin}/readyz")
        path, body = {
            "order": (run.ORDER_PATH, payloads.ORDER_BODY),
            "ping": (run.PING_PATH, payloads.PING_BODY),
            "rest": (run.REST_PATH, None),
            "stream": (run.STREAM_PATH, b'{"count": 300000}'),
            "grpcweb": (run.ORDER_PATH, run.grpc_web_order(gen)),
            "connect": (run.ORDER_PATH, payloads.ORDER_BODY),
        }[args.case]
        headers = {"grpcweb": run.GRPC_WEB_HEADERS, "connect": run.CONNECT_HEADERS}.get(args.case)
        url = f"http://127.0.0.1:{bridge.port}{path}"

        def drive(seconds: float) -> dict[str, float]:
            if args.case != "stream":
                return load.wrk(
                    url,
                    body,
                    workdir,
                    seconds=seconds,
                    connections=32,
                    cpus="0",
                    headers=headers,
                )
            deadline = time.monotonic() + seconds
            total: dict[str, float] = {"messages": 0.0, "seconds": 0.0}
            while time.monotonic() < deadline:
                got = load.ndjson_streams(url, body, workdir, streams=4, cpus="0")
                total["messages"] += got["messages"]
                total["seconds"] += got["seconds"]
            total["rps"] = total["messages"] / total["seconds"]
            return total

        try:
            drive(2)  # warm-up
            result: dict[str, float] = {}
            driver = threading.Thread(target=lambda: result.update(drive(args.seconds + 2)))
            driver.start()
            raw = args.out or workdir / "profile.txt"
            py_spy = Path(sys.executable).parent / "py-spy"
            subprocess.run(
                [
                    *(str(py_spy), "record", "--pid", str(bridge.popen.pid), "--gil"),
                    *("--rate", "250", "--duration", str(args.seconds)),
                    *("--format", "raw", "--output", str(raw)),
                ],
                check=True,
                capture_output=True,
            )
            driver.join()
            print(
                f"{args.codec} codec, {args.case}: "
                f"{result.get('rps', 0):.0f} req/s (or messages/s) under py-spy"
            )
            print(profile_summary.summarise(str(raw), 30))
        finally:
            bridge.stop()
            upstream.stop()
        os.sync()


if __name__ == "__main__":
    main()
