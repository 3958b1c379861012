"""The JSON family: REST/JSON unary, NDJSON and SSE streams, request streams, WebSocket.

What every request that no other protocol claims speaks. The handlers live in
``json_unary.py``, ``json_streaming.py`` and ``json_websocket.py``;
this module picks one by the method's kind, and answers errors with the
Status JSON body (spec §5) and upstream metadata as ``Grpc-Metadata-*`` /
``Grpc-Trailer-*`` headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import BridgeError
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.responses import error_response
from grpc_bridge.protocol.json_streaming import (
    handle_bidi_stream,
    handle_client_stream,
    handle_server_stream,
)
from grpc_bridge.protocol.json_unary import handle_unary
from grpc_bridge.protocol.json_websocket import handle_websocket, is_websocket
from grpc_bridge.routing.table import Match
from grpc_bridge.upstream.metadata import MetadataPolicy

#: Request headers the JSON family reads, beyond ``metadata.forward_headers``.
JSON_REQUEST_HEADERS = frozenset(
    {
        "accept",
        "authorization",
        "cache-control",
        "connect-timeout-ms",
        # A compressed request body (gzip, deflate: pipeline/inflate.py).
        "content-encoding",
        "content-type",
        "grpc-timeout",
        "last-event-id",
        "x-request-id",
    }
)
_EXPOSED_PREFIXES = ("grpc-metadata-", "grpc-trailer-")

_HANDLERS = {
    MethodKind.UNARY: handle_unary,
    MethodKind.SERVER_STREAM: handle_server_stream,
    MethodKind.CLIENT_STREAM: handle_client_stream,
    MethodKind.BIDI_STREAM: handle_bidi_stream,
}


class JsonProtocol:
    name = "json"
    cors_allow_headers = JSON_REQUEST_HEADERS
    kinds = frozenset(MethodKind)
    http_compression = True
    media_types = frozenset({"application/json"})
    claims_by_headers = False

    def __init__(self, policy: MetadataPolicy) -> None:
        self.policy = policy

    def claims(self, method: str, headers: Mapping[str, str], query: str) -> bool:
        return True

    def describe(self, info: MethodInfo) -> dict[str, Any] | None:
        return None  # the method's http_methods and bindings say it all

    def exposed(self, header: str) -> bool:
        return header == "x-request-id" or header.startswith(_EXPOSED_PREFIXES)

    def error_response(
        self, exc: BridgeError, ctx: RequestContext, headers: Mapping[str, str]
    ) -> web.Response:
        return error_response(exc, ctx.pool)

    async def serve(
        self, request: web.Request, match: Match, env: CallEnv, ctx: RequestContext
    ) -> web.StreamResponse:
        if is_websocket(request):
            return await handle_websocket(request, match, env, ctx, self.policy)
        return await _HANDLERS[match.plan.info.kind](request, match, env, ctx, self.policy)
