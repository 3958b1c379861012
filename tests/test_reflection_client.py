"""ReflectionClient over the native client, and enable_reflection, against real grpc.aio servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

from grpc_bridge.demo.reflection import V1_SERVICE, V1ALPHA_SERVICE, enable_reflection
from grpc_bridge.discovery.loader import DiscoveryError
from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.reflection import ReflectionClient
from tests.helpers.native_tools import native
from tests.helpers.servers import (
    HEALTH_SERVICE,
    INTERNAL_SERVICE,
    OTHER_SERVICE,
    TEST_SERVICE,
    RunningServer,
    StartServer,
)


def _names(blobs: list[bytes]) -> list[str]:
    return [descriptor_pb2.FileDescriptorProto.FromString(b).name for b in blobs]


@pytest.mark.parametrize(
    ("versions", "expected", "listed"),
    [
        (("v1", "v1alpha"), "v1", {V1_SERVICE, V1ALPHA_SERVICE}),
        (("v1",), "v1", {V1_SERVICE}),
        (("v1alpha",), "v1alpha", {V1ALPHA_SERVICE}),
    ],
)
async def test_connect_picks_newest_version_served(
    upstream_factory: StartServer, versions: tuple[str, ...], expected: str, listed: set[str]
) -> None:
    server = await upstream_factory(reflection=versions)
    async with native(server.target) as invoker:
        client = await ReflectionClient.connect(invoker)
        services = await client.list_services()
        await client.close()

    assert client.version == expected
    assert client.description == f"reflection {expected}"
    # The reflection services served are listed too, and only those.
    assert set(services) == {TEST_SERVICE, OTHER_SERVICE, INTERNAL_SERVICE, HEALTH_SERVICE} | listed


async def test_no_reflection_is_a_discovery_error(upstream_factory: StartServer) -> None:
    server = await upstream_factory(reflection=())
    async with native(server.target) as invoker:
        with pytest.raises(DiscoveryError, match="reflection is not enabled") as info:
            await ReflectionClient.connect(invoker, upstream="shop")
    assert info.value.upstream == "shop"
    assert "upstream 'shop'" in str(info.value)


async def test_unreachable_upstream_fails_fast(upstream_factory: StartServer) -> None:
    server = await upstream_factory()
    await server.stop()  # the port is now closed: connection refused
    started = time.monotonic()
    async with native(server.target) as invoker:
        with pytest.raises(DiscoveryError, match="UNAVAILABLE") as info:
            await ReflectionClient.connect(invoker, upstream="shop", timeout=5.0)
    assert time.monotonic() - started < 3.0
    assert "reflection v1" in str(info.value)
    assert isinstance(info.value.__cause__, UpstreamError)
    assert info.value.__cause__.code == Code.UNAVAILABLE


async def test_files_with_dependencies(upstream: RunningServer) -> None:
    async with native(upstream.target) as invoker:
        client = await ReflectionClient.connect(invoker)
        by_symbol = _names(await client.file_containing_symbol(TEST_SERVICE))
        by_name = _names(await client.file_by_filename("bridgetest/v1/common.proto"))

    # grpcio's servicer sends the transitive imports along.
    assert by_symbol[0] == "bridgetest/v1/kitchen.proto"
    assert {"bridgetest/v1/common.proto", "google/protobuf/timestamp.proto"} <= set(by_symbol)
    assert by_name == ["bridgetest/v1/common.proto"]


async def test_error_response_names_request_and_code(upstream: RunningServer) -> None:
    async with native(upstream.target) as invoker:
        client = await ReflectionClient.connect(invoker)
        with pytest.raises(
            DiscoveryError, match=r"file_containing_symbol\('no.such.Svc'\): NOT_FOUND"
        ):
            await client.file_containing_symbol("no.such.Svc")
        with pytest.raises(DiscoveryError, match=r"file_by_filename\('nope.proto'\): NOT_FOUND"):
            await client.file_by_filename("nope.proto")


@pytest.mark.parametrize("versions", [("v1",), ("v1alpha",)])
async def test_v1_reflection_service_is_describable(
    upstream_factory: StartServer, versions: tuple[str, ...]
) -> None:
    # grpcio-reflection has no v1 proto; enable_reflection serves a derived one
    # so `grpcurl describe grpc.reflection.v1.ServerReflection` works.
    server = await upstream_factory(reflection=versions)
    async with native(server.target) as invoker:
        client = await ReflectionClient.connect(invoker)
        blobs = await client.file_containing_symbol(V1_SERVICE)
        assert blobs == await client.file_by_filename("grpc/reflection/v1/reflection.proto")

    pool = descriptor_pool.DescriptorPool()
    for blob in blobs:
        pool.AddSerializedFile(blob)
    method = pool.FindServiceByName(V1_SERVICE).methods_by_name["ServerReflectionInfo"]
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming
    assert method.server_streaming


def test_enable_reflection_rejects_unknown_versions() -> None:
    with pytest.raises(ValueError, match="v2"):
        enable_reflection(None, [], ("v1", "v2"))


class _Recorder:
    """A reflection endpoint that records metadata and never answers."""

    def __init__(self) -> None:
        self.metadata: list[tuple[str, str]] = []
        self.calls = 0

    async def hang(self, request_iterator: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        self.calls += 1
        self.metadata = [(key, value) for key, value in context.invocation_metadata()]
        await asyncio.sleep(30)
        yield b""


@pytest.fixture
async def hanging_server() -> AsyncIterator[tuple[str, _Recorder]]:
    recorder = _Recorder()
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        V1_SERVICE, {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(recorder.hang)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        await server.stop(None)


async def test_every_request_has_a_deadline_and_metadata(
    hanging_server: tuple[str, _Recorder],
) -> None:
    target, recorder = hanging_server
    started = time.monotonic()
    async with native(target) as invoker:
        with pytest.raises(DiscoveryError, match="DEADLINE_EXCEEDED"):
            await ReflectionClient.connect(
                invoker, timeout=0.3, metadata=[("authorization", "Bearer t")]
            )
    assert time.monotonic() - started < 3.0
    assert recorder.calls == 1  # DEADLINE_EXCEEDED is no reason to try v1alpha
    assert ("authorization", "Bearer t") in recorder.metadata
