"""Bridge CPU per request, two source trees side by side: a quick before/after for one change.

    python bench/compare_trees.py OLD_ROOT:true NEW_ROOT:true [ROOT:false ...] [--rounds 3]
        [--cases ping,rest,grpcweb,connect,order]

Each ``ROOT`` is a checkout's top directory (``git worktree add`` or ``git archive``
of the commit to compare; its ``grpc_bridge`` is the one run), ``:true``/``:false``
its ``listen.fast_path``. A bridge per tree runs
throughout, in front of the C echo upstream (``.venv/bench-upstream``, built by ``make bench``)
and ``wrk -c32`` drives each of ``--cases`` for a few seconds: run.py's tiny unary
call (``ping``), REST GET (``rest``), gRPC-Web binary unary (``grpcweb``), Connect
JSON unary (``connect``) and JSON unary (``order``) of the 1.2 KB Order; printed: µs
of the bridge's CPU per request (user + system), requests per second, errors, and
at the end each case's median and minimum per tree and, against the first tree,
the median of the rounds' ratios. Pinned as ``make bench`` pins (upstream and wrk on
CPU 0, the bridges on CPU 1); on a shared machine compare paired rounds, not single
runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import payloads
import run
import servers


def _cpu_ns(pid: int) -> int:
    """The process's CPU time so far, every thread's, in ns (schedstat: no 10 ms ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue
    return total


class _Lines:
    """Lines written to the bridge's log so far: one per request."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._file.seek(0, os.SEEK_END)
        self.count = 0

    def read(self) -> int:
        self.count += self._file.read().count(b"\n")
        return self.count


def _measure(
    proc: servers.Proc,
    url: str,
    body: bytes | None,
    workdir: Path,
    headers: dict[str, str] | None = None,
    seconds: int = 6,
) -> tuple[float, float, int, int]:
    """µs of CPU per request over the whole run and in its quietest windows (the 20th
    percentile of 0.25 s windows: on a shared machine, other work's load inflates the
    CPU a request costs, and the windows it spared are the steadier figure); req/s;
    errors."""
    pid = proc.popen.pid
    lines = _Lines(proc.log)
    result: dict[str, Any] = {}
    driver = threading.Thread(
        target=lambda: result.update(
            load.wrk(url, body, workdir, seconds=seconds, connections=32, cpus="0", headers=headers)
        )
    )
    before = proc.cpu_seconds()
    driver.start()
    windows = []
    last = (_cpu_ns(pid), lines.read())
    while driver.is_alive():
        time.sleep(0.25)
        now = (_cpu_ns(pid), lines.read())
        if now[1] - last[1] >= 50:
            windows.append((now[0] - last[0]) / (now[1] - last[1]) / 1000)
        last = now
    driver.join()
    used = proc.cpu_seconds() - before
    quiet = statistics.quantiles(windows, n=5)[0] if len(windows) >= 5 else float("nan")
    whole = used / result["requests"] * 1e6
    return round(whole, 1), round(quiet, 1), round(result["rps"]), result["errors"]


def _measure_together(
    bridges: dict[str, tuple[servers.Proc, str]],
    specs: list[str],
    path: str,
    body: bytes | None,
    headers: dict[str, str] | None,
    workdir: Path,
    seconds: int,
) -> dict[str, tuple[float, float, int, int]]:
    """:func:`_measure` of every tree's bridge at once, each with its own wrk."""
    got: dict[str, tuple[float, float, int, int]] = {}

    def one(spec: str) -> None:
        bridge, base = bridges[spec]
        own = workdir / spec.replace("/", "_").replace(":", "_")
        own.mkdir(exist_ok=True)
        got[spec] = _measure(bridge, base + path, body, own, headers, seconds)

    threads = [threading.Thread(target=one, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return got


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="+", help="ROOT:true or ROOT:false (listen.fast_path)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cases", default="ping,rest,grpcweb")
    parser.add_argument("--seconds", type=int, default=6, help="per measurement")
    parser.add_argument(
        "--together",
        action="store_true",
        help="drive every tree's bridge at once (sharing CPU 1), each with its own wrk: "
        "the trees meet the very same load; their whole runs' CPU per request compared",
    )
    args = parser.parse_args()
    cases = args.cases.split(",")
    seen: dict[str, dict[str, list[float]]] = {spec: {} for spec in args.trees}
    with tempfile.TemporaryDirectory(prefix="grpc-bridge-compare-") as tmp:
        workdir = Path(tmp)
        gen, descriptor = run.generate(workdir)
        framed = run.grpc_web_order(gen)  # run.py's gRPC-Web binary unary (1.2 KB Order)
        driven = {
            "ping": (run.PING_PATH, payloads.PING_BODY, None),
            "rest": (run.REST_PATH, None, None),
            "grpcweb": (run.ORDER_PATH, framed, run.GRPC_WEB_HEADERS),
            "connect": (run.ORDER_PATH, payloads.ORDER_BODY, run.CONNECT_HEADERS),
            "order": (run.ORDER_PATH, payloads.ORDER_BODY, None),
        }
        node_modules = Path(sys.prefix) / "bench-node" / "node_modules"
        c_binary = Path(sys.prefix) / "bench-upstream"
        upstream = servers.start_upstream(workdir, gen, "0", "c", node_modules, c_binary)
        bridges: dict[str, tuple[servers.Proc, str]] = {}
        try:
            # Every tree's bridge runs throughout, and the rounds take them in turn case by
            # case (the order reversed every other round): the machine's load drifts by
            # the minute, and so each tree's figures meet the same drift.
            for index, spec in enumerate(args.trees):
                root, _, fast = spec.rpartition(":")
                servers.ROOT = Path(root)  # the bridge process runs from this tree
                config, port, admin = servers.bridge_config(workdir, upstream, descriptor)
                settings = yaml.safe_load(config.read_text())
                settings["listen"]["fast_path"] = fast == "true"
                own = workdir / f"bridge-tree-{index}.yaml"
                own.write_text(yaml.safe_dump(settings))
                argv = [sys.executable, "-m", "grpc_bridge", "serve", "--config", str(own)]
                bridge = servers.start(f"bridge-{index}", argv, workdir, port, "1")
                servers.wait_ready(bridge, f"http://127.0.0.1:{admin}/readyz")
                bridges[spec] = (bridge, f"http://127.0.0.1:{port}")
            for bridge, base in bridges.values():
                for case in cases:
                    path, body, headers = driven[case]
                    _measure(bridge, base + path, body, workdir, headers, seconds=2)  # warm-up
            for round_ in range(args.rounds):
                order = args.trees if round_ % 2 == 0 else args.trees[::-1]
                for case in cases:
                    path, body, headers = driven[case]
                    if args.together:
                        got_all = _measure_together(
                            bridges, order, path, body, headers, workdir, args.seconds
                        )
                        for spec in order:
                            seen[spec].setdefault(case, []).append(got_all[spec][0])
                            print(round_, case, spec, got_all[spec], flush=True)
                        continue
                    for spec in order:
                        bridge, base = bridges[spec]
                        got = _measure(bridge, base + path, body, workdir, headers, args.seconds)
                        seen[spec].setdefault(case, []).append(got[1])
                        print(round_, case, spec, got, flush=True)
        finally:
            for bridge, _ in bridges.values():
                bridge.stop()
            upstream.stop()
    first = args.trees[0]
    for spec, by_case in seen.items():
        shown = {case: (statistics.median(values), min(values)) for case, values in by_case.items()}
        label = "whole runs'" if args.together else "quiet windows'"
        print(label, "µs per request, median and min of rounds:", spec, shown, flush=True)
        if spec != first:
            # Paired per round: the two measurements of a round met the same load.
            ratios = {
                case: round(
                    statistics.median(
                        new / old for new, old in zip(values, seen[first][case], strict=True)
                    ),
                    3,
                )
                for case, values in by_case.items()
            }
            print("  paired median ratio to", first, ratios, flush=True)


if __name__ == "__main__":
    main()
