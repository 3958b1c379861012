"""Bridge CPU per request, two source trees side by side: a quick before/after for one change.

    python bench/compare_trees.py OLD_ROOT:true NEW_ROOT:true [ROOT:false ...] [--rounds 3]
        [--cases ping,rest,grpcweb,connect,order]

Each ``ROOT`` is a checkout's top directory (``git worktree add`` or ``git archive``
of the commit to compare; its ``grpc_bridge`` is the one run), ``:true``/``:false``
its ``listen.fast_path``. For each, in turn and ``--rounds`` times, a bridge runs
in front of the C echo upstream (``.venv/bench-upstream``, built by ``make bench``)
and ``wrk -c32`` drives each of ``--cases`` for a few seconds: run.py's tiny unary
call (``ping``), REST GET (``rest``), gRPC-Web binary unary (``grpcweb``), Connect
JSON unary (``connect``) and JSON unary (``order``) of the 1.2 KB Order; printed: µs
of the bridge's CPU per request (user + system), requests per second, errors, and
at the end each case's median per tree. Pinned as ``make bench``
pins (upstream and wrk on CPU 0, the bridge on CPU 1); on a shared machine compare
rounds, not single runs.
"""

from __future__ import annotations

import argparse
import statistics
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
    parser.add_argument("--cases", default="ping,rest,grpcweb")
    args = parser.parse_args()
    cases = args.cases.split(",")
    medians: dict[str, dict[str, list[float]]] = {}
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
                driven = {
                    "ping": (run.PING_PATH, payloads.PING_BODY, None),
                    "rest": (run.REST_PATH, None, None),
                    "grpcweb": (run.ORDER_PATH, framed, run.GRPC_WEB_HEADERS),
                    "connect": (run.ORDER_PATH, payloads.ORDER_BODY, run.CONNECT_HEADERS),
                    "order": (run.ORDER_PATH, payloads.ORDER_BODY, None),
                }
                try:
                    out = {}
                    for case in cases:
                        path, body, headers = driven[case]
                        out[case] = _measure(bridge, base + path, body, workdir, headers)
                        medians.setdefault(spec, {}).setdefault(case, []).append(out[case][0])
                finally:
                    bridge.stop()
                print(spec, out, flush=True)
        finally:
            upstream.stop()
    for spec, by_case in medians.items():
        shown = {case: statistics.median(values) for case, values in by_case.items()}
        print("median", spec, shown, flush=True)


if __name__ == "__main__":
    main()
