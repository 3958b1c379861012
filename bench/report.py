"""results.json → results.md (tables with ratios and targets) and chart.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROXIES = ("envoy", "naive", "grpc_bridge")
LABELS = {"envoy": "Envoy", "naive": "naive aiohttp", "grpc_bridge": "grpc_bridge"}

#: The Connect JSON case's second Envoy: no connect_grpc_bridge, so its transcoder takes
#: the call and does grpc_bridge's work (JSON to protobuf and back). The Connect target
#: is measured against it.
CONNECT_LIKE_WORK = "envoy_transcoding"
#: The Connect JSON case's rows: (the Envoy entry in the "Envoy" column, the row's title).
CONNECT_ROWS = (
    ("envoy", "Connect JSON unary, 1.2 KB Order, vs Envoy connect_grpc_bridge (no transcoding)"),
    (
        CONNECT_LIKE_WORK,
        "Connect JSON unary, 1.2 KB Order, vs Envoy transcoding the same JSON (like work)",
    ),
)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "—"
    return f"{a / b:.2f}×"


def targets(cases: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets the measured cases decide: name, measured ratio, met."""
    order = cases.get("unary_order", {})
    bridge = order.get("grpc_bridge", {}).get("per_core")
    connect = cases.get("unary_connect", {})
    grpc_web = cases.get("unary_grpc_web", {})
    stream = cases.get("server_stream", {})
    workers = cases.get("workers", {})
    wanted = [
        (
            "unary 1.2 KB per core ≥ 0.8× Envoy",
            bridge,
            order.get("envoy", {}).get("per_core"),
            0.8,
        ),
        ("unary 1.2 KB per core ≥ 2.5× naive", bridge, order.get("naive", {}).get("per_core"), 2.5),
        # Against the Envoy doing the same work (transcoding the JSON), not
        # connect_grpc_bridge, which forwards the JSON untranscoded (see CONNECT_ROWS).
        (
            "Connect JSON unary per core ≥ 0.8× Envoy transcoding the same JSON",
            connect.get("grpc_bridge", {}).get("per_core"),
            connect.get(CONNECT_LIKE_WORK, {}).get("per_core"),
            0.8,
        ),
        (
            "gRPC-Web binary unary per core ≥ 0.8× Envoy",
            grpc_web.get("grpc_bridge", {}).get("per_core"),
            grpc_web.get("envoy", {}).get("per_core"),
            0.8,
        ),
        (
            "server streaming messages/s ≥ Envoy",
            stream.get("grpc_bridge", {}).get("mps"),
            stream.get("envoy", {}).get("mps"),
            1.0,
        ),
        (
            "2 workers ≥ 1.7× one worker",
            workers.get("2", {}).get("rps"),
            workers.get("1", {}).get("rps"),
            1.7,
        ),
    ]
    out = []
    # A target is shown only where both of its figures were measured.
    for name, measured, against, at_least in wanted:
        if measured and against:
            ratio = measured / against
            out.append({"name": name, "measured": f"{ratio:.2f}×", "met": ratio >= at_least})
    return out


