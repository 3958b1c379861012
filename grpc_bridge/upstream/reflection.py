"""Server reflection over grpc.aio: the :class:`DescriptorSource` used in practice.

Fully async. grpcio-reflection's ProtoReflectionDescriptorDatabase is a
synchronous client and would block the event loop, so only its v1alpha message
classes are used here; v1 is wire-identical (same messages, same field
numbers), so the same classes (de)serialize both.

Each request is its own short bidi call (one request, one reply) with its own
deadline: no stream to keep healthy between requests, no ordering to track,
and a stuck reply fails that request instead of a whole discovery run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
from grpc_reflection.v1alpha import reflection_pb2

from grpc_bridge.discovery.loader import DiscoveryError
from grpc_bridge.status import code_name

_PATHS = {
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}
# Newest first: v1alpha is deprecated, and some servers only speak v1.
_VERSIONS = ("v1", "v1alpha")


class ReflectionClient:
    """Asks one upstream for its descriptors with the server reflection protocol."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        version: str,
        *,
        timeout: float = 10.0,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.version = version
        self.description = f"reflection {version}"
        self._timeout = timeout
        self._metadata = tuple(metadata) or None
        self._method = channel.stream_stream(
            _PATHS[version],
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )

    @classmethod
    async def connect(
        cls,
        channel: grpc.aio.Channel,
        *,
        timeout: float = 10.0,
        metadata: Sequence[tuple[str, str]] = (),
        upstream: str | None = None,
    ) -> ReflectionClient:
        """A client for the newest protocol version the upstream answers.

        v1 first; UNIMPLEMENTED falls back to v1alpha (so does grpc.aio's "Internal
        error from Core", which it reports now and then in place of the server's
        UNIMPLEMENTED when a stream is refused at once). Any other failure, or
        neither version served, raises :class:`DiscoveryError` (naming
        ``upstream`` when given).
        """
        for version in _VERSIONS:
            client = cls(channel, version, timeout=timeout, metadata=metadata)
            try:
                await client.list_services()
            except DiscoveryError as exc:
                cause = exc.__cause__
                if isinstance(cause, grpc.aio.AioRpcError) and _not_served(cause):
                    continue
                # Chain the grpc error itself: that is what callers may want to inspect.
                raise DiscoveryError(f"{client.description}: {exc}", upstream=upstream) from (
                    cause or exc
                )
            return client
        raise DiscoveryError(
            "server reflection is not enabled: both grpc.reflection.v1 and v1alpha"
            " answered UNIMPLEMENTED (enable reflection or configure descriptor_sets)",
            upstream=upstream,
        )

    async def list_services(self) -> list[str]:
        reply = await self._ask(
            "list_services", reflection_pb2.ServerReflectionRequest(list_services="")
        )
        return [service.name for service in reply.list_services_response.service]

    async def file_containing_symbol(self, symbol: str) -> list[bytes]:
        reply = await self._ask(
            f"file_containing_symbol({symbol!r})",
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol),
        )
        return list(reply.file_descriptor_response.file_descriptor_proto)

    async def file_by_filename(self, filename: str) -> list[bytes]:
        reply = await self._ask(
            f"file_by_filename({filename!r})",
            reflection_pb2.ServerReflectionRequest(file_by_filename=filename),
        )
        return list(reply.file_descriptor_response.file_descriptor_proto)

    async def close(self) -> None:
        """Nothing to release: every request is its own finished call.

        Present so callers may treat every source as closable.
        """

    async def _ask(self, what: str, request: Any) -> Any:
        """One exchange, with failures translated to :class:`DiscoveryError`."""
        # A finite request iterator half-closes after the one request, so the
        # server ends the call with OK and its status is checked, not dropped.
        call = self._method(iter((request,)), timeout=self._timeout, metadata=self._metadata)
        try:
            replies = [reply async for reply in call]
        except grpc.aio.AioRpcError as exc:
            raise DiscoveryError(f"{what}: {_describe(exc)}") from exc
        except grpc.aio.UsageError as exc:
            # The channel was closed under us (the pool was rebuilt for a DNS or
            # TLS change): a passing failure, retried like any other.
            raise DiscoveryError(f"{what}: {exc}") from exc
        if len(replies) != 1:
            raise DiscoveryError(f"{what}: expected one reply, got {len(replies)}")
        reply = replies[0]
        kind = reply.WhichOneof("message_response")
        if kind == "error_response":
            error = reply.error_response
            raise DiscoveryError(f"{what}: {code_name(error.error_code)}: {error.error_message}")
        expected = (
            "list_services_response"
            if request.HasField("list_services")
            else "file_descriptor_response"
        )
        if kind != expected:
            raise DiscoveryError(f"{what}: expected a {expected}, got {kind or 'nothing'}")
        return reply


def _describe(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details() or 'no details'}"


def _not_served(error: grpc.aio.AioRpcError) -> bool:
    """The version asked for is not served (or grpc.aio lost the UNIMPLEMENTED that said so)."""
    code = error.code()
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return True
    return bool(code == grpc.StatusCode.INTERNAL and error.details() == "Internal error from Core")
