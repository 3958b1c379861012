"""Which wire protocol a request speaks: each protocol asked in turn, JSON last."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.protocol.base import PlainUnary, WireProtocol
from grpc_bridge.protocol.connect import ConnectUnary, connect_protocols
from grpc_bridge.protocol.grpc_web import GrpcWebProtocol
from grpc_bridge.protocol.json import JsonProtocol
from grpc_bridge.settings import Settings
from grpc_bridge.upstream.metadata import MetadataPolicy

#: The protocols whose unary call is steps on plain values, which the lean edge serves
#: (edge/fastpath_heads.py); named here so that mypy holds each to the interface.
PLAIN_UNARY: tuple[type[PlainUnary], ...] = (GrpcWebProtocol, ConnectUnary)


class Protocols:
    """The proxy's protocols, in the order they are asked; ``json`` answers the rest."""

    def __init__(self, claimants: Sequence[WireProtocol], json: JsonProtocol) -> None:
        self._claimants = tuple(claimants)
        self.json = json
        self.all: tuple[WireProtocol, ...] = (*self._claimants, json)
        #: What a CORS preflight may allow, whichever protocol the request will speak.
        self.cors_allow_headers = frozenset().union(*(p.cors_allow_headers for p in self.all))

    def names(self) -> list[str]:
        """Every protocol's name, JSON first (a protocol of several claimants named once)."""
        return list(dict.fromkeys((self.json.name, *(p.name for p in self._claimants))))

    def names_for(self, kind: MethodKind) -> list[str]:
        """The protocols that can call a method of ``kind``, JSON first."""
        named = (p.name for p in self._claimants if kind in p.kinds)
        return list(dict.fromkeys((self.json.name, *named)))

    def describe(self, info: MethodInfo) -> dict[str, Any]:
        """How each protocol's clients call a method, by protocol (``grpc-web`` as
        ``grpc_web``), for the admin port's ``/v1/services/{service}``."""
        out: dict[str, Any] = {}
        for protocol in self.all:
            key = protocol.name.replace("-", "_")
            if key not in out and (described := protocol.describe(info)) is not None:
                out[key] = described
        return out

    def of(self, request: web.Request) -> WireProtocol:
        return self.of_head(request.method, request.headers, request.rel_url.raw_query_string)

    def of_head(self, method: str, headers: Mapping[str, str], query: str) -> WireProtocol:
        """The protocol of a request with this method, headers and raw query string."""
        for protocol in self._claimants:
            if protocol.claims(method, headers, query):
                return protocol
        return self.json


#: The proxy app's protocols (the admin app has none: it answers JSON).
PROTOCOLS = web.AppKey("protocols", Protocols)


def forward_all_policy(settings: Settings) -> MetadataPolicy:
    """Every request header is metadata but the protocol's own and ``metadata.deny_headers``:
    how gRPC-Web and Connect clients send metadata (bare headers)."""
    return MetadataPolicy(
        forward_headers=frozenset(),
        max_bytes=settings.limits.max_metadata_bytes,
        trust_forwarded_for=settings.metadata.trust_forwarded_for,
        forward_all=True,
        deny_headers=frozenset(settings.metadata.deny_headers),
    )


def build_protocols(settings: Settings, policy: MetadataPolicy) -> Protocols:
    """Every protocol of the proxy listener; ``policy`` is the JSON routes' metadata allowlist."""
    browser_policy = forward_all_policy(settings)
    # gRPC-Web and Connect claim disjoint requests (by Content-Type and Connect's header).
    claimants: list[WireProtocol] = [
        GrpcWebProtocol(browser_policy),
        *connect_protocols(settings, browser_policy),
    ]
    return Protocols(claimants, JsonProtocol(policy))
