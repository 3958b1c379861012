"""Server reflection through a :class:`~grpc_bridge.upstream.api.CallInvoker`.

The bridge asks over the upstream's own invoker, so reflection shares the
traffic's connections, TLS, ``:authority`` and keepalive; the command-line
client passes the invoker of its own connection. Only grpcio-reflection's v1alpha message
classes are used: v1 is wire-identical (same messages, same field numbers),
so the same classes (de)serialize both.

Each request is its own short bidi call (one request, one reply) with its own
deadline: no stream to keep healthy between requests, no ordering to track,
and a stuck reply fails that request instead of a whole discovery run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grpc_reflection.v1alpha import reflection_pb2

from grpc_bridge.discovery.loader import DiscoveryError
from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.api import CallInvoker

Request: Any = reflection_pb2.ServerReflectionRequest
Response: Any = reflection_pb2.ServerReflectionResponse

_PATHS = {
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}
# Newest first: v1alpha is deprecated, and some servers only speak v1.
_VERSIONS = ("v1", "v1alpha")
_DESCRIPTOR = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].methods_by_name[
    "ServerReflectionInfo"
]


def _method(version: str) -> MethodInfo:
    return MethodInfo(
        upstream="",
        descriptor=_DESCRIPTOR,
        kind=MethodKind.BIDI_STREAM,
        path=_PATHS[version],
        input_class=Request,
        output_class=Response,
        no_side_effects=True,
    )


_METHODS = {version: _method(version) for version in _VERSIONS}


class ReflectionClient:
    """Asks one upstream for its descriptors with the server reflection protocol."""

    def __init__(
        self,
        invoker: CallInvoker,
        version: str,
        *,
        timeout: float = 10.0,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.version = version
        self.description = f"reflection {version}"
        self._invoker = invoker
        self._timeout = timeout
        self._metadata: list[tuple[str, str | bytes]] = list(metadata)
        self._method = _METHODS[version]

    @classmethod
    async def connect(
        cls,
        invoker: CallInvoker,
        *,
        timeout: float = 10.0,
        metadata: Sequence[tuple[str, str]] = (),
        upstream: str | None = None,
    ) -> ReflectionClient:
        """A client for the newest protocol version the upstream answers.

        v1 first; UNIMPLEMENTED falls back to v1alpha. Any other failure, or
        neither version served, raises :class:`DiscoveryError` (naming
        ``upstream`` when given).
        """
        for version in _VERSIONS:
            client = cls(invoker, version, timeout=timeout, metadata=metadata)
            try:
                await client.list_services()
            except DiscoveryError as exc:
                cause = exc.__cause__
                if isinstance(cause, UpstreamError) and cause.code == Code.UNIMPLEMENTED:
                    continue
                # Chain the upstream's error itself: that is what callers may want to inspect.
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
        reply = await self._ask("list_services", Request(list_services=""))
        return [service.name for service in reply.list_services_response.service]

    async def file_containing_symbol(self, symbol: str) -> list[bytes]:
        reply = await self._ask(
            f"file_containing_symbol({symbol!r})", Request(file_containing_symbol=symbol)
        )
        return list(reply.file_descriptor_response.file_descriptor_proto)

    async def file_by_filename(self, filename: str) -> list[bytes]:
        reply = await self._ask(
            f"file_by_filename({filename!r})", Request(file_by_filename=filename)
        )
        return list(reply.file_descriptor_response.file_descriptor_proto)

    async def close(self) -> None:
        """Nothing to release: every request is its own finished call.

        Present so callers may treat every source as closable.
        """

    async def _ask(self, what: str, request: Any) -> Any:
        """One exchange, with failures translated to :class:`DiscoveryError`."""
        replies = []
        try:
            async with self._invoker.request_stream(
                self._method, metadata=self._metadata, timeout=self._timeout
            ) as call:
                # Half-closed after the one request, so the server ends the call
                # with OK and its status is checked, not dropped.
                if await call.write(request):
                    await call.done_writing()
                while (reply := await call.read()) is not None:
                    replies.append(reply)
        except UpstreamError as exc:
            raise DiscoveryError(
                f"{what}: {code_name(exc.code)}: {exc.message or 'no details'}"
            ) from exc
        if len(replies) != 1:
            raise DiscoveryError(f"{what}: expected one reply, got {len(replies)}")
        reply = replies[0]
        assert isinstance(reply, Response)
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
