"""What server reflection answers from: the files of the services the bridge exposes.

Built from the exposed services' descriptors (one per service, each in its
upstream's private pool; the first upstream that exposes a name wins, as in
the route table), never from an upstream's reflection: several upstreams
merge into one view, and descriptor-set upstreams have one too.

The files are each exposed service's file and its transitive imports, as the
upstream described them, with one change: a service that is not exposed is
removed from the file that declares it (with its comments), as is one
exposed from another upstream that declares it otherwise, so filters
really hide it (and what its hidden version has), from ``list_services``
and from every file sent. A file that cannot join the merged view is left
out with the files importing it, and named in :attr:`ReflectionIndex.skipped`:
a file name two upstreams use for different contents (the first is kept), a
symbol two files declare. Message and enum types are never removed, even those
only a hidden service uses: descriptors cannot tell that a type is unused (an
exposed method may send it in an ``Any``, an error detail say, which clients
resolve by its name through reflection); docs/connect.md says how to hide them.

Symbols are indexed from the files themselves, every kind grpc-go's reflection
resolves: messages, enums and their values, services, methods, fields, oneofs,
extensions, nested at any depth.

Building it takes each file in once, whatever the number of services importing
it, and costs what parsing, trimming and indexing the files costs: tens of
milliseconds for hundreds of files, more for a large API.
:meth:`ReflectionIndex.steps` does it a service or a file at a time, so that
:meth:`ReflectionIndex.build_in_slices` builds it on the event loop in slices
of :data:`SLICE_S`, the loop serving every other call between them. (Not in a
thread: this is Python code holding the GIL, so a thread would make the loop
wait for the GIL, up to the switch interval, at each of its I/O calls instead
of once per slice.)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

__all__ = ["SLICE_S", "IndexedFile", "ReflectionIndex"]

_SERVICE_FIELD = descriptor_pb2.FileDescriptorProto.SERVICE_FIELD_NUMBER

#: How long :meth:`ReflectionIndex.build_in_slices` holds the event loop at a time
#: (plus one step): what a call waiting for the loop meanwhile may wait.
SLICE_S = 0.005


@dataclass(frozen=True, slots=True)
class IndexedFile:
    #: The serialized FileDescriptorProto, hidden services removed.
    data: bytes
    #: Its imports, in declaration order.
    dependencies: tuple[str, ...]


@dataclass
class ReflectionIndex:
    """See the module docstring. Immutable once built."""

    #: Exposed service names, sorted (``list_services``).
    services: tuple[str, ...] = ()
    files: dict[str, IndexedFile] = field(default_factory=dict)
    #: Fully-qualified symbol → the name of the file declaring it.
    symbols: dict[str, str] = field(default_factory=dict)
    #: Message names: ``all_extension_numbers_of_type`` knows a type without extensions.
    messages: set[str] = field(default_factory=set)
    #: ``(extendee, number)`` → the file declaring the extension.
    extensions: dict[tuple[str, int], str] = field(default_factory=dict)
    #: Files left out (module docstring), with why.
    skipped: list[str] = field(default_factory=list)
    #: Methods routed but in no file sent: the route table takes a service's methods from
    #: every upstream that has them, reflection one declaration of it.
    undescribed: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        services: Iterable[ServiceDescriptor],
        received: Mapping[DescriptorPool, Mapping[str, bytes]] | None = None,
    ) -> ReflectionIndex:
        """The index, built in one go: see :meth:`steps`."""
        index = _advance(cls.steps(services, received), time.monotonic, math.inf)
        assert index is not None
        return index

    @classmethod
    async def build_in_slices(
        cls,
        services: Iterable[ServiceDescriptor],
        received: Mapping[DescriptorPool, Mapping[str, bytes]] | None = None,
        *,
        slice_s: float = SLICE_S,
    ) -> ReflectionIndex:
        """The index, built on the event loop at most about ``slice_s`` at a time: the
        loop serves every other task between slices (see :meth:`steps`)."""
        steps = cls.steps(services, received)
        clock = asyncio.get_running_loop().time
        while True:
            if (index := _advance(steps, clock, clock() + slice_s)) is not None:
                return index
            await asyncio.sleep(0)

    @classmethod
    def steps(
        cls,
        services: Iterable[ServiceDescriptor],
        received: Mapping[DescriptorPool, Mapping[str, bytes]] | None = None,
    ) -> Generator[None, None, ReflectionIndex]:
        """Builds the index, yielding after each service and each file it takes in (a
        step's work is one file's size): the caller chooses when to go on. ``received``:
        per pool, its files as the upstream sent them (``Schema.files``), which keep the
        comments (``source_code_info``) a pool drops. ``services`` and the pools must not
        change until it returns."""
        # Each service's declarations, by name: the route table yields one per method.
        declarations: dict[str, list[ServiceDescriptor]] = {}
        for service in services:
            known = declarations.setdefault(service.full_name, [])
            if not any(d is service for d in known):
                known.append(service)
        exposed = {name: known[0] for name, known in declarations.items()}
        index = cls()
        for first, *others in declarations.values():
            for other in others:
                index.undescribed.extend(
                    f"{other.full_name}.{name}"
                    for name in other.methods_by_name
                    if name not in first.methods_by_name
                )
        index.undescribed = list(dict.fromkeys(index.undescribed))
        # A service stays in a file only in the copy of the file it is exposed from, or
        # in another upstream's copy declaring it alike (replicas of one API share a
        # file): never in a copy whose own declaration of it a filter hid.
        kept: dict[str, tuple[str, bytes]] = {}
        for name, service in exposed.items():
            kept[name] = _declared(service)
            yield
        origin: dict[str, int] = {}  # file name → id of the pool its copy came from
        failed: set[str] = set()
        # Each pool's files taken in, with their imports: services sharing imports (a
        # large API's usual shape) walk each once, not once per service.
        visited: set[tuple[int, str]] = set()
        for service in exposed.values():
            for file in _imports_first(service.file, visited):
                yield
                pool = id(file.pool)
                given = (received or {}).get(file.pool, {}).get(file.name)
                if file.name in failed or origin.get(file.name) == pool:
                    continue
                if file.name in origin:
                    # Differing copies of a file without services (say, two protoc
                    # versions' google/protobuf/*.proto) are harmless: not reported.
                    if file.services_by_name and index.files[file.name].data != _trimmed(
                        file, kept, given
                    ):
                        index.skipped.append(
                            f"{file.name}: another upstream's file of that name is used"
                        )
                    continue
                problem = index._add(file, _trimmed(file, kept, given), failed)
                if problem is None:
                    origin[file.name] = pool
                else:
                    failed.add(file.name)
                    index.skipped.append(f"{file.name}: {problem}")
        # Listed only where its file made it in, in the copy that declares it.
        index.services = tuple(
            sorted(
                name
                for name, service in exposed.items()
                if index.symbols.get(name) == service.file.name
            )
        )
        return index

    def _add(self, file: FileDescriptor, data: bytes, failed: set[str]) -> str | None:
        dependencies = tuple(d.name for d in file.dependencies)
        missing = [d for d in dependencies if d in failed or d not in self.files]
        if missing:
            return f"imports {missing[0]!r}, which was left out"
        proto = descriptor_pb2.FileDescriptorProto.FromString(data)
        symbols = list(_symbols(proto))
        clash = next((name for name, _ in symbols if name in self.symbols), None)
        if clash is not None:
            return f"declares {clash!r}, as {self.symbols[clash]!r} does"
        for name, kind in symbols:
            self.symbols[name] = file.name
            if kind == "message":
                self.messages.add(name)
        for extendee, number in _extensions(proto):
            self.extensions.setdefault((extendee, number), file.name)
        self.files[file.name] = IndexedFile(data, dependencies)
        return None

    def extension_numbers(self, type_name: str) -> list[int] | None:
        """The extension numbers of a message type, sorted; None for an unknown type."""
        if type_name not in self.messages:
            return None
        return sorted(number for extendee, number in self.extensions if extendee == type_name)


def _advance(
    steps: Generator[None, None, ReflectionIndex], clock: Callable[[], float], until: float
) -> ReflectionIndex | None:
    """Step until the index is built (it) or, after a step, ``clock()`` is past ``until``
    (None: call again to go on)."""
    while True:
        try:
            next(steps)
        except StopIteration as built:
            index: ReflectionIndex = built.value
            return index
        if clock() >= until:
            return None


def _imports_first(root: FileDescriptor, visited: set[tuple[int, str]]) -> list[FileDescriptor]:
    """``root`` and its transitive imports, each after its own imports, but those in
    ``visited`` (``(id(pool), name)``), which the others join: a file visited before had
    its imports visited before it."""
    pool = id(root.pool)  # an import is in its importer's pool
    order: list[FileDescriptor] = []
    stack: list[tuple[FileDescriptor, bool]] = [(root, False)]
    while stack:  # iterative: an import chain's depth is the upstream's to choose
        file, expanded = stack.pop()
        if expanded:
            order.append(file)
            continue
        if (pool, file.name) in visited:
            continue
        visited.add((pool, file.name))
        stack.append((file, True))
        stack.extend(
            (d, False) for d in reversed(file.dependencies) if (pool, d.name) not in visited
        )
    return order


def _declared(service: ServiceDescriptor) -> tuple[str, bytes]:
    """Where and how ``service`` is declared: its file's name and its own declaration."""
    proto = descriptor_pb2.ServiceDescriptorProto()
    service.CopyToProto(proto)
    return service.file.name, proto.SerializeToString(deterministic=True)


