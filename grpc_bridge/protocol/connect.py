"""The Connect protocol (connectrpc.com/docs/protocol), for connect-es, connect-go and buf curl.

Which requests are Connect's (asked before JSON, protocol/select.py):

- a ``Connect-Protocol-Version`` header (both official clients send it on
  every POST); a plain JSON POST without it keeps the JSON routes' meaning;
- ``Content-Type: application/proto``, or any ``application/connect+*``;
- a ``GET`` with ``connect=v1`` in its query (Connect GET sends no header
  and no Content-Type).

Three protocol objects, all named ``connect``, split them so each answers
its errors in the right shape: one per stream codec (``connect+json``,
``connect+proto``: HTTP 200 and an end-of-stream envelope, which is how a
stream client reads an error) and one for the rest (unary POST and GET, and
an ``application/connect+`` codec the bridge does not have: Connect's error
JSON with the HTTP status of Connect's table). Every error of a Connect
request takes these shapes, the bridge's own too (404, 405, 413, 415, 503, 504,
bugs). Metadata is every request header but the protocol's own and
``metadata.deny_headers`` (protocol/select.py ``forward_all_policy``).
See connect_unary.py, connect_stream.py, connect_errors.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from grpc_bridge.bridge import Bridge
from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import (
    BridgeError,
    MethodNotAllowed,
    RouteNotFound,
    UnsupportedMediaType,
    shown,
)
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.protocol.base import WireProtocol
from grpc_bridge.protocol.connect_errors import error_headers, http_status, unary_error_body
from grpc_bridge.protocol.connect_stream import StreamWire, serve_stream
from grpc_bridge.protocol.connect_unary import serve_unary
from grpc_bridge.protocol.connect_wire import (
    JSON_CODEC,
    PROTO_CODEC,
    PROTOCOL_VERSION_HEADER,
    check_version,
    media_type,
)
from grpc_bridge.routing.table import Match
from grpc_bridge.settings import Settings
from grpc_bridge.upstream.metadata import MetadataPolicy

NAME = "connect"
_STREAM_PREFIX = "application/connect+"
_STREAM_TYPES = frozenset({JSON_CODEC.stream_type, PROTO_CODEC.stream_type})

#: Request headers Connect clients send; a CORS preflight allows them.
REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "connect-accept-encoding",
        "connect-content-encoding",
        "connect-protocol-version",
        "connect-timeout-ms",
        "content-encoding",
        "content-type",
        "x-request-id",
    }
)
#: Response headers a client has no need to read: all others (metadata, ``trailer-*``,
#: ``connect-*``, ``x-request-id``...) are exposed to it.
_NOT_EXPOSED = frozenset(
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


def _is_connect_get(request: web.Request) -> bool:
    if request.method != "GET":
        return False
    query = request.rel_url.raw_query_string
    return "connect=v1" in query and "connect=v1" in query.split("&")


#: What a request is to Connect: a stream codec's media type, ``_UNARY``, or ``""`` (not
#: Connect's). Worked out once per request, by whichever Connect claimant is asked first.
_KIND = web.RequestKey("connect_kind", str)
_UNARY = "unary"


def _kind(request: web.Request) -> str:
    known: str | None = request.get(_KIND)
    if known is not None:
        return known
    headers = request.headers
    kind = ""
    value = headers.get("Content-Type")
    # The JSON routes' usual type is answered without parsing it.
    if value is not None and value != "application/json":
        media = value.partition(";")[0].strip().lower()
        if media in _STREAM_TYPES:
            kind = media
        elif media == "application/proto" or media.startswith(_STREAM_PREFIX):
            kind = _UNARY
    if not kind and (PROTOCOL_VERSION_HEADER in headers or _is_connect_get(request)):
        kind = _UNARY
    request[_KIND] = kind
    return kind


class _Connect:
    name = NAME
    cors_allow_headers = REQUEST_HEADERS
    # Streams compress per envelope (Connect-Content-Encoding), never the whole body.
    http_compression = False

    def __init__(self, policy: MetadataPolicy) -> None:
        self.policy = policy

    def describe(self, info: MethodInfo) -> dict[str, Any] | None:
        return describe(info)

    def exposed(self, header: str) -> bool:
        return header not in _NOT_EXPOSED and not header.startswith("access-control-")


class ConnectUnary(_Connect):
    """Unary POST and GET, and what no stream codec claims; errors as Connect's error JSON."""

    kinds = frozenset({MethodKind.UNARY})
    # Connect unary answers take Content-Encoding by Accept-Encoding, as any HTTP answer.
    http_compression = True

    def claims(self, request: web.Request) -> bool:
        return _kind(request) == _UNARY

    def error_response(
        self, exc: BridgeError, ctx: RequestContext, request: web.Request
    ) -> web.Response:
        response = web.Response(
            body=unary_error_body(exc, ctx.pool),
            status=http_status(exc),
            headers=error_headers(exc),
        )
        response.content_type = "application/json"
        if isinstance(exc, MethodNotAllowed):
            response.headers["Allow"] = ", ".join(exc.allowed)
        return response

    async def serve(
        self, request: web.Request, match: Match, bridge: Bridge, ctx: RequestContext
    ) -> web.StreamResponse:
        _check_route(request, match)
        media = media_type(request)
        if media.startswith(_STREAM_PREFIX):
            raise UnsupportedMediaType(
                f"unsupported Content-Type {shown(media)}: Connect streams are "
                "application/connect+json or application/connect+proto"
            )
        return await serve_unary(request, match, bridge, ctx, self.policy)


