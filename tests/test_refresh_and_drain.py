"""Live refresh (interval and SIGHUP), failed refreshes, /v1/upstreams, and draining."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp
import structlog

from tests.helpers.harness import running_bridge
from tests.helpers.load import wait_until
from tests.helpers.process import BridgeProcess, bridge_env, free_port, serve_args
from tests.helpers.servers import StartServer

ECHO = "/bridgetest.v1.TestService/Echo"
WHOAMI = "/bridgetest.v1.Other/Whoami"


async def services(b: Any) -> set[str]:
    async with b.session.get(f"{b.admin_url}/v1/services") as resp:
        return {s["name"] for s in (await resp.json())["services"]}


async def test_interval_refresh_picks_up_a_changed_service_set(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory(services=("test", "other"))
    async with running_bridge(server.target, discovery={"refresh_interval_s": 0.1}) as b:
        assert "bridgetest.v1.TestService" in await services(b)
        with structlog.testing.capture_logs() as logs:
            await server.stop(None)
            await upstream_factory(port=server.port, services=("other", "internal"))
            async with asyncio.timeout(5):
                while True:
                    if "bridgetest.v1.TestService" not in await services(b):
                        break
                    await asyncio.sleep(0.05)
        assert await services(b) >= {"bridgetest.v1.Other", "bridgetest.v1.Internal"}
        status, _, _ = await b.post(ECHO, {})
        assert status == 404  # the route went away with the service
        status, _, _ = await b.post("/bridgetest.v1.Internal/Secret", {})
        assert status == 200
        (refreshed,) = [e for e in logs if e["event"] == "refreshed"]
        assert "/bridgetest.v1.TestService/Echo" in refreshed["removed"]
        assert "/bridgetest.v1.Internal/Secret" in refreshed["added"]
        assert refreshed["services_removed"] == ["bridgetest.v1.TestService"]


async def test_failed_refresh_keeps_the_last_good_schema_and_stays_ready(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory()
    async with running_bridge(server.target, discovery={"refresh_interval_s": 0.1}) as b:
        with structlog.testing.capture_logs() as logs:
            await server.stop(None)
            # Same services, but reflection switched off: every refresh now fails.
            await upstream_factory(port=server.port, reflection=())
            await wait_until(
                lambda: any(
                    e["event"] == "refresh_failed" and "not enabled" in e["error"] for e in logs
                ),
                5,
                "a refresh failed by the upstream itself",
            )
        await b.wait_ready(timeout=5)
        status, body, _ = await b.post(ECHO, {"fString": "still routed"})
        assert status == 200 and body["fString"] == "still routed"
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            (info,) = (await resp.json())["upstreams"]
        assert info["ready"] is True
        assert info["last_refresh"]["result"] == "failed"
        assert "reflection is not enabled" in info["last_refresh"]["error"]
        assert info["last_refresh"]["last_success"] is not None
        assert "bridgetest.v1.TestService" in info["services"]


async def test_upstreams_endpoint(upstream_factory: StartServer) -> None:
    server = await upstream_factory()
    async with running_bridge(f"shop={server.target}") as b:
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            assert resp.status == 200
            (info,) = (await resp.json())["upstreams"]
        assert info["name"] == "shop" and info["ready"] is True and info["reason"] is None
        assert info["targets"] == [server.target] and info["addresses"] == [server.target]
        assert info["channels"]["states"] and info["channels"]["generation"] >= 1
        assert "bridgetest.v1.TestService" in info["services"] and info["methods"] > 0
        assert info["last_refresh"]["result"] == "ok" and info["last_refresh"]["at"]
        assert info["retries"]["max_attempts"] == 3
        status, _, _ = await b.get("/v1/upstreams")
        assert status in (404, 503)  # never served on the proxy port
        async with b.session.get(f"{b.admin_url}/metrics") as resp:
            text = await resp.text()
        assert 'grpc_bridge_upstream_ready{upstream="shop"} 1.0' in text
        assert 'grpc_bridge_discovery_refreshes_total{result="success",upstream="shop"}' in text


async def test_sighup_refreshes_at_once(upstream_factory: StartServer) -> None:
    server = await upstream_factory(services=("test", "other"))
    bp = await BridgeProcess.start(
        *serve_args(server.target),
        env=bridge_env(
            GRPC_BRIDGE_DISCOVERY__REFRESH_INTERVAL_S="0",  # only SIGHUP refreshes
            GRPC_BRIDGE_DISCOVERY__RETRY_INITIAL_S="0.05",
            GRPC_BRIDGE_DISCOVERY__RETRY_MAX_S="0.5",
        ),
    )
    try:
        await bp.wait_for("discovered")
        await server.stop(None)
        await upstream_factory(port=server.port, services=("other",))
        bp.proc.send_signal(signal.SIGHUP)
        refreshed = await bp.wait_for("refreshed")
        assert refreshed["services_removed"] == ["bridgetest.v1.TestService"]
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{bp.proxy_port}"
            async with session.post(f"{url}{WHOAMI}", json={}) as resp:
                assert resp.status == 200
            async with session.post(f"{url}{ECHO}", json={}) as resp:
                assert resp.status == 404
    finally:
        assert await bp.stop() == 0
    assert any(e.get("event") == "refresh_requested" for e in bp.events)


async def test_drain_keeps_serving_with_connection_close_then_finishes_in_flight(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory()
    async with running_bridge(server.target, shutdown={"drain_s": 0.4, "timeout_s": 3}) as b:
        loop = asyncio.get_running_loop()
        in_flight = asyncio.create_task(
            b.post("/bridgetest.v1.TestService/Sleep", {"duration": "0.8s", "tag": "drain"})
        )
        await asyncio.sleep(0.1)
        started = loop.time()
        stopping = asyncio.create_task(b.server.drain_and_stop())
        await asyncio.sleep(0.05)
        async with b.session.get(f"{b.admin_url}/readyz") as resp:
            assert resp.status == 503 and (await resp.json())["draining"] is True
        assert not b.server.bridge.closing.is_set()  # streams keep going during the grace
        status, _, headers = await b.post(ECHO, {})
        assert status == 200 and headers["Connection"] == "close"
        await stopping
        status, body, _ = await in_flight
        assert status == 200 and body["completed"] is True
        assert b.server.bridge.closing.is_set()
        assert loop.time() - started < 3
        try:
            await b.post(ECHO, {})
        except aiohttp.ClientConnectionError:
            pass
        else:
            raise AssertionError("the listener still accepts after the drain")


async def test_sigterm_with_calls_and_streams_in_flight(upstream_factory: StartServer) -> None:
    import orjson

    server = await upstream_factory()
    bp = await BridgeProcess.start(
        *serve_args(server.target),
        env=bridge_env(GRPC_BRIDGE_SHUTDOWN__DRAIN_S="0.6", GRPC_BRIDGE_SHUTDOWN__TIMEOUT_S="5"),
    )
    try:
        await bp.wait_for("discovered")
        url = f"http://127.0.0.1:{bp.proxy_port}"
        async with aiohttp.ClientSession() as session:
            stream = await session.get(
                f"{url}/bridgetest.v1.TestService/ServerStream?count=100&interval=0.1s&tag=s"
            )
            assert orjson.loads(await stream.content.readline())["result"]["index"] == 0
            unary = asyncio.create_task(
                session.post(
                    f"{url}/bridgetest.v1.TestService/Sleep", json={"duration": "1s", "tag": "u"}
                )
            )
            await asyncio.sleep(0.1)
            bp.proc.send_signal(signal.SIGTERM)
            await bp.wait_for("draining")
            async with session.get(f"http://127.0.0.1:{bp.admin_port}/readyz") as resp:
                assert resp.status == 503
            lines = [orjson.loads(line) async for line in stream.content]
            # The stream flowed through the drain window, then got its terminal line.
            assert sum("result" in line for line in lines) >= 3
            assert lines[-1]["error"]["code"] == 14
            resp = await unary
            assert resp.status == 200 and (await resp.json())["completed"] is True
        assert await bp.wait(timeout=10) == 0
    finally:
        await bp.stop()
    await server.test.wait_for("cancelled", "s")


async def test_restart_on_one_port_without_dropping_requests(upstream_factory: StartServer) -> None:
    """listen.reuse_port: a new bridge takes over the port while the old one drains."""
    server = await upstream_factory()
    env = bridge_env(GRPC_BRIDGE_LISTEN__REUSE_PORT="true", GRPC_BRIDGE_SHUTDOWN__DRAIN_S="0.5")
    port = free_port()
    old = await BridgeProcess.start(*serve_args(server.target, port=port), env=env)
    await old.wait_for("discovered")
    url = f"http://127.0.0.1:{port}/bridgetest.v1.TestService/Echo"
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with session.post(url, json={"fInt32": 1}) as resp:
                statuses.append(resp.status)

    async with aiohttp.ClientSession() as session:
        clients = [asyncio.create_task(load(session)) for _ in range(4)]
        await asyncio.sleep(0.3)
        new = await BridgeProcess.start(*serve_args(server.target, port=port), env=env)
        try:
            await new.wait_for("discovered")
            old.proc.send_signal(signal.SIGTERM)
            assert await old.wait() == 0
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*clients)
        finally:
            await new.stop()
    assert len(statuses) > 50
    assert set(statuses) == {200}