def _trimmed(
    file: FileDescriptor, kept: dict[str, tuple[str, bytes]], given: bytes | None
) -> bytes:
    """The file as received (else as its pool has it), without the services it does not
    declare as exposed."""
    data: bytes = file.serialized_pb if given is None else given
    hidden = [s for s in file.services_by_name.values() if kept.get(s.full_name) != _declared(s)]
    if not hidden:
        return data
    proto = descriptor_pb2.FileDescriptorProto.FromString(data)
    names = {s.name for s in hidden}
    renumber: dict[int, int] = {}
    services: list[descriptor_pb2.ServiceDescriptorProto] = []
    for i, service in enumerate(proto.service):
        if service.name not in names:
            renumber[i] = len(services)
            services.append(service)
    del proto.service[:]
    proto.service.extend(services)
    # Comments are located by path (6, service index, ...): a hidden service's go
    # with it, and the later services' paths follow their new indexes.
    if proto.HasField("source_code_info"):
        locations = []
        for location in proto.source_code_info.location:
            path = list(location.path)
            if len(path) >= 2 and path[0] == _SERVICE_FIELD:
                if path[1] not in renumber:
                    continue
                path[1] = renumber[path[1]]
                del location.path[:]
                location.path.extend(path)
            locations.append(location)
        del proto.source_code_info.location[:]
        proto.source_code_info.location.extend(locations)
    return proto.SerializeToString(deterministic=True)


