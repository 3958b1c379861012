"""gRPC-Web, browser clients' gRPC (grpc/grpc doc/PROTOCOL-WEB.md), as Envoy's grpc_web serves it.

``POST /package.Service/Method`` with one of

================================  =============================================
Content-Type                      request and response
================================  =============================================
``application/grpc-web``,         protobuf frames, passed to and from the
``application/grpc-web+proto``    upstream as they are (``plan.raw_info``)
``application/grpc-web+json``     JSON frames, through the JSON codec
``application/grpc-web-text``,    base64 of protobuf frames; the answer is text
``application/grpc-web-text+proto``  too (and for ``Accept: application/grpc-web-text``)
================================  =============================================

(parameters such as ``;charset`` ignored; another ``application/grpc-web``
subtype is a 415). The request body is exactly one message frame, read and
bounded as it arrives (grpc_web_frames.py); a compressed frame (flag 0x01)
is inflated per ``grpc-encoding`` (gzip, deflate), bounded by
``limits.max_request_bytes``. Unary and server-streaming methods over
HTTP/1.1: gRPC-Web as browsers speak it has no client streaming; over HTTP/2
client and bidi streaming too (grpc_web_stream.py).

The answer: the upstream's initial metadata as plain headers, a frame per
response message (a stream's flushed as each arrives), then the trailer
frame (``grpc-status``, ``grpc-message``, ``grpc-status-details-bin``, the
upstream's trailing metadata). A call that fails before any message is
*trailers-only*: HTTP 200, the status and metadata in the headers, an empty
body. So is every error of the bridge's own (an unknown method is
UNIMPLEMENTED, as a gRPC server answers it), but a Content-Type this
protocol does not serve (415) and a text body that is not base64 (400),
which keep their HTTP status as gRPC servers and Envoy answer them.

Metadata: every request header but the HTTP and protocol ones (and
``metadata.deny_headers``; ``x-grpc-web`` and ``x-user-agent`` are read,
never forwarded); deadlines from ``grpc-timeout``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from grpc_bridge.codec.framing import Pairs, StreamEnd
from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import (
    BridgeError,
    RouteNotFound,
    UnsupportedMediaType,
    grpc_family_code,
    shown,
)
from grpc_bridge.pipeline.body import BodyReader
from grpc_bridge.pipeline.call import call_metadata, stream_deadline
from grpc_bridge.pipeline.context import OVER_HTTP2, RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.inflate import too_large
from grpc_bridge.pipeline.relay import Activity
from grpc_bridge.pipeline.sink import finish_stream, open_sink, relay_stream
from grpc_bridge.protocol.base import UNEXPOSED_HEADERS, exposed_unless
from grpc_bridge.protocol.grpc_web_frames import (
    BINARY,
    HEAD_SIZE,
    JSON,
    REQUEST_TYPES,
    TEXT,
    Answer,
    GrpcWebUnimplemented,
    RequestFrames,
    TextDecoder,
    frame,
    message_of_frames,
    trailer_frame,
)
from grpc_bridge.protocol.grpc_web_stream import StreamWire, serve_request_stream
from grpc_bridge.protocol.grpc_web_unary import (
    CONTENT_TYPE,
    asked_of,
    error_answer,
    requested_timeout,
    unary_form,
    unary_message,
    unary_message_now,
    unary_reply,
    unary_request,
    unary_timeout,
)
from grpc_bridge.routing.table import Match
from grpc_bridge.settings import Limits
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.metadata import MetadataPolicy, plain_headers

NAME = "grpc-web"
_PREFIX = "application/grpc-web"
_OK = code_name(Code.OK)

#: What browser gRPC-Web clients (grpc-web, connect-web) send besides metadata.
REQUEST_HEADERS = frozenset(
    {
        "content-type",
        "grpc-accept-encoding",
        "grpc-encoding",
        "grpc-timeout",
        "x-grpc-web",
        "x-user-agent",
    }
)
#: Response headers every client reads without CORS's help, or that say nothing
#: about the call: everything else (status, metadata) is exposed. Unlike Connect's, a
#: gRPC-Web client never reads ``content-encoding`` (its messages say ``grpc-encoding``).
_NOT_EXPOSED = UNEXPOSED_HEADERS | {"content-encoding"}


def describe(info: MethodInfo) -> dict[str, Any]:
    """How gRPC-Web clients call a method, for the admin port's ``/v1/services/{service}``."""
    return {
        "content_types": list(REQUEST_TYPES),
        # gRPC-Web has no client streaming.
        "available": not info.kind.client_streams,
    }


