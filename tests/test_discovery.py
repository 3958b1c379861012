"""Discovery: reflection and descriptor-set files → Schema, on real upstreams."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import pytest
from bridgetest.v1 import common_pb2, kitchen_pb2, other_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2
from google.protobuf.descriptor import FileDescriptor

from grpc_bridge.demo import demo_pb2
from grpc_bridge.discovery.filters import select_services
from grpc_bridge.discovery.loader import (
    DiscoveryError,
    discover,
    discover_symbols,
    load_descriptor_sets,
)
from grpc_bridge.discovery.registry import MethodKind, Schema
from grpc_bridge.upstream.reflection import ReflectionClient
from tests.helpers.descriptors import fdp, with_imports, write_set
from tests.helpers.native_tools import native
from tests.helpers.servers import (
    DEMO_SERVICE,
    HEALTH_SERVICE,
    INTERNAL_SERVICE,
    OTHER_SERVICE,
    TEST_SERVICE,
    RunningServer,
    StartServer,
)

KITCHEN = "bridgetest/v1/kitchen.proto"
COMMON = "bridgetest/v1/common.proto"
OTHER = "bridgetest/v1/other.proto"


async def _discover(server: RunningServer, **filters: list[str]) -> Schema:
    async with native(server.target) as invoker:
        client = await ReflectionClient.connect(invoker, upstream=server.name)
        return await discover(server.name, client, **filters)


# --- reflection ---------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_discover_over_each_reflection_version(
    upstream_factory: StartServer, version: str
) -> None:
    server = await upstream_factory(reflection=(version,))
    schema = await _discover(server)

    assert schema.upstream == "upstream-a"
    assert schema.source == f"reflection {version}"
    # Reflection is how the bridge learns the API, never a routed service.
    assert schema.service_names == (INTERNAL_SERVICE, OTHER_SERVICE, TEST_SERVICE, HEALTH_SERVICE)
    assert not any(path.startswith("/grpc.reflection.") for path in schema.methods)


async def test_discover_symbols_fetches_only_what_declares_them(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory(services=("test", "other", "demo"))
    async with native(server.target) as invoker:
        client = await ReflectionClient.connect(invoker)
        first = await discover_symbols("u", client, [OTHER_SERVICE])
        assert first.service_names == (INTERNAL_SERVICE, OTHER_SERVICE)  # both in other.proto
        assert KITCHEN not in first.files and COMMON in first.files
        # A later symbol adds its file to what was known; reflection's own services count.
        second = await discover_symbols(
            "u",
            client,
            ["demo.v1.Item", "grpc.reflection.v1alpha.ServerReflection"],
            previous=first,
        )
    assert set(second.service_names) == {
        INTERNAL_SERVICE,
        OTHER_SERVICE,
        DEMO_SERVICE,
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert second.pool.FindMessageTypeByName("demo.v1.Item").fields_by_name["price_cents"]
    assert "/bridgetest.v1.Other/Whoami" in second.methods


async def test_methods_kinds_paths_and_side_effects(upstream: RunningServer) -> None:
    schema = await _discover(upstream)
    test_methods = {
        info.name: info for info in schema.methods.values() if info.service == TEST_SERVICE
    }

    assert {name: info.kind for name, info in test_methods.items()} == {
        "Echo": MethodKind.UNARY,
        "Lookup": MethodKind.UNARY,
        "Fail": MethodKind.UNARY,
        "Sleep": MethodKind.UNARY,
        "EchoMetadata": MethodKind.UNARY,
        "ServerStream": MethodKind.SERVER_STREAM,
        "ClientStream": MethodKind.CLIENT_STREAM,
        "Bidi": MethodKind.BIDI_STREAM,
    }
    assert {name for name, info in test_methods.items() if info.no_side_effects} == {
        "Lookup",
        "EchoMetadata",
    }
    for path, info in schema.methods.items():
        assert path == info.path == f"/{info.service}/{info.name}"
        assert info.upstream == "upstream-a"
        assert info.input_class.DESCRIPTOR is info.input_type
        assert info.output_class.DESCRIPTOR is info.output_type
    echo = schema.methods["/bridgetest.v1.TestService/Echo"]
    assert echo.input_type.full_name == echo.output_type.full_name == "bridgetest.v1.Kitchen"
    assert schema.methods["/bridgetest.v1.Other/Whoami"].input_type.full_name == (
        "bridgetest.v1.Nested"
    )


async def test_transitive_dependencies_are_resolved(upstream: RunningServer) -> None:
    schema = await _discover(upstream)

    assert {KITCHEN, COMMON, OTHER, "google/protobuf/timestamp.proto"} <= set(schema.files)
    kitchen = schema.pool.FindMessageTypeByName("bridgetest.v1.Kitchen")
    assert kitchen.fields_by_name["nested"].message_type.file.name == COMMON
    assert kitchen.fields_by_name["ts"].message_type.full_name == "google.protobuf.Timestamp"
    # Files are kept as sent, for annotation lookups and introspection.
    parsed = descriptor_pb2.FileDescriptorProto.FromString(schema.files[KITCHEN])
    assert parsed.dependency[0] == COMMON


async def test_pool_is_private_and_classes_work_on_the_wire(upstream: RunningServer) -> None:
    first, second = await _discover(upstream), await _discover(upstream)
    assert first.pool is not descriptor_pool.Default()
    assert first.pool is not second.pool

    echo = first.methods["/bridgetest.v1.TestService/Echo"]
    assert echo.input_class is not kitchen_pb2.Kitchen
    request = echo.input_class()
    request.f_string = "hi"
    request.nested.child.value = 7
    request.ts.seconds = 1_700_000_000
    request.m_str_int["a"] = 1
    # Wire-compatible with the generated classes both ways.
    generated = kitchen_pb2.Kitchen.FromString(request.SerializeToString())
    assert generated.nested.child.value == 7
    assert generated.ts == timestamp_pb2.Timestamp(seconds=1_700_000_000)
    assert echo.input_class.FromString(generated.SerializeToString()) == request

    async with grpc.aio.insecure_channel(upstream.target) as channel:
        call = channel.unary_unary(
            echo.path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=echo.output_class.FromString,
        )
        reply = await call(request, timeout=5)
    assert isinstance(reply, echo.output_class)
    assert reply == request


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (["bridgetest.v1.*"], [], [INTERNAL_SERVICE, OTHER_SERVICE, TEST_SERVICE]),
        (["*"], ["*.Internal", "grpc.health.*"], [OTHER_SERVICE, TEST_SERVICE]),
        (["bridgetest.v1.Other"], [], [OTHER_SERVICE]),
        # Exclusion wins over inclusion.
        ([INTERNAL_SERVICE], ["bridgetest.*"], []),
        # Reflection is never routed, even when asked for.
        (["grpc.reflection.*"], [], []),
    ],
)
async def test_include_exclude_globs(
    upstream: RunningServer, include: list[str], exclude: list[str], expected: list[str]
) -> None:
    schema = await _discover(upstream, include=include, exclude=exclude)
    assert list(schema.service_names) == expected
    assert {info.service for info in schema.methods.values()} == set(expected)


def test_select_services_is_case_sensitive_and_dedups() -> None:
    names = ["a.v1.Foo", "a.v1.foo", "a.v1.Foo", "grpc.reflection.v1.ServerReflection"]
    assert select_services(names, ["a.v1.F*"]) == ["a.v1.Foo"]
    assert select_services(names) == ["a.v1.Foo", "a.v1.foo"]


async def test_demo_proto_with_google_api_annotations(upstream_factory: StartServer) -> None:
    server = await upstream_factory(services=("demo",), health=False)
    schema = await _discover(server)

    assert schema.service_names == (DEMO_SERVICE,)
    assert {"google/api/annotations.proto", "google/api/http.proto"} <= set(schema.files)
    methods = {info.name: info for info in schema.methods.values()}
    assert methods["GetItem"].no_side_effects
    assert methods["ListItems"].kind is MethodKind.SERVER_STREAM
    assert methods["AddItems"].kind is MethodKind.CLIENT_STREAM
    assert methods["Chat"].kind is MethodKind.BIDI_STREAM
    # The http rule survives in the files as sent, for the routing layer.
    shop = descriptor_pb2.FileDescriptorProto.FromString(
        schema.files["grpc_bridge/demo/demo.proto"]
    )
    assert b"/v1/items/{id}" in shop.service[0].method[0].options.SerializeToString()


# --- sources that behave differently from grpcio's ------------------------------


@dataclass
class FakeSource:
    """A server that sends each file alone, never its imports along.

    ``withheld`` files answer like a NOT_FOUND reply; ``extra`` bytes are sent
    with every reply (duplicates, garbage).
    """

    services: list[str]
    files: dict[str, bytes]
    withheld: set[str] = field(default_factory=set)
    extra: list[bytes] = field(default_factory=list)
    description: str = "fake reflection"
    asked: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, services: Iterable[str], *files: FileDescriptor) -> FakeSource:
        return cls(
            list(services),
            {f.name: fdp(f).SerializeToString() for f in with_imports(*files)},
        )

    async def list_services(self) -> list[str]:
        return self.services

    async def file_containing_symbol(self, symbol: str) -> list[bytes]:
        self.asked.append(symbol)
        for blob in self.files.values():
            proto = descriptor_pb2.FileDescriptorProto.FromString(blob)
            if any(f"{proto.package}.{s.name}" == symbol for s in proto.service):
                return [blob, *self.extra]
        raise DiscoveryError(f"file_containing_symbol({symbol!r}): NOT_FOUND: not found")

    async def file_by_filename(self, filename: str) -> list[bytes]:
        self.asked.append(filename)
        if filename in self.withheld or filename not in self.files:
            raise DiscoveryError(f"file_by_filename({filename!r}): NOT_FOUND: not found")
        return [self.files[filename], *self.extra]


async def test_dependencies_fetched_by_name_when_not_sent_along() -> None:
    source = FakeSource.of([TEST_SERVICE, OTHER_SERVICE, INTERNAL_SERVICE], kitchen_pb2.DESCRIPTOR)
    source.files[OTHER] = fdp(other_pb2.DESCRIPTOR).SerializeToString()
    schema = await discover("fake", source)

    assert schema.service_names == (INTERNAL_SERVICE, OTHER_SERVICE, TEST_SERVICE)
    assert schema.source == "fake reflection"
    # Other and Internal share other.proto: asked for once; each import once.
    assert source.asked.count(INTERNAL_SERVICE) == 1
    assert OTHER_SERVICE not in source.asked
    assert source.asked.count(COMMON) == 1
    assert "google/protobuf/timestamp.proto" in source.asked
    assert schema.files == source.files


async def test_files_received_twice_are_fine() -> None:
    source = FakeSource.of([TEST_SERVICE], kitchen_pb2.DESCRIPTOR)
    source.extra = [source.files[COMMON], source.files["google/protobuf/any.proto"]]
    schema = await discover("fake", source)
    assert TEST_SERVICE in schema.service_names


async def test_well_known_files_fall_back_to_the_runtimes_copy() -> None:
    source = FakeSource.of([TEST_SERVICE], kitchen_pb2.DESCRIPTOR)
    source.withheld = {name for name in source.files if name.startswith("google/protobuf/")}
    schema = await discover("fake", source)

    assert "google/protobuf/duration.proto" in schema.files
    assert schema.pool.FindMessageTypeByName("google.protobuf.Duration")


async def test_missing_dependency_names_file_and_importer() -> None:
    source = FakeSource.of([TEST_SERVICE], kitchen_pb2.DESCRIPTOR)
    source.withheld = {COMMON}
    with pytest.raises(DiscoveryError) as info:
        await discover("shop", source)
    message = str(info.value)
    assert message.startswith("upstream 'shop': fake reflection: ")
    assert f"file_by_filename({COMMON!r})" in message
    assert f"imported by {KITCHEN!r}" in message
    assert info.value.upstream == "shop"


async def test_listed_service_the_server_cannot_describe() -> None:
    source = FakeSource.of([TEST_SERVICE, "ghost.v1.Ghost"], kitchen_pb2.DESCRIPTOR)
    with pytest.raises(DiscoveryError, match=r"upstream 'shop': .*'ghost\.v1\.Ghost'.*NOT_FOUND"):
        await discover("shop", source)


async def test_file_that_does_not_declare_the_service() -> None:
    class Mislabelling(FakeSource):
        async def file_containing_symbol(self, symbol: str) -> list[bytes]:
            return [self.files[COMMON]]

    source = Mislabelling.of([TEST_SERVICE], kitchen_pb2.DESCRIPTOR)
    with pytest.raises(
        DiscoveryError, match=r"service 'bridgetest\.v1\.TestService' is not declared"
    ):
        await discover("shop", source)


async def test_malformed_descriptor_bytes() -> None:
    source = FakeSource.of([TEST_SERVICE], kitchen_pb2.DESCRIPTOR)
    source.extra = [b"\xff\xff\xff"]
    with pytest.raises(DiscoveryError, match=r"malformed FileDescriptorProto in the reply to"):
        await discover("shop", source)


async def test_invalid_descriptor_names_the_file() -> None:
    broken = descriptor_pb2.FileDescriptorProto(name="broken.proto", package="broken")
    message = broken.message_type.add(name="M")
    message.field.add(name="f", number=1, type=11, label=1, type_name=".broken.Nope")
    broken.service.add(name="Svc").method.add(
        name="Call", input_type=".broken.M", output_type=".broken.M"
    )
    source = FakeSource(["broken.Svc"], {"broken.proto": broken.SerializeToString()})
    with pytest.raises(DiscoveryError, match=r"'broken\.proto' is not a valid descriptor"):
        await discover("shop", source)


# --- descriptor-set files -------------------------------------------------------


def test_descriptor_setwith_imports(tmp_path: Path) -> None:
    path = write_set(
        tmp_path / "api.pb", *with_imports(kitchen_pb2.DESCRIPTOR, other_pb2.DESCRIPTOR)
    )
    schema = load_descriptor_sets("shop", [path], exclude=["*.Internal"])

    assert schema.source == str(path)
    assert schema.service_names == (OTHER_SERVICE, TEST_SERVICE)
    assert schema.pool is not descriptor_pool.Default()
    assert schema.methods["/bridgetest.v1.TestService/Lookup"].no_side_effects
    assert {KITCHEN, COMMON, OTHER, "google/protobuf/struct.proto"} <= set(schema.files)


def test_descriptor_sets_merge_and_tolerate_repeats(tmp_path: Path) -> None:
    first = write_set(tmp_path / "a.pb", *with_imports(kitchen_pb2.DESCRIPTOR))
    second = write_set(tmp_path / "b.pb", *with_imports(other_pb2.DESCRIPTOR))
    schema = load_descriptor_sets("shop", [first, str(second)])
    assert schema.service_names == (INTERNAL_SERVICE, OTHER_SERVICE, TEST_SERVICE)
    assert schema.source == f"{first}, {second}"


def test_descriptor_set_without_imports_names_the_missing_one(tmp_path: Path) -> None:
    path = write_set(tmp_path / "api.pb", kitchen_pb2.DESCRIPTOR, other_pb2.DESCRIPTOR)
    with pytest.raises(DiscoveryError) as info:
        load_descriptor_sets("shop", [path])
    message = str(info.value)
    assert f"imports {COMMON!r}, which is missing" in message
    assert "--include_imports" in message
    assert str(path) in message
    assert message.startswith("upstream 'shop': ")


def test_descriptor_set_missing_only_well_known_files(tmp_path: Path) -> None:
    # The protobuf runtime bundles those; no need to fail over them.
    path = write_set(tmp_path / "api.pb", common_pb2.DESCRIPTOR, kitchen_pb2.DESCRIPTOR)
    schema = load_descriptor_sets("shop", [path])
    assert schema.service_names == (TEST_SERVICE,)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read it: No such file or directory"),
        (b"", "not a FileDescriptorSet"),
        (b"syntax = 'proto3';\npackage x;\n", "not a FileDescriptorSet"),
        (b"\x0a\xff", "not a FileDescriptorSet"),
    ],
)
def test_bad_descriptor_set_file(tmp_path: Path, content: bytes | None, problem: str) -> None:
    path = tmp_path / "api.pb"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DiscoveryError) as info:
        load_descriptor_sets("shop", [path])
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_descriptor_set_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="cannot read it"):
        load_descriptor_sets("shop", [tmp_path])


def test_demo_descriptor_set(tmp_path: Path) -> None:
    path = write_set(tmp_path / "demo.pb", *with_imports(demo_pb2.DESCRIPTOR))
    schema = load_descriptor_sets("demo", [path])
    assert schema.service_names == (DEMO_SERVICE,)
    assert schema.pool.FindFileByName("google/api/annotations.proto")
