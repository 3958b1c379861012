"""Which wire protocol a request speaks: looked up by its Content-Type, else each asked.

A request's Content-Type, as sent, finds the protocol whose media type it is
(one dict lookup), and only that protocol is asked whether it ``claims`` the
request (gRPC-Web: a POST). No Content-Type, or the JSON family's: only the
protocols that claim by a header or the query (Connect unary) are asked, JSON
otherwise. Any other value (parameters, other case, a type nobody names) asks
every claimant in turn, JSON last, as the lookup's answers do.
"""

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
        self._by_media: dict[str, WireProtocol] = {}
        for protocol in self._claimants:
            for media_type in protocol.media_types:
                # First come, first served: as the claimants are asked.
                self._by_media.setdefault(media_type, protocol)
        #: Content-Types no claimant's media type names, and that none reads further.
        self._plain = frozenset({"", *json.media_types})
        self._by_headers = tuple(p for p in self._claimants if p.claims_by_headers)
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
        """The protocol of a request with this method, (case-insensitive) headers and raw
        query string: plain values, so that the lean edge asks it of a head it parsed."""
        content_type = headers.get("Content-Type", "")
        named = self._by_media.get(content_type)
        if named is not None:
            if named.claims(method, headers, query):
                return named
        elif content_type in self._plain:
            for protocol in self._by_headers:
                if protocol.claims(method, headers, query):
                    return protocol
            return self.json
        return self.asked(method, headers, query)

    def asked(self, method: str, headers: Mapping[str, str], query: str) -> WireProtocol:
        """Each claimant asked in turn, JSON last: what :meth:`of_head` answers, the long way."""
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
