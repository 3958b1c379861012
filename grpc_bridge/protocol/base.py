"""The interface every wire protocol implements, and where a request's protocol is kept."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import BridgeError
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.routing.table import Match

#: Response headers that say nothing about the call (transport, caching, the proxy's own):
#: a browser protocol's ``exposed`` leaves them out (and CORS's own, ``access-control-*``),
#: whatever else its clients read.
UNEXPOSED_HEADERS = frozenset(
    {
        "cache-control",
        "connection",
        "content-length",
        "content-type",
        "date",
        "keep-alive",
        "server",
        "transfer-encoding",
        "vary",
        "x-accel-buffering",
    }
)


def exposed_unless(header: str, unexposed: frozenset[str]) -> bool:
    """Whether CORS exposes ``header`` (lower-case): neither in ``unexposed`` nor CORS's own."""
    return header not in unexposed and not header.startswith("access-control-")


class WireProtocol(Protocol):
    #: Label in logs (``protocol``) and metrics (``grpc_bridge_protocol_requests_total``).
    name: str
    #: Request headers this protocol's browser clients send: a CORS preflight allows them.
    cors_allow_headers: frozenset[str]
    #: The method kinds it carries over HTTP/1.1 (listed per method by GET /v1/services/{s}).
    kinds: frozenset[MethodKind]
    #: The edge may compress its whole answers by ``Accept-Encoding`` (RFC 9110). Protocols
    #: with compression of their own (Connect, gRPC-Web) say no: their clients don't expect it.
    http_compression: bool
    #: Content-Types (exact, as sent) that name this protocol: ``select.py`` looks a
    #: request's up and asks only the protocol found whether it ``claims`` the request.
    media_types: frozenset[str]
    #: It may claim a request without one of its media types (by a header or the query):
    #: asked about a request with no Content-Type or the JSON family's.
    claims_by_headers: bool

    def claims(self, request: web.Request) -> bool:
        """Whether ``request`` speaks this protocol (headers and query only: no body read)."""

    def describe(self, info: MethodInfo) -> dict[str, Any] | None:
        """How this protocol's clients call a method, for ``GET /v1/services/{service}``
        (under the protocol's name); None: nothing beyond the method's own description."""

    def exposed(self, header: str) -> bool:
        """Whether a response header (lower-case) is one its clients read: CORS exposes it."""

    def error_response(
        self, exc: BridgeError, ctx: RequestContext, request: web.Request
    ) -> web.Response:
        """The whole answer to a call that failed before its response started."""

    async def serve(
        self, request: web.Request, match: Match, env: CallEnv, ctx: RequestContext
    ) -> web.StreamResponse:
        """Serve a routed call (the method allowed on this HTTP method)."""


#: The protocol a request was found to speak (set by the edge middleware).
PROTOCOL = web.RequestKey("protocol", WireProtocol)
