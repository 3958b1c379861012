"""Bridge CPU per request, two source trees side by side: a quick before/after for one change.

    python bench/compare_trees.py OLD_ROOT:true NEW_ROOT:true [ROOT:false ...] [--rounds 3]

Each ``ROOT`` is a checkout's top directory (``git worktree add`` or ``git archive``
of the commit to compare; its ``grpc_bridge`` is the one run), ``:true``/``:false``
its ``listen.fast_path``. For each, in turn and ``--rounds`` times, a bridge runs
in front of the C echo upstream (``.venv/bench-upstream``, built by ``make bench``)
and ``wrk -c32`` drives the tiny unary call, the REST GET and the gRPC-Web binary
unary (1.2 KB Order) of run.py for a few seconds; printed: µs of the bridge's CPU
per request (user + system), requests per second, errors. Pinned as ``make bench``
pins (upstream and wrk on CPU 0, the bridge on CPU 1); on a shared machine compare
rounds, not single runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import payloads
import run
import servers


def _measure(
    proc: servers.Proc,
    url: str,
    body: bytes | None,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> Any:
    load.wrk(url, body, workdir, seconds=2, connections=32, cpus="0", headers=headers)  # warm-up
    before = proc.cpu_seconds()
    result = load.wrk(url, body, workdir, seconds=6, connections=32, cpus="0", headers=headers)
    used = proc.cpu_seconds() - before
    return round(used / result["requests"] * 1e6, 1), round(result["rps"]), result["errors"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="+", help="ROOT:true or ROOT:false (listen.fast_path)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grpc-bridge-compare-") as tmp:
        workdir = Path(tmp)
        gen, descriptor = run.generate(workdir)
        framed = run.grpc_web_order(gen)  # run.py's gRPC-Web binary unary (1.2 KB Order)
        node_modules = Path(sys.prefix) / "bench-node" / "node_modules"
        c_binary = Path(sys.prefix) / "bench-upstream"
        upstream = servers.start_upstream(workdir, gen, "0", "c", node_modules, c_binary)
        try:
            for spec in args.trees * args.rounds:
                root, _, fast = spec.rpartition(":")
                servers.ROOT = Path(root)  # the bridge process runs from this tree
                config, port, admin = servers.bridge_config(workdir, upstream, descriptor)
                settings = yaml.safe_load(config.read_text())
                settings["listen"]["fast_path"] = fast == "true"
                config.write_text(yaml.safe_dump(settings))
                argv = [sys.executable, "-m", "grpc_bridge", "serve", "--config", str(config)]
                bridge = servers.start("bridge", argv, workdir, port, "1")
                servers.wait_ready(bridge, f"http://127.0.0.1:{admin}/readyz")
                base = f"http://127.0.0.1:{port}"
                try:
                    out = {
                        "tiny unary": _measure(
                            bridge, base + run.PING_PATH, payloads.PING_BODY, workdir
                        ),
                        "REST GET": _measure(bridge, base + run.REST_PATH, None, workdir),
                        "gRPC-Web": _measure(
                            bridge, base + run.ORDER_PATH, framed, workdir, run.GRPC_WEB_HEADERS
                        ),
                    }
                finally:
                    bridge.stop()
                print(spec, out, flush=True)
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
