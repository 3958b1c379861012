"""Descriptor sources → one immutable :class:`Schema` per upstream.

Two ways in, one way out::

    discover(upstream, source)          a DescriptorSource (server reflection)
    load_descriptor_sets(upstream, …)   FileDescriptorSet files from protoc
                  └──→ _build_schema ──→ Schema (private pool, MethodInfo per method)

Every schema gets a fresh ``DescriptorPool``, never the process-wide default
one: two upstreams may serve different versions of the same file, and the
bridge's own generated code lives in the default pool (grpc-requests #106 shows
what sharing it does). This module imports no grpc; reflection lives in
``grpc_bridge.upstream.reflection`` behind the :class:`DescriptorSource` protocol.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, unknown_fields
from google.protobuf.message import DecodeError

from grpc_bridge.discovery.filters import select_services
from grpc_bridge.discovery.registry import MethodInfo, MethodKind, Schema

_NO_SIDE_EFFECTS = descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
# Files the protobuf runtime bundles; used when an upstream imports one but
# won't send it. The pattern keeps upstream-supplied names out of import_module.
_BUNDLED = re.compile(r"google/protobuf/(?:compiler/)?[a-z_]+\.proto")
_SETS_HINT = " (build the set with protoc --include_imports)"


class DiscoveryError(Exception):
    """Descriptors for an upstream could not be obtained or made sense of.

    Raised at start-up (fail loudly) and on refresh (keep the last good schema).
    """

    def __init__(self, message: str, *, upstream: str | None = None) -> None:
        super().__init__(f"upstream {upstream!r}: {message}" if upstream else message)
        self.upstream = upstream


class DescriptorSource(Protocol):
    """Where serialized FileDescriptorProtos come from (reflection, in practice).

    Implementations raise :class:`DiscoveryError` for anything that goes wrong,
    including "not found" answers.
    """

    description: str  # e.g. "reflection v1" / "reflection v1alpha"

    async def list_services(self) -> list[str]: ...

    async def file_containing_symbol(self, symbol: str) -> list[bytes]: ...

    async def file_by_filename(self, filename: str) -> list[bytes]: ...


async def discover(
    upstream: str,
    source: DescriptorSource,
    *,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
) -> Schema:
    """Ask ``source`` for the upstream's services and build their schema.

    Reflection services are dropped, then ``include``/``exclude`` globs are
    applied (exclude wins). The files of each kept service are fetched by
    symbol, then every transitive import not received yet by file name:
    servers differ on whether they send dependencies along.
    """
    try:
        services = select_services(await source.list_services(), include, exclude)
        files = _FileSet()
        for service in services:
            if service in files.services():
                continue  # arrived with an earlier service's file
            origin = f"the reply to file_containing_symbol({service!r})"
            for blob in await source.file_containing_symbol(service):
                files.add(blob, origin)
            if service not in files.services():
                raise DiscoveryError(f"service {service!r} is not declared in {origin}")
        await _fetch_dependencies(source, files)
    except DiscoveryError as exc:
        if exc.upstream is not None:
            raise
        raise DiscoveryError(f"{source.description}: {exc}", upstream=upstream) from exc
    return _build_schema(upstream, source.description, files, services)


async def discover_symbols(
    upstream: str,
    source: DescriptorSource,
    symbols: Sequence[str],
    *,
    previous: Schema | None = None,
) -> Schema:
    """A schema of the files that declare ``symbols``, their imports and ``previous``'s files.

    For a client that learns the API as it goes (``grpc-bridge describe``, an
    ``Any`` of a type not seen yet) instead of all at once. Its services are
    every service in those files, reflection's own included.
    """
    files = _FileSet()
    if previous is not None:
        for blob in previous.files.values():
            files.add(blob, "an earlier reply")
    try:
        for symbol in symbols:
            for blob in await source.file_containing_symbol(symbol):
                files.add(blob, f"the reply to file_containing_symbol({symbol!r})")
        await _fetch_dependencies(source, files)
    except DiscoveryError as exc:
        if exc.upstream is not None:
            raise
        raise DiscoveryError(f"{source.description}: {exc}", upstream=upstream) from exc
    return _build_schema(upstream, source.description, files, sorted(files.services()))


def load_descriptor_sets(
    upstream: str,
    paths: Sequence[str | Path],
    *,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
) -> Schema:
    """Build a schema from FileDescriptorSet files.

    The sets are merged (the first copy of a file name wins); the services are
    every service they declare, filtered as in :func:`discover`.
    """
    files = _FileSet()
    try:
        for path in paths:
            for blob in _read_descriptor_set(Path(path)):
                files.add(blob, f"descriptor set {str(path)!r}")
    except DiscoveryError as exc:
        raise DiscoveryError(str(exc), upstream=upstream) from exc
    services = select_services(files.services(), include, exclude)
    source = ", ".join(str(p) for p in paths)
    return _build_schema(upstream, source, files, services, missing_hint=_SETS_HINT)


class _FileSet:
    """Files received so far, by name: the first copy wins, repeats are ignored."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.protos: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        self._services: set[str] = set()

    def add(self, blob: bytes, origin: str) -> None:
        try:
            proto = descriptor_pb2.FileDescriptorProto.FromString(blob)
        except DecodeError as exc:
            raise DiscoveryError(f"malformed FileDescriptorProto in {origin}: {exc}") from exc
        if not proto.name:
            raise DiscoveryError(f"FileDescriptorProto without a file name in {origin}")
        if proto.name in self.protos:
            return
        self.blobs[proto.name] = blob
        self.protos[proto.name] = proto
        prefix = f"{proto.package}." if proto.package else ""
        self._services.update(prefix + service.name for service in proto.service)

    def services(self) -> set[str]:
        return self._services

    def missing(self) -> list[tuple[str, str]]:
        """(import, importer) pairs whose import has not been received."""
        return [
            (dependency, name)
            for name, proto in self.protos.items()
            for dependency in proto.dependency
            if dependency not in self.protos
        ]


