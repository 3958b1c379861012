"""One upstream as the command-line client sees it: a connection, and the descriptors learned.

Descriptors come from server reflection (v1, then v1alpha: the bridge's own
:class:`~grpc_bridge.upstream.reflection.ReflectionClient`, over the
command's connection) or from descriptor-set files (the daemon's loader).
With reflection only what a command needs is fetched, like grpcurl does: the
file that declares the symbol and its imports, not every service of the
server; types met later (the ``@type`` of an ``Any``, an error detail) are
fetched when first seen.

The connection (:mod:`~grpc_bridge.client.connection`, the bridge's native
client) is built from an :class:`~grpc_bridge.settings.Upstream`, so TLS
files, server-name override, authority and message-size limits behave as
they do in ``serve``; reflection and calls go over it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from google.protobuf.descriptor_pool import DescriptorPool

from grpc_bridge.client.connection import Connection
from grpc_bridge.client.protoprint import Described
from grpc_bridge.discovery.loader import (
    DescriptorSource,
    DiscoveryError,
    discover_symbols,
    load_descriptor_sets,
)
from grpc_bridge.discovery.registry import MethodInfo, Schema
from grpc_bridge.errors import UpstreamError
from grpc_bridge.settings import Upstream
from grpc_bridge.status import Code
from grpc_bridge.upstream.api import CallInvoker
from grpc_bridge.upstream.reflection import ReflectionClient

__all__ = ["ClientError", "Session", "split_method"]

_REFLECTION_TIMEOUT_S = 10.0


class ClientError(Exception):
    """A failure before or around the call itself (grpcurl's exit 1): the message says what."""


class Session:
    def __init__(
        self,
        upstream: Upstream,
        *,
        metadata: Iterable[tuple[str, str | bytes]] = (),
        deadline: float | None = None,
        offline: bool = False,
        verify: bool = True,
    ) -> None:
        """``deadline``: a ``time.monotonic()`` value that bounds reflection too (--max-time).

        ``offline``: descriptor sets only, no connection (list/describe without a target).
        ``verify=False``: TLS without checking the server's certificate (--insecure).
        """
        self.upstream = upstream
        self.deadline = deadline
        self._metadata = tuple((k, v) for k, v in metadata if isinstance(v, str))
        self._verify = verify
        self._connection: Connection | None = None
        self._source: DescriptorSource | None = None
        self._schema: Schema | None = None
        self._offline = offline
        if upstream.descriptor_sets:
            try:
                self._schema = load_descriptor_sets(upstream.name, upstream.descriptor_sets)
            except DiscoveryError as exc:
                raise ClientError(str(exc)) from exc

    @property
    def invoker(self) -> CallInvoker:
        """What calls and reflection go through; connects on first use."""
        if self._offline:
            raise ClientError("no target given: calls need HOST:PORT")
        if self._connection is None:
            self._connection = Connection.open(self.upstream, verify=self._verify)
        return self._connection.invoker

    def remaining(self) -> float | None:
        """Seconds left before --max-time (at least a millisecond); None without one."""
        if self.deadline is None:
            return None
        return max(0.001, self.deadline - time.monotonic())

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    @property
    def pool(self) -> DescriptorPool | None:
        return self._schema.pool if self._schema is not None else None

    @property
    def files(self) -> Mapping[str, bytes]:
        """Serialized files as received (with source info, when the server sent it)."""
        return self._schema.files if self._schema is not None else {}

    async def _reflection(self) -> DescriptorSource | None:
        if self.upstream.descriptor_sets:
            return None
        if self._source is None:
            remaining = self.remaining()
            timeout = _REFLECTION_TIMEOUT_S if remaining is None else remaining
            try:
                self._source = await ReflectionClient.connect(
                    self.invoker, timeout=timeout, metadata=self._metadata
                )
            except DiscoveryError as exc:
                raise ClientError(str(exc)) from exc
        return self._source

    async def services(self) -> list[str]:
        """Every service the server lists (reflection's own included, as grpcurl shows)."""
        source = await self._reflection()
        if source is None:
            assert self._schema is not None
            return sorted(self._schema.service_names)
        try:
            return sorted(set(await source.list_services()))
        except DiscoveryError as exc:
            raise ClientError(str(exc)) from exc

    async def find(self, symbol: str) -> Described:
        """A service, method, message, enum, field, oneof or enum value by full name."""
        symbol = symbol.removeprefix(".")
        found = self._lookup(symbol)
        if found is None and await self._fetch(symbol):
            found = self._lookup(symbol)
        if found is None:
            raise ClientError(f"symbol not found: {symbol}")
        return found

    async def method(self, name: str) -> MethodInfo:
        service, method = split_method(name)
        path = f"/{service}/{method}"
        if self._schema is None or path not in self._schema.methods:
            await self._fetch(service)
        info = self._schema.methods.get(path) if self._schema is not None else None
        if info is None:
            if self._schema is not None and any(
                s.full_name == service for s in self._schema.services
            ):
                raise ClientError(f"service {service!r} has no method {method!r}")
            raise ClientError(f"service not found: {service}")
        return info

    async def ensure_types(self, names: Iterable[str]) -> None:
        """Fetch message types not known yet (an ``Any``'s payload) by reflection; best effort."""
        missing = [name for name in set(names) if not self._knows_message(name)]
        source = await self._reflection() if missing else None
        if source is None:
            return
        for name in sorted(missing):
            try:
                self._schema = await discover_symbols(
                    self.upstream.name, source, [name], previous=self._schema
                )
            except DiscoveryError:
                continue  # rendered as base64 or reported by the codec, as without reflection

    def _knows_message(self, name: str) -> bool:
        if self._schema is None:
            return False
        try:
            self._schema.pool.FindMessageTypeByName(name)
        except KeyError:
            return False
        return True

    async def _fetch(self, symbol: str) -> bool:
        """Ask reflection for the file declaring ``symbol``, or else its parents
        (servers differ on whether they index methods, fields and enum values)."""
        source = await self._reflection()
        if source is None:
            return False
        candidate = symbol
        while candidate:
            try:
                self._schema = await discover_symbols(
                    self.upstream.name, source, [candidate], previous=self._schema
                )
                return True
            except DiscoveryError as exc:
                if not _not_found(exc):
                    raise ClientError(str(exc)) from exc
            candidate = candidate.rpartition(".")[0]
        return False

    def _lookup(self, symbol: str) -> Described | None:
        if self._schema is None:
            return None
        return lookup(self._schema.pool, symbol)


def lookup(pool: DescriptorPool, symbol: str) -> Described | None:
    """``symbol`` in ``pool`` as whatever kind of descriptor it names; None if absent."""
    finders = (pool.FindServiceByName, pool.FindMessageTypeByName, pool.FindEnumTypeByName)
    for find in finders:
        try:
            found: Described = find(symbol)
        except KeyError:
            continue
        return found
    parent_name, _, child = symbol.rpartition(".")
    if not parent_name:
        return None
    parent = lookup(pool, parent_name)
    if parent is None:
        return None
    for table in ("methods_by_name", "fields_by_name", "oneofs_by_name", "values_by_name"):
        members = getattr(parent, table, None)
        if members is not None and child in members:
            member: Described = members[child]
            return member
    return None


def split_method(name: str) -> tuple[str, str]:
    """``pkg.Service/Method`` or ``pkg.Service.Method`` (grpcurl takes both) → the two parts."""
    name = name.removeprefix("/")
    service, sep, method = name.rpartition("/")
    if not sep:
        service, sep, method = name.rpartition(".")
    if not service or not method:
        raise ClientError(f"{name!r} is not a method name: use package.Service/Method")
    return service, method


def _not_found(exc: DiscoveryError) -> bool:
    cause = exc.__cause__
    while cause is not None and not isinstance(cause, UpstreamError):
        cause = cause.__cause__
    if isinstance(cause, UpstreamError):
        return cause.code == Code.NOT_FOUND
    # A NOT_FOUND error_response inside an OK reply carries no call error.
    return "NOT_FOUND" in str(exc)