def stream_headers(initial: Pairs, trailing: Pairs) -> list[tuple[str, str]]:
    """A stream's head: initial metadata as plain headers. The trailers go in the trailer
    frame, which the end always carries (pipeline/relay.py passes them to ``end``)."""
    return plain_headers(initial, ())


class GrpcWebFraming:
    """A response stream's frames in one answer form (one framing per form, made once)."""

    name = NAME
    plain_errors = True
    # gRPC-Web compresses per message, not the body.
    compressible = False

    __slots__ = ("_answer", "content_type")

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self.content_type = answer.content_type

    def open(self) -> bytes:
        return b""

    def message(self, payload: bytes) -> bytes:
        return self._answer.encode(frame(payload))

    def error(self, end: StreamEnd) -> bytes:
        return self._answer.encode(
            trailer_frame(end.code, end.message, end.details_bin, end.trailing)
        )

    def end(self, end: StreamEnd) -> bytes:
        return self._answer.encode(trailer_frame(0, "", None, end.trailing))


#: The framing of each answer form: stateless, so one per form serves every stream.
_FRAMINGS = {answer: GrpcWebFraming(answer) for answer in (BINARY, TEXT, JSON)}


class GrpcWebProtocol:
    name = NAME
    cors_allow_headers = REQUEST_HEADERS
    # gRPC-Web over HTTP/1.1 has no request streams (over HTTP/2: grpc_web_stream.py).
    kinds = frozenset({MethodKind.UNARY, MethodKind.SERVER_STREAM})
    # Messages carry grpc-encoding of their own; clients don't undo an HTTP coding.
    http_compression = False
    media_types = frozenset(REQUEST_TYPES)
    claims_by_headers = False

    def __init__(self, policy: MetadataPolicy) -> None:
        # x-grpc-web is never metadata (upstream/metadata.py); x-user-agent is the client's
        # own user agent, which the upstream sees as the bridge's.
        self.policy = dataclasses.replace(
            policy, deny_headers=policy.deny_headers | {"x-user-agent"}
        )

    def claims(self, method: str, headers: Mapping[str, str], query: str) -> bool:
        if method != "POST":
            return False
        content_type = headers.get(CONTENT_TYPE)
        return content_type is not None and content_type[:20].lower() == _PREFIX

    def describe(self, info: MethodInfo) -> dict[str, Any] | None:
        return describe(info)

    def exposed(self, header: str) -> bool:
        return exposed_unless(header, _NOT_EXPOSED)

    def error_response(
        self, exc: BridgeError, ctx: RequestContext, headers: Mapping[str, str]
    ) -> web.Response:
        ctx.grpc_code = code_name(grpc_family_code(exc))
        status, answer, body = error_answer(exc, headers)
        return web.Response(status=status, headers=answer, body=body)

    # -- the unary call on plain values (protocol/base.py PlainUnary), grpc_web_unary.py's --

    # The functions themselves, not methods that call them: no coroutine layer per call.
    unary_form = staticmethod(unary_form)
    unary_timeout = staticmethod(unary_timeout)
    message_now = staticmethod(unary_message_now)
    message_of_body = staticmethod(unary_message)
    unary_request = staticmethod(unary_request)
    unary_reply = staticmethod(unary_reply)

    async def serve(
        self, request: web.Request, match: Match, env: CallEnv, ctx: RequestContext
    ) -> web.StreamResponse:
        headers = request.headers
        asked = asked_of(headers)
        if asked is None:
            raise UnsupportedMediaType(
                f"unsupported Content-Type {shown(headers.get('Content-Type', ''))}: "
                "gRPC-Web takes application/grpc-web, application/grpc-web+proto, "
                "application/grpc-web+json, application/grpc-web-text or "
                "application/grpc-web-text+proto"
            )
        plan = match.plan
        if match.binding is not None:
            raise RouteNotFound(
                f"no gRPC method at {request.rel_url.raw_path}: gRPC-Web calls "
                "POST /package.Service/Method"
            )
        kind = plan.info.kind
        if kind.client_streams and not request.get(OVER_HTTP2, False):
            raise GrpcWebUnimplemented(
                f"{plan.full_name} is a {kind.value.replace('_', '-')}ing method: "
                "gRPC-Web has only unary and server-streaming calls over HTTP/1.1 "
                "(call it over HTTP/2, or use the NDJSON or WebSocket routes, or Connect)"
            )
        metadata = call_metadata(request, ctx, self.policy)
        invoker = env.invoker(plan.upstream)
        limits = env.limits
        if kind.client_streams:
            framing = _FRAMINGS[asked.answer]
            wire = StreamWire(asked.answer.codec, asked.text_request, framing, stream_headers)
            requested = requested_timeout(headers)
            return await serve_request_stream(request, plan, env, ctx, metadata, requested, wire)
        if kind is MethodKind.UNARY:
            timeout = self.unary_timeout(plan, headers)
            payload = await read_message(request, limits, asked.text_request, ctx)
            unary = self.unary_request(asked, plan, payload, metadata, timeout)
            answer, body = await self.unary_reply(unary, invoker)
            ctx.grpc_code = _OK
            return web.Response(body=body, headers=answer)
        requested = requested_timeout(headers)
        payload = await read_message(request, limits, asked.text_request, ctx)
        codec = asked.answer.codec
        message = codec.decode(plan, payload)
        framing = _FRAMINGS[asked.answer]
        sink = open_sink(request, ctx, framing, NAME, stream_headers)
        deadline = stream_deadline(requested, plan)
        async with invoker.server_stream(
            codec.info(plan), message, metadata=metadata, timeout=deadline
        ) as call:
            encode = codec.encoder(plan)
            outcome = await relay_stream(call, encode, env, sink, framing, Activity(), None)
        return await finish_stream(sink, plan, ctx, outcome)