async def _fetch_dependencies(source: DescriptorSource, files: _FileSet) -> None:
    """Ask for imports by name until every file's imports are in ``files``."""
    given_up: set[str] = set()  # bundled files the upstream would not send
    while pending := [(d, i) for d, i in files.missing() if d not in given_up]:
        for dependency, importer in pending:
            if dependency in files.protos or dependency in given_up:
                continue
            try:
                for blob in await source.file_by_filename(dependency):
                    files.add(blob, f"the reply to file_by_filename({dependency!r})")
            except DiscoveryError as exc:
                if not _BUNDLED.fullmatch(dependency):
                    raise DiscoveryError(f"{exc} (imported by {importer!r})") from exc
            if dependency not in files.protos:
                if not _BUNDLED.fullmatch(dependency):
                    raise DiscoveryError(
                        f"the server did not send {dependency!r} (imported by {importer!r})"
                    )
                given_up.add(dependency)  # _build_schema falls back to the bundled copy


def _read_descriptor_set(path: Path) -> Iterator[bytes]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DiscoveryError(
            f"descriptor set {str(path)!r}: cannot read it: {exc.strerror or exc}"
        ) from exc
    try:
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    except DecodeError as exc:
        raise DiscoveryError(
            f"descriptor set {str(path)!r}: not a FileDescriptorSet: {exc}"
        ) from exc
    # Arbitrary bytes often parse as *some* message; a real set has only files.
    if not descriptor_set.file or len(unknown_fields.UnknownFieldSet(descriptor_set)):
        raise DiscoveryError(
            f"descriptor set {str(path)!r}: not a FileDescriptorSet (no files in it; "
            "expected the output of protoc --descriptor_set_out)"
        )
    for file in descriptor_set.file:
        yield file.SerializeToString()


def _build_schema(
    upstream: str,
    source: str,
    files: _FileSet,
    services: Sequence[str],
    *,
    missing_hint: str = "",
) -> Schema:
    """The one place a pool and a Schema are made, whatever the source."""

    def fail(message: str) -> DiscoveryError:
        return DiscoveryError(f"{source}: {message}", upstream=upstream)

    # Loop: a bundled file may import another one (api.proto → type.proto).
    while bundled := [b for d, _ in files.missing() if (b := _bundled_file(d)) is not None]:
        for blob in bundled:
            files.add(blob, "the protobuf runtime")
    pool = descriptor_pool.DescriptorPool()
    for name in _dependency_order(files.protos, fail, missing_hint):
        try:
            pool.AddSerializedFile(files.blobs[name])
        except (TypeError, ValueError) as exc:
            raise fail(f"file {name!r} is not a valid descriptor: {exc}") from exc

    descriptors = []
    methods: dict[str, MethodInfo] = {}
    for service_name in services:
        try:
            service = pool.FindServiceByName(service_name)
        except KeyError as exc:
            raise fail(f"service {service_name!r} not found in the descriptors") from exc
        descriptors.append(service)
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            methods[path] = MethodInfo(
                upstream=upstream,
                descriptor=method,
                kind=MethodKind.of(method),
                path=path,
                input_class=message_factory.GetMessageClass(method.input_type),
                output_class=message_factory.GetMessageClass(method.output_type),
                no_side_effects=method.GetOptions().idempotency_level == _NO_SIDE_EFFECTS,
            )
    return Schema(
        upstream=upstream,
        pool=pool,
        services=tuple(descriptors),
        methods=MappingProxyType(methods),
        source=source,
        files=MappingProxyType(dict(files.blobs)),
    )


def _dependency_order(
    protos: Mapping[str, descriptor_pb2.FileDescriptorProto],
    fail: Callable[[str], DiscoveryError],
    missing_hint: str,
) -> list[str]:
    """File names, every file after its imports (a pool only takes them so)."""
    order: list[str] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise fail(f"import cycle: {cycle}")
        visiting.append(name)
        for dependency in protos[name].dependency:
            if dependency not in protos:
                raise fail(f"{name!r} imports {dependency!r}, which is missing{missing_hint}")
            visit(dependency)
        visiting.pop()
        done.add(name)
        order.append(name)

    for name in sorted(protos):
        visit(name)
    return order


def _bundled_file(name: str) -> bytes | None:
    """The protobuf runtime's own copy of a well-known file, if it has one."""
    if not _BUNDLED.fullmatch(name):
        return None
    module_name = name.removesuffix(".proto").replace("/", ".") + "_pb2"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    return bytes(proto.SerializeToString())
