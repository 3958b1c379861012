"""The connection pool against real upstreams: balancing, restarts, DNS changes, close."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from bridgetest.v1 import kitchen_pb2

from grpc_bridge.errors import BridgeError
from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.dial import ConnectionPlan
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.invoker import Invoker
from grpc_bridge.upstream.pool import ConnectionPool
from grpc_bridge.upstream.resolver import Address, ConnectionTargets, parse_target, unresolved
from tests.helpers.frame_peer import eventually
from tests.helpers.harness import running_bridge
from tests.helpers.load import steady_load, wait_until
from tests.helpers.native_tools import method, sleep_request
from tests.helpers.servers import StartServer

WHOAMI = "/bridgetest.v1.Other/Whoami"
ECHO_METADATA = "/bridgetest.v1.TestService/EchoMetadata"


async def names(b: Any, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, body, _ = await b.post(WHOAMI, {})
        assert status == 200, body
        seen[body["name"]] += 1
    return seen


async def test_several_targets_are_balanced_round_robin(upstream_factory: StartServer) -> None:
    a = await upstream_factory(name="a")
    c = await upstream_factory(name="c")
    upstreams = [{"name": "pair", "targets": [a.target, c.target], "pool_size": 2}]
    async with running_bridge(None, upstreams=upstreams) as b:
        seen = await names(b, 20)
        assert set(seen) == {"a", "c"}
        assert min(seen.values()) >= 6, seen  # round robin, not random or sticky
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            (info,) = (await resp.json())["upstreams"]
        assert sorted(info["addresses"]) == sorted([a.target, c.target])
        assert info["grpc_targets"] == [f"ipv4:{','.join(sorted(info['addresses']))}"]
        # The native client: one connection per address per pool slot (what 2
        # grpc channels with round_robin over 2 addresses open too).
        assert info["transport"] == "native"
        assert len(info["channels"]["states"]) == 4


async def test_pool_size_is_separate_connections(upstream_factory: StartServer) -> None:
    server = await upstream_factory()
    upstreams = [{"name": "u", "targets": [server.target], "pool_size": 3}]
    async with running_bridge(None, upstreams=upstreams) as b:
        peers = set()
        for _ in range(9):
            status, body, _ = await b.post(ECHO_METADATA, {})
            assert status == 200
            peers.add(body["peer"])
        # Three client ports: three HTTP/2 connections, calls spread over all of them.
        assert len(peers) == 3, peers


async def test_upstream_killed_and_restarted_under_load(upstream_factory: StartServer) -> None:
    server = await upstream_factory(name="a")
    port = server.port
    async with running_bridge(server.target) as b:
        loop = asyncio.get_running_loop()
        async with steady_load(f"{b.url}{WHOAMI}", {}) as load:
            await wait_until(lambda: len(load.outcomes) > 20, 5, "traffic flows")
            await server.stop(None)
            down = loop.time()
            await wait_until(lambda: len(load.since(down + 0.1)) > 20, 5, "answers while down")
            await upstream_factory(name="a", port=port)
            up = loop.time()
            await wait_until(
                lambda: any(o.status == 200 for o in load.since(up)), 5, "success after restart"
            )
            back = next(o for o in load.since(up) if o.status == 200)
        while_down = [o for o in load.since(down + 0.1) if o.started + o.seconds < up]
        assert while_down and all(o.status == 503 for o in while_down)
        assert all(o.body["code"] == 14 for o in while_down)
        assert max(o.seconds for o in while_down) < 1.0  # fast 503s, never a hang
        assert back.started - up < 3.0


async def test_replica_restart_loses_only_calls_in_flight(upstream_factory: StartServer) -> None:
    a = await upstream_factory(name="a")
    c = await upstream_factory(name="c")
    async with running_bridge(None, upstreams=[{"targets": [a.target, c.target]}]) as b:
        loop = asyncio.get_running_loop()
        async with steady_load(f"{b.url}{WHOAMI}", {}, workers=4) as load:
            await wait_until(lambda: len(load.outcomes) > 20, 5, "traffic flows")
            await a.stop(None)
            await asyncio.sleep(0.3)
            await upstream_factory(name="a", port=a.port)
            restarted = loop.time()
            await wait_until(
                lambda: any(o.body.get("name") == "a" for o in load.since(restarted)),
                5,
                "the restarted replica gets traffic again",
            )
        # At most the calls in flight on the killed replica fail (gRPC retries most of them).
        assert len(load.failures()) <= 4, load.failures()


def table_resolver(table: dict[str, Sequence[Address]]) -> Any:
    """A resolver the test controls: ``table[host]``, or OSError when missing."""

    async def resolve(host: str, port: int) -> Sequence[Address]:
        if host not in table:
            raise OSError(f"[Errno -2] Name or service not known: {host!r}")
        return table[host]

    return resolve


async def test_dns_targets_are_re_resolved(upstream_factory: StartServer) -> None:
    from grpc_bridge.app import start
    from tests.helpers.harness import RunningBridge, bridge_settings

    a = await upstream_factory(name="a")
    c = await upstream_factory(name="c")
    table: dict[str, Sequence[Address]] = {"svc.test": [("127.0.0.1", a.port)]}
    settings = bridge_settings(
        None,
        upstreams=[
            {"name": "svc", "targets": ["dns:///svc.test:50051"], "resolve_interval_s": 0.1}
        ],
    )
    import aiohttp

    server = await start(settings, resolve=table_resolver(table))
    async with aiohttp.ClientSession() as session:
        b = RunningBridge(server, session)
        try:
            await b.wait_ready()
            assert set(await names(b, 4)) == {"a"}
            # A call in flight on the old channels finishes after they are replaced.
            sleeping = asyncio.create_task(
                b.post("/bridgetest.v1.TestService/Sleep", {"duration": "0.6s", "tag": "old"})
            )
            await asyncio.sleep(0.1)
            table["svc.test"] = [("127.0.0.1", a.port), ("127.0.0.1", c.port)]  # scaled up
            await _until_names(b, {"a", "c"})
            status, body, _ = await sleeping
            assert status == 200 and body["completed"] is True
            del table["svc.test"]  # a DNS failure keeps the last good addresses
            await asyncio.sleep(0.3)
            assert set(await names(b, 6)) == {"a", "c"}
            async with session.get(f"{b.admin_url}/v1/upstreams") as resp:
                (info,) = (await resp.json())["upstreams"]
            assert "svc.test" in info["resolve_error"] and len(info["addresses"]) == 2
            table["svc.test"] = [("127.0.0.1", c.port)]  # scaled down
            await _until_names(b, {"c"})
        finally:
            await server.drain_and_stop()


async def _until_names(b: Any, expected: set[str]) -> None:
    async with asyncio.timeout(5):
        while True:
            if set(await names(b, 6)) == expected:
                return
            await asyncio.sleep(0.05)


async def test_localhost_through_the_system_resolver(upstream_factory: StartServer) -> None:
    server = await upstream_factory(name="a")
    async with running_bridge(f"localhost:{server.port}") as b:
        assert set(await names(b, 2)) == {"a"}
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            (info,) = (await resp.json())["upstreams"]
        assert f"127.0.0.1:{server.port}" in info["addresses"]
        assert info["authority"] == f"localhost:{server.port}"


async def test_rebuild_lets_calls_finish_and_close_cuts_retiring_connections(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory()
    pool = ConnectionPool(Upstream(targets=[server.target]), retire_grace=10)
    plan = ConnectionPlan(unresolved([parse_target(server.target)]))
    pool.open(plan)
    invoker = Invoker(pool)
    sleep_method = method("Sleep", kitchen_pb2.SleepResponse)

    def sleep(seconds: float, tag: str) -> asyncio.Task[Any]:
        call = invoker.unary(sleep_method, sleep_request(seconds, tag), metadata=[], timeout=10)
        return asyncio.ensure_future(call)

    try:
        first_ids = {pool.pick().id for _ in range(2)}
        finishing = sleep(0.3, "finishes")
        await asyncio.sleep(0.05)
        # The same server by another target string: a changed address set.
        moved = ConnectionPlan(ConnectionTargets((f"ipv4:{server.target}",), server.target))
        assert pool.rebuild(moved)
        assert not pool.rebuild(moved)  # unchanged
        assert pool.generation == 2 and pool.retiring == 2
        assert not {pool.pick().id for _ in range(2)} & first_ids
        assert (await finishing).response.completed  # the old connection waited for it
        await wait_until(lambda: pool.retiring == 0, 2, "idle old connections closed")
        cut = sleep(10, "cut")
        await asyncio.sleep(0.05)
        pool.rebuild(plan)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await pool.close()
        assert loop.time() - started < 1
        with pytest.raises(BridgeError):
            await cut
        await server.test.wait_for("cancelled", "cut")
    finally:
        await pool.close()


# -- closing the native pool with calls in flight ---------------------------------------

SLEEP = method("Sleep", kitchen_pb2.SleepResponse)


@dataclass
class _Peer:
    target: str
    #: (frame type, stream id) in the order the peer read them.
    seen: list[tuple[int, int]] = field(default_factory=list)
    ended: bool = False


@asynccontextmanager
async def _recording_peer() -> AsyncIterator[_Peer]:
    """An HTTP/2 server that answers SETTINGS and PING, never a request, and records frames."""
    writers: list[asyncio.StreamWriter] = []
    peer = _Peer("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await reader.readexactly(len(frames.PREFACE))
            writer.write(frames.settings({}))
            while True:
                head = await reader.readexactly(9)
                high, low, kind, flags, stream_id = frames.HEADER.unpack(head)
                payload = await reader.readexactly((high << 16) | low)
                peer.seen.append((kind, stream_id))
                if kind == frames.SETTINGS and not flags & frames.ACK:
                    writer.write(frames.SETTINGS_ACK)
                elif kind == frames.PING and not flags & frames.ACK:
                    writer.write(frames.ping(payload, ack=True))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            peer.ended = True
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    peer.target = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield peer
    finally:
        server.close()
        for writer in writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


def _pool(target: str) -> tuple[ConnectionPool, Invoker]:
    pool = ConnectionPool(Upstream(targets=[target], pool_size=1), retire_grace=1)
    pool.open(ConnectionPlan(unresolved([parse_target(target)])))
    return pool, Invoker(pool)


async def test_pool_close_with_a_call_in_flight_sends_goaway() -> None:
    async with _recording_peer() as peer:
        pool, invoker = _pool(peer.target)
        call = asyncio.create_task(
            invoker.unary(SLEEP, sleep_request(10, "x"), metadata=[], timeout=20)
        )
        try:
            await eventually(lambda: (frames.HEADERS, 1) in peer.seen, within=5.0)
            # ConnectionPool.close(): Connection.close() (GOAWAY), then abort() for the
            # connections still busy, as Bridge.stop() does.
            await pool.close()
            await eventually(lambda: peer.ended, within=5.0)
            with pytest.raises(BridgeError):
                await asyncio.wait_for(call, 5)
        finally:
            call.cancel()
            with contextlib.suppress(BaseException):
                await call
        assert (frames.GOAWAY, 0) in peer.seen, peer.seen