def _symbols(proto: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[str, str]]:
    """Every fully-qualified name the file declares, with its kind."""
    prefix = f"{proto.package}." if proto.package else ""
    yield from _scope(prefix, proto.message_type, proto.enum_type, proto.extension)
    for service in proto.service:
        name = prefix + service.name
        yield name, "service"
        for method in service.method:
            yield f"{name}.{method.name}", "method"


def _scope(
    prefix: str,
    messages: Iterable[descriptor_pb2.DescriptorProto],
    enums: Iterable[descriptor_pb2.EnumDescriptorProto],
    extensions: Iterable[descriptor_pb2.FieldDescriptorProto],
) -> Iterator[tuple[str, str]]:
    for enum in enums:
        yield prefix + enum.name, "enum"
        # Enum values are scoped as the enum's siblings (C++ scoping rules).
        for value in enum.value:
            yield prefix + value.name, "enum value"
    for extension in extensions:
        yield prefix + extension.name, "extension"
    for message in messages:
        name = prefix + message.name
        yield name, "message"
        inner = f"{name}."
        for item in message.field:
            yield inner + item.name, "field"
        for oneof in message.oneof_decl:
            yield inner + oneof.name, "oneof"
        yield from _scope(inner, message.nested_type, message.enum_type, message.extension)


def _extensions(proto: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[str, int]]:
    """``(extendee, number)`` of every extension the file declares, nested ones too."""
    pending: list[Iterable[descriptor_pb2.FieldDescriptorProto]] = [proto.extension]
    messages = list(proto.message_type)
    while messages:
        message = messages.pop()
        pending.append(message.extension)
        messages.extend(message.nested_type)
    for extensions in pending:
        for extension in extensions:
            yield extension.extendee.lstrip("."), extension.number
