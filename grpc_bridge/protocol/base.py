"""The interface every wire protocol implements, and where a request's protocol is kept.

:class:`WireProtocol` is what the aiohttp edge calls. A protocol whose unary
calls the lean edge serves too is also a :class:`PlainUnary`: its unary call
as steps on plain values (headers, body bytes in; a header list and body bytes
out), which its own aiohttp handler calls after reading the body and the lean
edge (edge/fastpath_serve.py) calls with the body it buffered, so that the
protocol is written once and both edges send the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import BridgeError
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.table import Match
from grpc_bridge.upstream.api import CallInvoker
from grpc_bridge.upstream.metadata import Metadata, MetadataPolicy

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

    def claims(self, method: str, headers: Mapping[str, str], query: str) -> bool:
        """Whether a request speaks this protocol, from its method, (case-insensitive)
        headers and raw query string: no body read. Plain values, so that the lean edge
        asks the same question of a head it parsed (once per head: edge/fastpath.py)."""

    def describe(self, info: MethodInfo) -> dict[str, Any] | None:
        """How this protocol's clients call a method, for ``GET /v1/services/{service}``
        (under the protocol's name); None: nothing beyond the method's own description."""

    def exposed(self, header: str) -> bool:
        """Whether a response header (lower-case) is one its clients read: CORS exposes it."""

    def error_response(
        self, exc: BridgeError, ctx: RequestContext, headers: Mapping[str, str]
    ) -> web.Response:
        """The whole answer to a call that failed before its response started, on
        either edge (``headers``: the request's, case-insensitive)."""

    async def serve(
        self, request: web.Request, match: Match, env: CallEnv, ctx: RequestContext
    ) -> web.StreamResponse:
        """Serve a routed call (the method allowed on this HTTP method)."""


# Not frozen: made one per unary call, and a frozen dataclass's __init__ (object.__setattr__
# per field) costs ~5x a plain one's. Read-only by convention.
@dataclass(slots=True)
class UnaryRequest:
    """A unary call read off its request and not yet made: the method as called upstream
    (raw for the binary variants), the message, how the answer is encoded and framed."""

    info: MethodInfo
    message: Any
    encode: Callable[[Any], bytes]
    metadata: Metadata
    timeout: float
    #: The protocol's answer form (its ``unary_form``).
    form: Any


@runtime_checkable
class PlainUnary(WireProtocol, Protocol):
    """A protocol's unary call on plain values: both edges call these steps, in this order."""

    #: The metadata policy of its requests (``pipeline.call.metadata_for``).
    policy: MetadataPolicy

    def unary_form(self, method: str, headers: Mapping[str, str]) -> Any:
        """What a request with these (case-insensitive) headers asks for, if it is a
        unary call these steps serve from a body in hand; None for any other (the
        aiohttp handler serves and refuses it). Pure: the lean edge keeps it per head."""

    def unary_timeout(self, plan: MethodPlan, headers: Mapping[str, str]) -> float:
        """The call's deadline from its headers (a bad header raises, before the body)."""

    def message_now(
        self, form: Any, headers: Mapping[str, str], body: bytes, limit: int
    ) -> bytes | None:
        """:meth:`message_of_body`'s message when it is plain to see (nothing to decode or
        inflate: the usual body), without a coroutine; None: ask :meth:`message_of_body`."""

    async def message_of_body(
        self, form: Any, headers: Mapping[str, str], body: bytes, limit: int
    ) -> bytes:
        """The request message of a body received whole, bounded by ``limit`` and with no
        ``Content-Encoding`` (the aiohttp handler reads a coded body, inflating it as it
        arrives: pipeline/body.py)."""

    def unary_request(
        self, form: Any, plan: MethodPlan, message: bytes, metadata: Metadata, timeout: float
    ) -> UnaryRequest:
        """The call, its message decoded (a bad one raises)."""

    async def unary_reply(
        self, call: UnaryRequest, invoker: CallInvoker
    ) -> tuple[list[tuple[str, str]], bytes]:
        """The upstream's answer: the ``200``'s headers (Content-Type among them) and body.
        A failure raises; the protocol's ``error_response`` answers it."""


#: The protocol a request was found to speak (set by the edge middleware).
PROTOCOL = web.RequestKey("protocol", WireProtocol)
