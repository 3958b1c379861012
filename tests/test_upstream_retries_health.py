"""Retries (unary only, bounded, throttled), health-checked readiness and compression."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from bridgetest.v1 import common_pb2, kitchen_pb2, other_pb2_grpc
from grpc_health.v1 import health_pb2

from grpc_bridge.demo.reflection import enable_reflection
from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from tests.helpers.harness import running_bridge
from tests.helpers.native_tools import method, native
from tests.helpers.servers import OTHER_SERVICE, TEST_SERVICE, StartServer, TestServiceImpl

WHOAMI = "/bridgetest.v1.Other/Whoami"


class FlakyOther(other_pb2_grpc.OtherServicer):
    """Fails every call UNAVAILABLE while ``failing`` > 0 (counting down), counting attempts."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.attempts = 0

    async def Whoami(self, request: Any, context: Any) -> Any:
        self.attempts += 1
        if self.failing:
            self.failing -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "flaky")
        return common_pb2.Nested(name="flaky", value=self.attempts)


class CountingTestService(TestServiceImpl):
    """ServerStream fails UNAVAILABLE before any message and counts its attempts."""

    stream_attempts = 0

    async def ServerStream(self, request: Any, context: Any) -> None:
        self.stream_attempts += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "flaky stream")


@contextlib.asynccontextmanager
async def flaky_server(failing: int) -> AsyncIterator[tuple[str, FlakyOther, CountingTestService]]:
    server = grpc.aio.server()
    other = FlakyOther(failing)
    test = CountingTestService()
    other_pb2_grpc.add_OtherServicer_to_server(other, server)
    from bridgetest.v1 import kitchen_pb2_grpc

    kitchen_pb2_grpc.add_TestServiceServicer_to_server(test, server)
    enable_reflection(server, [OTHER_SERVICE, TEST_SERVICE], ("v1",))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", other, test
    finally:
        await server.stop(None)


async def test_unary_unavailable_is_retried() -> None:
    async with flaky_server(failing=0) as (target, other, _), running_bridge(target) as b:
        other.failing, other.attempts = 1, 0
        status, body, _ = await b.post(WHOAMI, {})
        assert status == 200 and body["value"] == 2  # failed once, retried once
        other.failing, other.attempts = 5, 0
        status, body, _ = await b.post(WHOAMI, {})
        assert status == 503 and body["code"] == 14
        assert other.attempts == 3  # bounded: max_attempts


async def test_retries_can_be_turned_off() -> None:
    async with (
        flaky_server(failing=0) as (target, other, _),
        running_bridge(None, upstreams=[{"targets": [target], "retries": 0}]) as b,
    ):
        other.failing, other.attempts = 1, 0
        status, _, _ = await b.post(WHOAMI, {})
        assert status == 503 and other.attempts == 1


async def test_retries_are_throttled() -> None:
    upstreams = [{"targets": ["placeholder"], "retries": {"throttle": {"max_tokens": 2}}}]
    async with flaky_server(failing=0) as (target, other, _):
        upstreams[0]["targets"] = [target]
        async with running_bridge(None, upstreams=upstreams) as b:
            other.failing, other.attempts = 100, 0
            for _ in range(3):
                status, _, _ = await b.post(WHOAMI, {})
                assert status == 503
            # Two tokens: the first failure leaves 1 (= max_tokens / 2) and retries stop.
            assert other.attempts == 3


async def test_streaming_calls_are_not_retried() -> None:
    """A server stream failing UNAVAILABLE from the upstream's application is not sent again."""
    async with flaky_server(failing=0) as (target, _, test), native(f"ipv4:{target}") as invoker:
        call = invoker.server_stream(
            method("ServerStream", kitchen_pb2.StreamReply),
            kitchen_pb2.StreamRequest(count=1),
            metadata=[],
            timeout=5,
        )
        async with call:
            with pytest.raises(UpstreamError) as failure:
                await call.read()
    assert failure.value.code == Code.UNAVAILABLE
    assert test.stream_attempts == 1


async def test_health_check_drives_readiness(upstream_factory: StartServer) -> None:
    server = await upstream_factory()
    assert server.health is not None
    upstreams = [{"name": "h", "targets": [server.target], "health_check": True}]
    async with running_bridge(None, upstreams=_with_interval(upstreams)) as b:
        await server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        report = await _readiness(b, 503)
        assert (
            report["upstreams"]["h"]["reason"] == "health check of service '' answered NOT_SERVING"
        )
        status, _, _ = await b.post("/bridgetest.v1.TestService/Echo", {})
        assert status == 200  # readiness only: requests are still forwarded
        await server.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await _readiness(b, 200)
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            (info,) = (await resp.json())["upstreams"]
        assert info["health"]["status"] == "SERVING" and info["health"]["enabled"] is True


async def test_health_check_of_a_named_service_and_of_a_server_without_health(
    upstream_factory: StartServer,
) -> None:
    with_health = await upstream_factory()
    without = await upstream_factory(health=False)
    upstreams = _with_interval(
        [
            {"name": "named", "targets": [with_health.target], "health_check": True,
             "health_service": TEST_SERVICE},
            {"name": "none", "targets": [without.target], "health_check": True,
             "services": {"exclude": ["*"]}},
        ]
    )  # fmt: skip
    async with running_bridge(None, ready=False, upstreams=upstreams) as b:
        report = await _readiness(
            b, 503, lambda r: r["upstreams"]["named"]["ready"] and "Health" in _reason(r, "none")
        )
        assert "does not serve grpc.health.v1.Health" in _reason(report, "none")
        assert with_health.health is not None
        await with_health.health.set(TEST_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        report = await _readiness(b, 503, lambda r: not r["upstreams"]["named"]["ready"])
        assert _reason(report, "named") == (
            f"health check of service {TEST_SERVICE!r} answered NOT_SERVING"
        )


def _reason(report: dict[str, Any], upstream: str) -> str:
    return str(report["upstreams"][upstream].get("reason", ""))


def _with_interval(upstreams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**u, "health_interval_s": 0.1} for u in upstreams]


async def _readiness(
    b: Any,
    status: int,
    predicate: Callable[[dict[str, Any]], bool] = lambda r: True,
    within: float = 5.0,
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            async with b.session.get(f"{b.admin_url}/readyz") as resp:
                report = dict(await resp.json())
                if resp.status == status and predicate(report):
                    return report
            await asyncio.sleep(0.05)


class ByteCounter:
    """A TCP relay in front of an upstream that counts the bytes the bridge sends."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = 0
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if count:
                        self.sent += len(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self._writers:
            writer.close()
        await self.server.wait_closed()


@pytest.mark.parametrize(("compression", "compressed"), [("gzip", True), ("none", False)])
async def test_gzip_compression(
    upstream_factory: StartServer, compression: str, compressed: bool
) -> None:
    server = await upstream_factory()
    relay = ByteCounter(server.port)
    port = await relay.start()
    try:
        upstreams = [{"targets": [f"127.0.0.1:{port}"], "compression": compression}]
        async with running_bridge(None, upstreams=upstreams) as b:
            before = relay.sent
            text = "compressible " * 20_000  # 260 kB
            status, body, _ = await b.post("/bridgetest.v1.TestService/Echo", {"fString": text})
            assert status == 200 and body["fString"] == text
            sent = relay.sent - before
            assert (sent < 50_000) is compressed, sent
    finally:
        await relay.stop()
