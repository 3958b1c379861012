"""The reflection index is built for the bridge, not for the call that first asked for it.

The first reflection call after a route table swap starts the build, but the
build runs in the context the bridge was made in: its log lines carry the
process's fields (a worker's ``worker``), never that call's ``trace_id`` and
``span_id``. A build that failed is not kept for the table's life: the next
reflection call builds again (and only it: nothing retries in the background).
A call still waiting for the index when the bridge stops ends UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2

import grpc_bridge.bridge
from grpc_bridge.bridge import Bridge
from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.discovery.reflection_index import ReflectionIndex
from grpc_bridge.errors import UpstreamError
from grpc_bridge.routing.plan import UpstreamLimits
from grpc_bridge.routing.reflection import exposed_index, reflection_plans
from grpc_bridge.routing.table import RouteTable
from grpc_bridge.status import Code
from grpc_bridge.upstream.local_reflection import LOCAL_UPSTREAM
from tests.helpers.harness import bridge_settings
from tests.helpers.process import free_port

(V1, _) = (plan.info for plan in reflection_plans(JsonOptions(), UpstreamLimits(10, 10)))


def _descriptor_set(path: Path, package: str, service: str) -> str:
    """``shared.proto`` declaring ``package.service``: two of these with other names
    are two files of one name, the second left out of the index (and logged)."""
    file = descriptor_pb2.FileDescriptorProto(name="shared.proto", package=package)
    file.message_type.add(name="Msg")
    file.service.add(name=service).method.add(
        name="Call", input_type=f".{package}.Msg", output_type=f".{package}.Msg"
    )
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=[file]).SerializeToString())
    return str(path)


@asynccontextmanager
async def _started(tmp_path: Path) -> AsyncIterator[Bridge]:
    """A bridge of two descriptor-set upstreams (nothing listens at their targets: the
    reflection calls are answered by the bridge itself), made where ``worker=3`` is bound.
    Reflection lists ``a.One`` only: b's ``shared.proto`` is left out."""
    upstreams = [
        {
            "name": name,
            "targets": [f"127.0.0.1:{free_port()}"],
            "reflection": False,
            "descriptor_sets": [_descriptor_set(tmp_path / f"{name}.pb", name, service)],
        }
        for name, service in (("a", "One"), ("b", "Two"))
    ]
    with structlog.contextvars.bound_contextvars(worker=3):
        bridge = Bridge(bridge_settings(None, upstreams=upstreams))
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


async def _list_services(bridge: Bridge) -> list[str]:
    """One reflection call: ``list_services``, as a client on the proxy port makes it."""
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    invoker = bridge.invoker(LOCAL_UPSTREAM)
    async with invoker.request_stream(V1, metadata=[], timeout=10) as call:
        await call.write(V1.input_class.FromString(request.SerializeToString()))
        await call.done_writing()
        answer: Any = await call.read()
    return [s.name for s in answer.list_services_response.service]


async def test_the_build_logs_with_the_bridges_fields_not_the_first_calls(
    tmp_path: Path,
) -> None:
    async with _started(tmp_path) as bridge:
        with (
            structlog.testing.capture_logs(
                processors=[structlog.contextvars.merge_contextvars]
            ) as logs,
            structlog.contextvars.bound_contextvars(trace_id="t" * 32, span_id="s" * 16),
        ):
            assert await _list_services(bridge) == ["a.One"]
    (skipped,) = [e for e in logs if e["event"] == "reflection_file_skipped"]
    assert "shared.proto" in skipped["problem"]
    assert skipped.get("worker") == 3
    assert "trace_id" not in skipped and "span_id" not in skipped, skipped


async def test_a_failed_build_is_tried_again_by_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = 0

    async def failing_once(
        table: RouteTable, received: Mapping[DescriptorPool, Mapping[str, bytes]]
    ) -> ReflectionIndex:
        nonlocal builds
        builds += 1
        if builds == 1:
            raise RuntimeError("a bug")
        return await exposed_index(table, received)

    monkeypatch.setattr(grpc_bridge.bridge, "exposed_index", failing_once)
    async with _started(tmp_path) as bridge:
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(UpstreamError) as failed:
                await _list_services(bridge)
            assert failed.value.code == Code.INTERNAL
            await asyncio.sleep(0.1)
            assert builds == 1  # not retried in the background
            assert await _list_services(bridge) == ["a.One"]
            assert await _list_services(bridge) == ["a.One"]
    assert builds == 2  # built again once, then kept
    assert [e["task"] for e in logs if e["event"] == "background_task_crashed"] == [
        "reflection-index"
    ]


async def test_a_call_waiting_for_the_index_when_the_bridge_stops_ends_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    building = asyncio.Event()

    async def never_done(
        table: RouteTable, received: Mapping[DescriptorPool, Mapping[str, bytes]]
    ) -> ReflectionIndex:
        building.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(grpc_bridge.bridge, "exposed_index", never_done)
    async with _started(tmp_path) as bridge:
        waiting = asyncio.ensure_future(_list_services(bridge))
        async with asyncio.timeout(10):
            await building.wait()
    with pytest.raises(UpstreamError) as failed:
        async with asyncio.timeout(10):
            await waiting
    assert (failed.value.code, str(failed.value)) == (Code.UNAVAILABLE, "the bridge is stopping")
