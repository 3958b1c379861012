"""Discovery as the bridge uses it: sources, filters, readiness, introspection, logs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import structlog
from bridgetest.v1 import kitchen_pb2, other_pb2

from tests.helpers.descriptors import with_imports, write_set
from tests.helpers.grpc_wiretap import Wiretap
from tests.helpers.harness import running_bridge
from tests.helpers.process import free_port
from tests.helpers.servers import StartServer

ECHO = "/bridgetest.v1.TestService/Echo"


async def test_v1alpha_only_upstream(upstream_factory: StartServer) -> None:
    server = await upstream_factory(reflection=("v1alpha",))
    async with running_bridge(server.target) as b:
        assert b.server.bridge.upstreams["default"].schema.source == "reflection v1alpha"  # type: ignore[union-attr]
        status, body, _ = await b.post(ECHO, {"fString": "via v1alpha"})
        assert status == 200 and body["fString"] == "via v1alpha"


async def test_v1_preferred(upstream_factory: StartServer) -> None:
    server = await upstream_factory(reflection=("v1", "v1alpha"))
    async with running_bridge(server.target) as b:
        assert b.server.bridge.upstreams["default"].schema.source == "reflection v1"  # type: ignore[union-attr]


async def test_descriptor_sets_for_upstream_without_reflection(
    upstream_factory: StartServer, tmp_path: Path
) -> None:
    server = await upstream_factory(reflection=())
    pb = write_set(tmp_path / "api.pb", *with_imports(kitchen_pb2.DESCRIPTOR, other_pb2.DESCRIPTOR))
    upstreams = [
        {
            "name": "legacy",
            "targets": [server.target],
            "reflection": False,
            "descriptor_sets": [str(pb)],
        }
    ]
    async with running_bridge(None, upstreams=upstreams) as b:
        status, body, _ = await b.post(ECHO, {"fInt64": "12"})
        assert status == 200 and body["fInt64"] == "12"
        status, body, _ = await b.post("/bridgetest.v1.Other/Whoami", {"value": 3})
        assert status == 200 and body == {"name": server.name, "value": 3}


async def test_include_exclude(upstream_factory: StartServer) -> None:
    server = await upstream_factory()
    upstreams = [
        {
            "name": "u",
            "targets": [server.target],
            "services": {"include": ["bridgetest.v1.*"], "exclude": ["*.Internal"]},
        }
    ]
    async with running_bridge(None, upstreams=upstreams) as b:
        status, _, _ = await b.post("/bridgetest.v1.Internal/Secret", {})
        assert status == 404
        status, _, _ = await b.post("/grpc.health.v1.Health/Check", {})
        assert status == 404  # not included
        # Reflection lists what the filters keep (routing/reflection.py).
        status, body, _ = await b.post(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", {"listServices": ""}
        )
        assert status == 200, body
        (line,) = body.splitlines()  # a bidi method: NDJSON, one answer per request
        listed = [s["name"] for s in json.loads(line)["result"]["listServicesResponse"]["service"]]
        assert listed == ["bridgetest.v1.Other", "bridgetest.v1.TestService"]
        status, _, _ = await b.post("/bridgetest.v1.Other/Whoami", {})
        assert status == 200


async def test_two_upstreams_each_with_its_own_pool(upstream_factory: StartServer) -> None:
    a = await upstream_factory(name="a", services=("other",))
    c = await upstream_factory(name="c", services=("test",))
    async with running_bridge(f"a={a.target},c={c.target}") as b:
        status, body, _ = await b.post("/bridgetest.v1.Other/Whoami", {})
        assert status == 200 and body["name"] == "a"
        status, _, _ = await b.post(ECHO, {})
        assert status == 200
        pools = {name: s.schema.pool for name, s in b.server.bridge.upstreams.items()}  # type: ignore[union-attr]
        assert pools["a"] is not pools["c"]


async def test_introspection(upstream: Any) -> None:
    async with running_bridge(upstream.target) as b:
        async with b.session.get(f"{b.admin_url}/v1/services") as resp:
            listed = await resp.json()
        services = {s["name"]: s["upstream"] for s in listed["services"]}
        assert services["bridgetest.v1.TestService"] == "default"
        assert "grpc.reflection.v1.ServerReflection" not in services
        assert listed["protocols"][0] == "json"
        assert listed["proxy_port"] == b.server.proxy_port
        async with b.session.get(f"{b.admin_url}/v1/services/bridgetest.v1.TestService") as resp:
            info = await resp.json()
        assert info["proto_file"].endswith(".proto")
        methods = {m["name"]: m for m in info["methods"]}
        assert methods["Lookup"]["http_methods"] == ["GET", "POST"]
        # Every protocol that claims a kind is listed for its methods, JSON for all.
        for method in methods.values():
            assert method["protocols"][0] == "json"
            assert set(method["protocols"]) <= set(listed["protocols"])
        assert methods["Bidi"]["kind"] == "bidi_stream"
        fields = {f["name"]: f for f in methods["Echo"]["request"]["fields"]}
        assert fields["f_int64"]["json_name"] == "fInt64" and fields["f_int64"]["type"] == "int64"
        assert fields["m_str_int"]["map"] == {"key": "string", "value": "int32"}
        assert fields["r_nested"]["repeated"] is True
        assert fields["o_string"]["oneof"] == "choice" and fields["opt_int32"]["optional"] is True
        async with b.session.get(f"{b.admin_url}/v1/services/nope.Service") as resp:
            assert resp.status == 404
            assert (await resp.json())["code"] == 5


async def test_readiness_names_the_upstream_and_why(upstream_factory: StartServer) -> None:
    port = free_port()
    async with running_bridge(f"shop=127.0.0.1:{port}", ready=False) as b:
        await asyncio.sleep(0.3)
        async with b.session.get(f"{b.admin_url}/readyz") as resp:
            assert resp.status == 503
            report = await resp.json()
        assert report["ready"] is False
        assert report["upstreams"]["shop"]["ready"] is False
        assert "UNAVAILABLE" in report["upstreams"]["shop"]["reason"]
        async with b.session.get(f"{b.admin_url}/healthz") as resp:
            assert resp.status == 200
        status, body, _ = await b.post(ECHO, {})
        assert status == 503 and body["code"] == 14 and "shop" in body["message"]
        await upstream_factory(port=port)
        await b.wait_ready()
        status, _, _ = await b.post(ECHO, {})
        assert status == 200


async def test_dead_upstream_gets_a_fast_503(upstream_factory: StartServer) -> None:
    server = await upstream_factory()
    async with running_bridge(server.target) as b:
        await server.stop()
        loop = asyncio.get_running_loop()
        for _ in range(3):
            started = loop.time()
            status, body, _ = await b.post(ECHO, {})
            assert status == 503 and body["code"] == 14
            assert loop.time() - started < 2


async def test_draining_turns_readiness_off(upstream: Any) -> None:
    async with running_bridge(upstream.target, shutdown={"drain_s": 0.5}) as b:
        stopping = asyncio.create_task(b.server.drain_and_stop())
        await asyncio.sleep(0.1)
        async with b.session.get(f"{b.admin_url}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["draining"] is True
        status, _, _ = await b.post(ECHO, {})
        assert status == 200  # still serving during the grace period
        await stopping


async def test_canonical_request_log_line(upstream: Any) -> None:
    async with running_bridge(upstream.target) as b:
        with structlog.testing.capture_logs() as logs:
            await b.post(ECHO, {}, headers={"X-Request-Id": "abc", "traceparent": "00-1-2-01"})
            await b.post("/nope", {})
    lines = [e for e in logs if e["event"] == "request"]
    ok, missing = lines
    assert ok["request_id"] == "abc" and ok["route"] == ECHO and ok["http_status"] == 200
    assert ok["grpc_method"] == "bridgetest.v1.TestService/Echo" and ok["grpc_code"] == "OK"
    assert ok["upstream"] == "default" and ok["traceparent"] == "00-1-2-01" and ok["bytes_in"] == 2
    assert ok["duration_ms"] >= 0 and ok["peer"] == "127.0.0.1"
    assert ok["bytes_out"] > 300  # the Kitchen message (344 bytes) with every field emitted
    assert missing["route"] == "unmatched" and missing["http_status"] == 404
    assert missing["grpc_code"] == "NOT_FOUND" and "no route" in missing["error"]


async def test_reflection_health_and_calls_share_one_connection(
    upstream_factory: StartServer,
) -> None:
    """Discovery and health checks ride the traffic's connections: same client, same
    ``:authority``, no connection of their own (seen by a relay that parses the frames)."""
    server = await upstream_factory()
    tap = Wiretap(server.port)
    port = await tap.start()
    upstreams = [
        {
            "name": "shop",
            "targets": [f"127.0.0.1:{port}"],
            "pool_size": 1,
            "authority": "shop.internal",
            "health_check": True,
            "health_interval_s": 0.2,
        }
    ]
    try:
        async with running_bridge(None, upstreams=upstreams) as b:
            status, _, _ = await b.post(ECHO, {"fString": "x"})
            assert status == 200
            state = b.server.bridge.upstreams["shop"]
            for _ in range(100):
                if state.health.status is not None:
                    break
                await asyncio.sleep(0.05)
            assert state.health.status == "SERVING"
        reflection = tap.calls("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
        health = tap.calls("/grpc.health.v1.Health/Check")
        calls = tap.calls(ECHO)
    finally:
        await tap.stop()
    assert reflection and health and calls
    assert len(tap.connections) == 1
    for request, _ in reflection + health + calls:
        assert request.headers[":authority"] == "shop.internal"
        assert "native http2" in request.headers["user-agent"]
