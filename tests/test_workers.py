"""``--workers N``: real processes sharing the proxy port, one admin listener, one drain."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import aiohttp
import pytest

from grpc_bridge.admin.workers import merge_metrics
from grpc_bridge.settings import load_settings
from grpc_bridge.workers import dump_settings, load_dumped_settings
from tests.helpers.process import bridge_env
from tests.helpers.raw_http import held_for
from tests.helpers.servers import RunningServer
from tests.helpers.workers_tools import start_workers, wait_ready


async def test_two_workers_serve_one_port_and_drain_on_sigterm(upstream: RunningServer) -> None:
    bp = await start_workers(upstream)
    try:
        async with aiohttp.ClientSession() as session:
            report = await wait_ready(session, bp)
            assert [w["worker"] for w in report["workers"]] == [0, 1]
            assert all(w["ready"] for w in report["workers"])
            assert report["upstreams"]["default"]["ready"] is True
            pids = {w["pid"] for w in report["workers"]}
            assert len(pids) == 2 and os.getpid() not in pids

            # A new connection per request: the kernel spreads them over both workers.
            url = f"http://127.0.0.1:{bp.proxy_port}/bridgetest.v1.TestService/Echo"
            for _ in range(60):
                async with (
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(force_close=True)
                    ) as fresh,
                    fresh.post(url, json={"fString": "hi"}) as resp,
                ):
                    assert resp.status == 200
                    assert (await resp.json())["fString"] == "hi"

            async with session.get(f"http://127.0.0.1:{bp.admin_port}/metrics") as resp:
                assert resp.status == 200
                metrics = await resp.text()
            assert 'grpc_bridge_worker_up{worker="0"} 1.0' in metrics
            assert 'grpc_bridge_worker_up{worker="1"} 1.0' in metrics
            helps = [line for line in metrics.splitlines() if line.startswith("# HELP ")]
            assert len(helps) == len(set(helps))  # one family per name, merged

            # Other admin paths are a worker's own.
            async with session.get(f"http://127.0.0.1:{bp.admin_port}/v1/services") as resp:
                assert resp.status == 200
                names = {s["name"] for s in (await resp.json())["services"]}
            assert "bridgetest.v1.TestService" in names
            async with session.get(f"http://127.0.0.1:{bp.admin_port}/healthz") as resp:
                assert resp.status == 200

        # SIGHUP is every worker's (refresh), and leaves the parent running.
        bp.proc.send_signal(signal.SIGHUP)
        refreshed: set[int] = set()
        while refreshed != {0, 1}:
            event = await bp.wait_for("refresh_requested")
            refreshed.add(event["worker"])
            bp.events.remove(event)
        assert bp.proc.returncode is None

        bp.proc.send_signal(signal.SIGTERM)
        assert await bp.wait() == 0
    finally:
        await bp.stop()
        await bp.drain_logs()
    served_by = {e.get("worker") for e in bp.events if e.get("event") == "request"}
    assert served_by == {0, 1}
    stopped = [e for e in bp.events if e.get("event") == "stopped"]
    assert {e.get("worker") for e in stopped} == {0, 1, None}  # both workers, then the parent
    assert stopped[-1].get("worker") is None and stopped[-1]["clean"] is True


async def test_a_dead_worker_is_reported_then_restarted(upstream: RunningServer) -> None:
    bp = await start_workers(upstream)
    try:
        async with aiohttp.ClientSession() as session:
            report = await wait_ready(session, bp)
            victim = report["workers"][1]["pid"]
            os.kill(victim, signal.SIGKILL)
            async with asyncio.timeout(10):
                while True:
                    async with session.get(f"http://127.0.0.1:{bp.admin_port}/readyz") as resp:
                        if resp.status == 503:
                            down = await resp.json()
                            break
                    await asyncio.sleep(0.05)
            assert down["ready"] is False
            assert down["workers"][1]["ready"] is False
            exited = await bp.wait_for("worker_exited")
            assert exited["worker"] == 1 and exited["exit_code"] == -signal.SIGKILL
            report = await wait_ready(session, bp)
            assert report["workers"][1]["pid"] != victim
            url = f"http://127.0.0.1:{bp.proxy_port}/bridgetest.v1.TestService/Echo"
            async with session.post(url, json={}) as resp:
                assert resp.status == 200
    finally:
        assert await bp.stop() == 0


async def test_a_taken_port_fails_start_up(upstream: RunningServer) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "grpc_bridge", "serve", "--upstream", upstream.target),
            *("--host", "127.0.0.1", "--port", str(port), "--admin-port", "0", "--workers", "2"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=bridge_env(),
        )
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert b"cannot listen" in err and b"Traceback" not in err


def test_settings_reach_the_workers_unchanged(tmp_path: Any) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "upstreams: [{name: shop, targets: ['127.0.0.1:1'], timeout_s: 7}]\n"
        "json: {use_proto_names: true}\nworkers: 3\n"
    )
    settings = load_settings(config, {"listen": {"port": 9000}})
    assert settings.workers == 3
    assert load_dumped_settings(dump_settings(settings)) == settings


def test_metrics_merge_sums_counters_and_labels_gauges() -> None:
    scrape = """# HELP req_total Requests.
# TYPE req_total counter
req_total{route="a"} {a}
req_created{route="a"} {c}
# HELP in_flight In flight.
# TYPE in_flight gauge
in_flight {g}
# HELP lat Latency.
# TYPE lat histogram
lat_bucket{le="0.1"} {a}
lat_bucket{le="+Inf"} {a}
lat_count {a}
lat_sum 0.5
"""

    def text(a: int, c: float, g: int) -> str:
        return scrape.replace("{a}", str(a)).replace("{c}", str(c)).replace("{g}", str(g))

    merged = merge_metrics({0: text(2, 100.0, 1), 1: text(3, 50.0, 4), 2: None}).decode()
    lines = set(merged.splitlines())
    assert 'req_total{route="a"} 5.0' in lines
    # Text format 0.0.4 exposes *_created as a gauge family of its own: one per worker.
    assert 'req_created{route="a",worker="1"} 50.0' in lines
    assert 'lat_bucket{le="+Inf"} 5.0' in lines and "lat_sum 1.0" in lines
    assert 'in_flight{worker="0"} 1.0' in lines and 'in_flight{worker="1"} 4.0' in lines
    assert 'grpc_bridge_worker_up{worker="2"} 0.0' in lines


@pytest.mark.parametrize("workers", ["0", "65"])
def test_workers_setting_is_bounded(workers: str) -> None:
    from grpc_bridge.settings import ConfigError

    with pytest.raises(ConfigError, match="workers"):
        load_settings(None, {"upstream": "127.0.0.1:1", "workers": workers})


async def test_a_trickled_head_to_the_parents_admin_port_is_closed(
    upstream: RunningServer,
) -> None:
    """The parent's admin listener reads heads under limits.body_read_timeout_s, as each
    worker's listeners do: a head that never ends does not hold its connection."""
    env = bridge_env(GRPC_BRIDGE_LIMITS__BODY_READ_TIMEOUT_S="1")
    bp = await start_workers(upstream, env=env)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, bp)
        reader, writer = await asyncio.open_connection("127.0.0.1", bp.admin_port)
        try:
            start = b"GET /v1/services HTTP/1.1\r\nHost: b\r\n"
            held = await held_for(reader, writer, start, 6.0)
        finally:
            writer.close()
    finally:
        await bp.stop()
    assert held < 4.0, f"admin connection held {held:.1f} s by a head that never ends"
