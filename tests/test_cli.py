"""The command line, run as real processes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.process import (
    BridgeProcess,
    bridge_env,
    curl_status,
    expected_status,
    free_port,
    run_cli,
    serve_args,
    spawn_demo,
)
from tests.helpers.servers import RunningServer


async def test_check_config_valid(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("upstreams:\n  - name: shop\n    targets: ['127.0.0.1:50051']\n")
    code, out, err = await run_cli("check-config", "--config", str(cfg))
    assert code == 0, err
    assert "configuration is valid" in out and "shop" in out


async def test_check_config_invalid_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("listen: {port: 99999}\nupstreams:\n  - targets: ['nohost']\n    pool_size: 0\n")
    code, _out, err = await run_cli("check-config", "--config", str(cfg))
    assert code == 2
    lines = err.strip().splitlines()
    assert lines == [
        "grpc-bridge: config: listen.port: Input should be less than or equal to 65535",
        "grpc-bridge: config: upstreams[0].targets: 'nohost' is not HOST:PORT, [IPV6]:PORT or dns:///HOST:PORT",
        "grpc-bridge: config: upstreams[0].pool_size: Input should be greater than or equal to 1",
    ]
    assert "Traceback" not in err


async def test_serve_with_bad_env_exits_2() -> None:
    code, _, err = await run_cli(
        "serve",
        "--upstream",
        "127.0.0.1:1",
        env=bridge_env(GRPC_BRIDGE_LIMITS__MAX_JSON_DEPTH="deep"),
    )
    assert code == 2
    assert "limits.max_json_depth" in err and "Traceback" not in err


async def test_check_config_reports_bad_descriptor_set(tmp_path: Path) -> None:
    bad = tmp_path / "api.pb"
    bad.write_bytes(b"not a descriptor set")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "upstreams:\n  - targets: ['127.0.0.1:1']\n    reflection: false\n"
        f"    descriptor_sets: ['{bad}']\n"
    )
    code, _, err = await run_cli("check-config", "--config", str(cfg))
    assert code == 2
    assert "upstreams[0].descriptor_sets" in err and "api.pb" in err


async def test_serve_drains_in_flight_requests_on_sigterm(upstream: RunningServer) -> None:
    bp = await BridgeProcess.start(*serve_args(upstream.target))
    try:
        await bp.wait_for("discovered")
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{bp.proxy_port}/bridgetest.v1.TestService/Sleep"
            in_flight = asyncio.create_task(
                session.post(url, json={"duration": "0.8s", "tag": "drain"})
            )
            await asyncio.sleep(0.3)
            bp.proc.send_signal(signal.SIGTERM)
            resp = await in_flight
            assert resp.status == 200
            assert (await resp.json())["completed"] is True
            assert await bp.wait() == 0
    finally:
        await bp.stop()
        await bp.drain_logs()
    names = [e.get("event") for e in bp.events]
    assert "draining" in names and "stopped" in names
    request_lines = [e for e in bp.events if e.get("event") == "request"]
    assert request_lines[0]["grpc_method"] == "bridgetest.v1.TestService/Sleep"
    assert request_lines[0]["http_status"] == 200 and request_lines[0]["grpc_code"] == "OK"


async def test_serve_starts_before_its_upstream(upstream_factory: object) -> None:
    port = free_port()
    bp = await BridgeProcess.start(
        *serve_args(f"127.0.0.1:{port}"),
        env=bridge_env(
            GRPC_BRIDGE_DISCOVERY__RETRY_INITIAL_S="0.1", GRPC_BRIDGE_DISCOVERY__RETRY_MAX_S="0.5"
        ),
    )
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{bp.admin_port}/readyz") as resp:
                assert resp.status == 503
                report = await resp.json()
                assert report["upstreams"]["default"]["ready"] is False
                assert "discovery" in report["upstreams"]["default"]["reason"]
            async with session.get(f"http://127.0.0.1:{bp.admin_port}/healthz") as resp:
                assert resp.status == 200
            async with session.post(
                f"http://127.0.0.1:{bp.proxy_port}/bridgetest.v1.TestService/Echo", json={}
            ) as resp:
                assert resp.status == 503
                assert (await resp.json())["code"] == 14
            await upstream_factory(port=port)  # type: ignore[operator]
            await bp.wait_for("discovered")
            async with session.get(f"http://127.0.0.1:{bp.admin_port}/readyz") as resp:
                assert resp.status == 200
            async with session.post(
                f"http://127.0.0.1:{bp.proxy_port}/bridgetest.v1.TestService/Echo", json={}
            ) as resp:
                assert resp.status == 200
    finally:
        assert await bp.stop() == 0


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="needs curl")
async def test_demo_prints_curl_lines_that_work() -> None:
    proc = await spawn_demo()
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "demo exited early"
                if line.strip().startswith("curl"):
                    lines.append(line.strip())
                elif lines and not line.strip():
                    break
        assert len(lines) >= 6
        for line in lines:
            assert await curl_status(line) == expected_status(line), line
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
