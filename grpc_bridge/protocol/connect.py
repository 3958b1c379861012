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

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from grpc_bridge.codec.message import CODECS, JSON_CODEC
from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import (
    BridgeError,
    RouteNotFound,
    UnsupportedMediaType,
    shown,
)
from grpc_bridge.pipeline.call import timeout_for
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.protocol.base import UNEXPOSED_HEADERS, WireProtocol, exposed_unless
from grpc_bridge.protocol.connect_errors import unary_error
from grpc_bridge.protocol.connect_stream import StreamWire, serve_stream
from grpc_bridge.protocol.connect_unary import (
    serve_unary,
    unary_form,
    unary_message,
    unary_message_now,
    unary_reply,
    unary_request,
)
from grpc_bridge.protocol.connect_wire import (
    PROTOCOL_VERSION_HEADER,
    check_version,
    media_type,
    stream_type,
    unary_type,
)
from grpc_bridge.routing.table import Match
from grpc_bridge.settings import Settings
from grpc_bridge.upstream.metadata import MetadataPolicy

NAME = "connect"
_STREAM_PREFIX = "application/connect+"
_STREAM_TYPES = frozenset(stream_type(codec) for codec in CODECS.values())
#: Unary types that name Connect by themselves: every codec's but JSON's, whose
#: ``application/json`` a JSON route's call has too (Connect-Protocol-Version tells them apart).
_UNARY_TYPES = frozenset(unary_type(codec) for codec in CODECS.values() if codec is not JSON_CODEC)

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
#: ``connect-*``, ``x-request-id``, and ``content-encoding``: Connect's own unary
#: compression) are exposed to it.
_NOT_EXPOSED = UNEXPOSED_HEADERS


def _is_connect_get(method: str, query: str) -> bool:
    return method == "GET" and "connect=v1" in query and "connect=v1" in query.split("&")


#: What a request is to Connect: a stream codec's media type, ``_UNARY``, or ``""`` (not
#: Connect's).
_UNARY = "unary"


def _typed_kind(headers: Mapping[str, str]) -> str:
    """What the Content-Type alone makes a request: a stream's media type, ``_UNARY``, or ``""``."""
    value = headers.get("Content-Type")
    # The JSON routes' usual type is answered without parsing it.
    if value is None or value == "application/json":
        return ""
    media = value.partition(";")[0].strip().lower()
    if media in _STREAM_TYPES:
        return media
    if media in _UNARY_TYPES or media.startswith(_STREAM_PREFIX):
        return _UNARY
    return ""


def _kind(method: str, headers: Mapping[str, str], query: str) -> str:
    kind = _typed_kind(headers)
    if not kind and (PROTOCOL_VERSION_HEADER in headers or _is_connect_get(method, query)):
        kind = _UNARY
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
        return exposed_unless(header, _NOT_EXPOSED)


class ConnectUnary(_Connect):
    """Unary POST and GET, and what no stream codec claims; errors as Connect's error JSON."""

    kinds = frozenset({MethodKind.UNARY})
    # Unary Connect is application/json too: its Connect-Protocol-Version header (or a
    # GET's connect=v1) tells it from a JSON route's call.
    media_types = _UNARY_TYPES
    claims_by_headers = True
    # Connect unary answers take Content-Encoding by Accept-Encoding, as any HTTP answer.
    http_compression = True

    def claims(self, method: str, headers: Mapping[str, str], query: str) -> bool:
        return _kind(method, headers, query) == _UNARY

    def error_response(
        self, exc: BridgeError, ctx: RequestContext, headers: Mapping[str, str]
    ) -> web.Response:
        status, answer, body = unary_error(exc, ctx.pool)
        return web.Response(body=body, status=status, headers=answer)

    # -- the unary POST on plain values (protocol/base.py PlainUnary), connect_unary.py's --

    # The functions themselves, not methods that call them: no coroutine layer per call.
    unary_form = staticmethod(unary_form)
    unary_timeout = staticmethod(timeout_for)
    message_now = staticmethod(unary_message_now)
    message_of_body = staticmethod(unary_message)
    unary_request = staticmethod(unary_request)
    unary_reply = staticmethod(unary_reply)

    async def serve(
        self, request: web.Request, match: Match, env: CallEnv, ctx: RequestContext
    ) -> web.StreamResponse:
        _check_route(request, match)
        media = media_type(request)
        if media.startswith(_STREAM_PREFIX):
            raise UnsupportedMediaType(
                f"unsupported Content-Type {shown(media)}: Connect streams are "
                "application/connect+json or application/connect+proto"
            )
        return await serve_unary(request, match, env, ctx, self.policy)


class ConnectStream(_Connect):
    """``application/connect+json`` or ``+proto`` streams; errors in the end-of-stream envelope."""

    # Bidi needs HTTP/2 end to end: served over h2c, refused with a clear error over
    # HTTP/1.1 (connect_stream.py); ``kinds`` are what HTTP/1.1 carries.
    kinds = frozenset({MethodKind.SERVER_STREAM, MethodKind.CLIENT_STREAM})
    claims_by_headers = False

    def __init__(self, policy: MetadataPolicy, wire: StreamWire) -> None:
        super().__init__(policy)
        self.wire = wire
        self._media = wire.media_type
        self.media_types = frozenset({self._media})

    def claims(self, method: str, headers: Mapping[str, str], query: str) -> bool:
        return _typed_kind(headers) == self._media

    def error_response(
        self, exc: BridgeError, ctx: RequestContext, headers: Mapping[str, str]
    ) -> web.Response:
        return self.wire.error_response(exc, ctx)

    async def serve(
        self, request: web.Request, match: Match, env: CallEnv, ctx: RequestContext
    ) -> web.StreamResponse:
        _check_route(request, match)
        return await serve_stream(request, match, env, ctx, self.policy, self.wire)


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
    return {
        "content_types": [unary_type(c) if unary else stream_type(c) for c in CODECS.values()],
        "get": unary and info.no_side_effects,
        # Over HTTP/1.1 (what browsers' fetch has): bidi needs HTTP/2 (h2c, connect_stream.py).
        "available": kind is not MethodKind.BIDI_STREAM,
    }


def connect_protocols(settings: Settings, policy: MetadataPolicy) -> list[WireProtocol]:
    """Connect's protocol objects in the order they are asked (streams first)."""
    return [
        *(ConnectStream(policy, StreamWire(codec, settings)) for codec in CODECS.values()),
        ConnectUnary(policy),
    ]