def render_markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    cases = results["cases"]
    lines = [
        "# grpc_bridge benchmark",
        "",
        f"Made by `make bench` on {meta['date']} — {meta['machine']}.",
        f"Load average before/after: {meta['load_before']} / {meta['load_after']} "
        "(other work on the machine makes raw req/s noisy; per-core figures divide by the "
        "proxy's own CPU seconds and are steadier).",
        "",
        f"Versions: {meta['versions']}.",
        "",
        "## Throughput",
        "",
        "Median of the runs. *per core* = requests ÷ CPU seconds the proxy used (all its threads "
        "and processes); *req/s* = wall-clock rate with the proxy pinned to one CPU.",
        "",
        "| case | metric | Envoy | naive | grpc_bridge "
        "| grpc_bridge / Envoy | grpc_bridge / naive |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = [
        ("unary_order", "envoy", "unary, 1.2 KB Order"),
        ("unary_ping", "envoy", "unary, tiny Ping"),
        ("unary_rest", "envoy", "REST GET /v1/pings/{id}"),
        *(("unary_connect", envoy, title) for envoy, title in CONNECT_ROWS),
        ("unary_grpc_web", "envoy", "gRPC-Web binary unary, 1.2 KB Order"),
    ]
    for key, envoy, title in rows:
        case = cases.get(key, {})
        if not case:
            continue
        for metric, label in (("per_core", "req/s per core"), ("rps", "req/s")):
            values = {p: case.get(envoy if p == "envoy" else p, {}).get(metric) for p in PROXIES}
            lines.append(
                f"| {title} | {label} | {_num(values['envoy'])} | {_num(values['naive'])} | "
                f"{_num(values['grpc_bridge'])} | "
                f"{_ratio(values['grpc_bridge'], values['envoy'])} | "
                f"{_ratio(values['grpc_bridge'], values['naive'])} |"
            )
    stream = cases.get("server_stream", {})
    # A run of some cases (--cases) reports those only.
    for metric, label in (("mps", "messages/s"), ("per_core", "messages/s per core")):
        if not stream:
            break
        values = {p: stream.get(p, {}).get(metric) for p in PROXIES}
        lines.append(
            f"| server stream (NDJSON) | {label} | {_num(values['envoy'])} | n/a | "
            f"{_num(values['grpc_bridge'])} | "
            f"{_ratio(values['grpc_bridge'], values['envoy'])} | — |"
        )
    if "websocket" in cases:
        ws = cases["websocket"].get("grpc_bridge", {})
        note = cases["websocket"].get("skipped")
        lines.append(
            "| WebSocket bidi echo | messages/s | n/a | n/a | "
            f"{'skipped' if note else _num(ws.get('mps'))} | — | — |"
        )
    latency = cases.get("latency", {})
    if latency:
        lines += ["", "## Latency at a fixed rate", ""]
        lines.append(
            f"Open-loop client, {latency.get('rate', '?')} req/s of the 1.2 KB Order for "
            f"{latency.get('duration', '?')} s over {latency.get('connections', '?')} "
            "connections; latency counted from each request's due time."
        )
        lines += [
            "",
            "| proxy | p50 ms | p90 ms | p99 ms | max ms | errors |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for proxy in PROXIES:
            entry = latency.get(proxy)
            if entry:
                lines.append(
                    f"| {LABELS[proxy]} | {entry['p50_ms']:.2f} | {entry['p90_ms']:.2f} | "
                    f"{entry['p99_ms']:.2f} | {entry['max_ms']:.2f} | {entry['errors']} |"
                )
    workers = cases.get("workers", {})
    if workers:
        lines += [
            "",
            "## Workers",
            "",
            "1.2 KB Order; the bridge may use both CPUs, "
            "which it shares with the upstream and wrk. *cores* = CPU seconds the "
            "bridge's processes used per second of the run; *µs/req* = the bridge's CPU per "
            "request; *upstream + wrk µs/req* = what the echo upstream and the load "
            "generator used per request, on the same two CPUs.",
            "",
            "| workers | req/s | cores | req/s per core | µs/req | upstream + wrk µs/req |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for n in ("1", "2"):
            entry = workers.get(n)
            if entry:
                cores = entry.get("cores") or (
                    entry["rps"] / entry["per_core"] if entry["per_core"] else 0.0
                )
                lines.append(
                    f"| {n} | {_num(entry['rps'])} | {cores:.2f} | {_num(entry['per_core'])} | "
                    f"{entry.get('bridge_us', 0):.0f} | {entry.get('others_us', 0):.0f} |"
                )
        one, two = workers.get("1", {}), workers.get("2", {})
        lines.append("")
        text = (
            f"2 workers / 1 worker: {_ratio(two.get('rps'), one.get('rps'))} (target ≥ 1.7×). "
            f"Per core, 2 workers serve {_ratio(two.get('per_core'), one.get('per_core'))} "
            "of what one does."
        )
        if workers.get("ceiling"):
            text += (
                f" With the upstream and wrk on the same two CPUs, the most two workers could "
                f"reach here is {workers['ceiling']:.2f}× (both CPUs, less what those two "
                "use per request, at one worker's CPU per request)."
            )
        lines.append(text)
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---:|:---:|"]
    for target in results.get("targets", []):
        lines.append(
            f"| {target['name']} | {target['measured']} | {'yes' if target['met'] else 'no'} |"
        )
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def _chart_entry(key: str, proxy: str, cases: dict[str, Any]) -> str:
    """Whose bar the chart draws: for Connect JSON, the Envoy doing the same work."""
    if key == "unary_connect" and proxy == "envoy" and CONNECT_LIKE_WORK in cases.get(key, {}):
        return CONNECT_LIKE_WORK
    return proxy


def render_chart(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cases = results["cases"]
    colors = {"envoy": "#7f7f7f", "naive": "#c9a227", "grpc_bridge": "#1f77b4"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    groups = [("unary_order", "unary 1.2 KB"), ("unary_ping", "unary tiny")]
    if cases.get("unary_rest"):
        groups.append(("unary_rest", "REST GET"))
    if cases.get("unary_connect"):
        groups.append(("unary_connect", "Connect JSON"))
    width = 0.26
    for i, proxy in enumerate(PROXIES):
        values = [
            cases.get(key, {}).get(_chart_entry(key, proxy, cases), {}).get("per_core") or 0
            for key, _ in groups
        ]
        xs = [g + (i - 1) * width for g in range(len(groups))]
        ax.bar(xs, values, width, label=LABELS[proxy], color=colors[proxy])
    ax.set_xticks(range(len(groups)), [label for _, label in groups])
    ax.set_title("unary requests/s per core")
    ax.legend()
    ax = axes[1]
    stream = cases.get("server_stream", {})
    ws = cases.get("websocket", {}).get("grpc_bridge", {})
    names = ["Envoy NDJSON", "grpc_bridge NDJSON", "grpc_bridge WebSocket"]
    values = [
        stream.get("envoy", {}).get("mps") or 0,
        stream.get("grpc_bridge", {}).get("mps") or 0,
        ws.get("mps") or 0,
    ]
    ax.bar(names, values, color=[colors["envoy"], colors["grpc_bridge"], "#17becf"])
    ax.set_title("streamed messages/s (one CPU)")
    ax.tick_params(axis="x", labelsize=8)
    ax = axes[2]
    latency = cases.get("latency", {})
    present = [p for p in PROXIES if latency.get(p)]
    for i, quantile in enumerate(("p50_ms", "p99_ms")):
        xs = [j + (i - 0.5) * 0.38 for j in range(len(present))]
        ax.bar(xs, [latency[p][quantile] for p in present], 0.38, label=quantile.replace("_ms", ""))
    ax.set_xticks(range(len(present)), [LABELS[p] for p in present])
    ax.set_title(f"latency ms at {latency.get('rate', '?')} req/s (lower is better)")
    ax.legend()
    fig.suptitle(f"make bench — {results['meta']['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


#: The page the latest full run's tables are written to, between these markers.
PERFORMANCE_PAGE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
TABLE_START, TABLE_END = "<!-- bench-table -->", "<!-- /bench-table -->"


def tables_block(results: dict[str, Any]) -> str:
    """The performance page's tables: results.md's tables, without its preamble and notes."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in render_markdown(results).splitlines():
        if line.startswith("## "):
            current = line[3:]
            sections[current] = []
        elif current:
            sections[current].append(line)

    def tables(name: str, prose_after: bool = False) -> list[str]:
        lines = sections.get(name, [])
        keep = [line for line in lines if line.startswith("|")]
        if prose_after and keep:
            after = lines[lines.index(keep[-1]) + 1 :]
            keep += [""] + [line for line in after if line.strip()]
        return keep

    latency = results["cases"].get("latency", {})
    out = [
        f"Latest run ({results['meta']['date']}, `make bench`, full output in",
        "[bench/results/results.md](../bench/results/results.md)):",
        "",
        *tables("Throughput"),
        "",
        f"Latency at a fixed {latency.get('rate', '?'):g} req/s (1.2 KB message, "
        "open-loop client):",
        "",
        *tables("Latency at a fixed rate"),
    ]
    if sections.get("Workers"):
        out += [
            "",
            "Workers (1.2 KB message, the bridge allowed on both CPUs; *cores*: CPU the",
            "bridge's processes got; µs/req: CPU per request):",
            "",
            *tables("Workers", prose_after=True),
        ]
    out += ["", "Targets:", "", *tables("Targets")]
    return "\n".join(out)


def update_tables(page: Path, results: dict[str, Any]) -> bool:
    """Replace the page's block between the bench-table markers; False if it has none."""
    text = page.read_text()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        return False
    block = f"{TABLE_START}\n{tables_block(results)}\n{TABLE_END}"
    page.write_text(text[:start] + block + text[end + len(TABLE_END) :])
    return True


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(render_markdown(results))
    if not render_chart(results, out / "chart.png"):
        results.setdefault("notes", []).append("matplotlib is not installed: no chart")