async def read_message(
    request: web.Request, limits: Limits, text: bool, ctx: RequestContext
) -> bytes:
    """The request's one message, bounded as the body arrives; inflated if it is compressed."""
    limit = limits.max_request_bytes
    # Base64 (4 characters per 3 bytes, padding per chunk) and HTTP compression
    # aside, a body is its frame: this only stops one that inflates to nothing forever.
    wire_limit = 4 * (HEAD_SIZE + limit) + 64
    length = request.content_length
    if length is not None and length > wire_limit:
        raise too_large(limit)
    frames = RequestFrames(limit)
    decoder = TextDecoder() if text else None
    content = request.content
    if content.is_eof() and "Content-Encoding" not in request.headers:
        # The whole body is in already, as sent: read without a timer (the usual unary call).
        while chunk := await content.readany():
            frames.feed(decoder.feed(chunk) if decoder is not None else chunk)
    else:
        timeout = limits.body_read_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        reader = BodyReader(request, timeout, deadline, wire_limit)
        while chunk := await reader.read():
            frames.feed(decoder.feed(chunk) if decoder is not None else chunk)
    if decoder is not None:
        decoder.finish()
    ctx.bytes_in = request.content.total_bytes
    return await message_of_frames(frames, request.headers.get("Grpc-Encoding"), limit)