class ConnectStream(_Connect):
    """``application/connect+json`` or ``+proto`` streams; errors in the end-of-stream envelope."""

    # Bidi needs HTTP/2 end to end: served over h2c, refused with a clear error over
    # HTTP/1.1 (connect_stream.py); ``kinds`` are what HTTP/1.1 carries.
    kinds = frozenset({MethodKind.SERVER_STREAM, MethodKind.CLIENT_STREAM})

    def __init__(self, policy: MetadataPolicy, wire: StreamWire) -> None:
        super().__init__(policy)
        self.wire = wire
        self._media = wire.codec.stream_type

    def claims(self, request: web.Request) -> bool:
        return _kind(request) == self._media

    def error_response(
        self, exc: BridgeError, ctx: RequestContext, request: web.Request
    ) -> web.Response:
        return self.wire.error_response(exc, ctx)

    async def serve(
        self, request: web.Request, match: Match, bridge: Bridge, ctx: RequestContext
    ) -> web.StreamResponse:
        _check_route(request, match)
        return await serve_stream(request, match, bridge, ctx, self.policy, self.wire)


def _check_route(request: web.Request, match: Match) -> None:
    check_version(request)
    if match.binding is not None:
        # A REST binding's path: Connect calls are /package.Service/Method.
        raise RouteNotFound(
            f"no Connect method at {request.rel_url.raw_path}: "
            "Connect calls go to /package.Service/Method"
        )


def describe(info: MethodInfo) -> dict[str, Any]:
    """How Connect clients call a method, for the admin port's ``/v1/services/{service}``."""
    kind = info.kind
    unary = kind is MethodKind.UNARY
    codecs = (JSON_CODEC, PROTO_CODEC)
    return {
        "content_types": [c.unary_type if unary else c.stream_type for c in codecs],
        "get": unary and info.no_side_effects,
        # Over HTTP/1.1 (what browsers' fetch has): bidi needs HTTP/2 (h2c, connect_stream.py).
        "available": kind is not MethodKind.BIDI_STREAM,
    }


def connect_protocols(settings: Settings, policy: MetadataPolicy) -> list[WireProtocol]:
    """Connect's protocol objects in the order they are asked (streams first)."""
    return [
        ConnectStream(policy, StreamWire(JSON_CODEC, settings)),
        ConnectStream(policy, StreamWire(PROTO_CODEC, settings)),
        ConnectUnary(policy),
    ]
