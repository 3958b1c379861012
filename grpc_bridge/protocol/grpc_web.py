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
import binascii
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

from grpc_bridge.bridge import Bridge
from grpc_bridge.codec.details import status_bin
from grpc_bridge.codec.framing import Pairs, StreamEnd
from grpc_bridge.codec.raw import raw, raw_bytes
from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import (
    BridgeError,
    MethodNotAllowed,
    RouteNotFound,
    UnsupportedMediaType,
    UpstreamError,
    grpc_family_code,
    shown,
)
from grpc_bridge.pipeline.body import BodyReader
from grpc_bridge.pipeline.call import call_metadata
from grpc_bridge.pipeline.context import OVER_HTTP2, RequestContext
from grpc_bridge.pipeline.inflate import too_large
from grpc_bridge.pipeline.relay import ACTIVE_SINK, Activity
from grpc_bridge.pipeline.sink import HttpSink, finish_stream, relay_stream
from grpc_bridge.protocol.grpc_web_frames import (
    HEAD_SIZE,
    BadBase64,
    GrpcWebUnimplemented,
    RequestFrames,
    TextDecoder,
    frame,
    message_of_frames,
    status_fields,
    trailer_frame,
)
from grpc_bridge.protocol.grpc_web_stream import serve_request_stream
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.table import Match
from grpc_bridge.settings import Limits
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.api import CallInvoker
from grpc_bridge.upstream.deadlines import effective_timeout, parse_timeout
from grpc_bridge.upstream.metadata import Metadata, MetadataPolicy, plain_headers

NAME = "grpc-web"
_PREFIX = "application/grpc-web"
_OK = code_name(Code.OK)
#: The trailer frame of a call that succeeded with no trailing metadata.
OK_TRAILER = trailer_frame(0, "", None, ())

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
#: about the call: everything else (status, metadata) is exposed.
_NOT_EXPOSED = frozenset(
    {
        "access-control-allow-credentials",
        "access-control-allow-origin",
        "access-control-expose-headers",
        "cache-control",
        "connection",
        "content-encoding",
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


@dataclass(frozen=True, slots=True)
class Answer:
    """How a response is written: its Content-Type, base64 text or not, JSON or protobuf."""

    content_type: str
    text: bool
    json: bool

    def encode(self, data: bytes) -> bytes:
        """A frame as it goes on the wire (text mode: base64 of it alone)."""
        return binascii.b2a_base64(data, newline=False) if self.text else data


BINARY = Answer("application/grpc-web+proto", text=False, json=False)
TEXT = Answer("application/grpc-web-text+proto", text=True, json=False)
JSON = Answer("application/grpc-web+json", text=False, json=True)
_TEXT_TYPES = ("application/grpc-web-text", "application/grpc-web-text+proto")


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request asked for: its body in text mode or not, and the answer's form."""

    text_request: bool
    answer: Answer


#: Content-Type (media type, lower-case) → the request's text mode and JSON-ness.
_REQUESTS = {
    "application/grpc-web": (False, False),
    "application/grpc-web+proto": (False, False),
    "application/grpc-web+json": (False, True),
    "application/grpc-web-text": (True, False),
    "application/grpc-web-text+proto": (True, False),
}
_ASKED = {
    (text, json, text_accept): Asked(
        text, JSON if json else TEXT if text or text_accept else BINARY
    )
    for text, json in _REQUESTS.values()
    for text_accept in (False, True)
}
#: The current request's form, set by ``claims`` for its errors (``error_response``
#: is given no request); each request runs in its own task, hence its own context.


def describe(info: MethodInfo) -> dict[str, Any]:
    """How gRPC-Web clients call a method, for the admin port's ``/v1/services/{service}``."""
    return {
        "content_types": list(_REQUESTS),
        # gRPC-Web has no client streaming.
        "available": not info.kind.client_streams,
    }


def _media_type(value: str) -> str:
    return value.partition(";")[0].strip().lower()


def asked_by(content_type: str, accept: str | None) -> Asked | None:
    """The form a request asks for; None for an ``application/grpc-web`` subtype not served."""
    kind = _REQUESTS.get(_media_type(content_type))
    if kind is None:
        return None
    text_accept = accept is not None and _media_type(accept) in _TEXT_TYPES
    return _ASKED[(*kind, text_accept)]


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

    def __init__(self, policy: MetadataPolicy) -> None:
        # x-grpc-web is never metadata (upstream/metadata.py); x-user-agent is the client's
        # own user agent, which the upstream sees as the bridge's.
        self.policy = dataclasses.replace(
            policy, deny_headers=policy.deny_headers | {"x-user-agent"}
        )

    def claims(self, request: web.Request) -> bool:
        if request.method != "POST":
            return False
        content_type = request.headers.get("Content-Type")
        return content_type is not None and content_type[:20].lower() == _PREFIX

    def describe(self, info: MethodInfo) -> dict[str, Any] | None:
        return describe(info)

    def exposed(self, header: str) -> bool:
        return header not in _NOT_EXPOSED

    def error_response(
        self, exc: BridgeError, ctx: RequestContext, request: web.Request
    ) -> web.Response:
        asked = asked_by(request.headers.get("Content-Type", ""), request.headers.get("Accept"))
        code = grpc_family_code(exc)
        ctx.grpc_code = code_name(code)
        status = exc.http_status if isinstance(exc, (UnsupportedMediaType, BadBase64)) else 200
        response = web.Response(
            status=status, content_type=(asked.answer if asked else BINARY).content_type
        )
        headers = response.headers
        # The upstream's details as sent; the bridge's own (a BadRequest's field
        # violations) packed as a gRPC server would.
        if isinstance(exc, UpstreamError):
            details_bin = exc.details_bin
        else:
            details_bin = status_bin(code, exc.message, exc.details)
        for name, value in status_fields(code, exc.message, details_bin):
            headers.add(name, value)
        if isinstance(exc, UpstreamError):
            for name, value in plain_headers(exc.initial_metadata, exc.trailing_metadata):
                headers.add(name, value)
        elif isinstance(exc, MethodNotAllowed):
            headers["Allow"] = ", ".join(exc.allowed)
        return response

    async def serve(
        self, request: web.Request, match: Match, bridge: Bridge, ctx: RequestContext
    ) -> web.StreamResponse:
        asked = asked_by(request.headers.get("Content-Type", ""), request.headers.get("Accept"))
        if asked is None:
            raise UnsupportedMediaType(
                f"unsupported Content-Type {shown(request.headers.get('Content-Type', ''))}: "
                "gRPC-Web takes application/grpc-web, application/grpc-web+proto, "
                "application/grpc-web+json, application/grpc-web-text or "
                "application/grpc-web-text+proto"
            )
        plan = match.plan
        if match.binding is not None or plan is None:
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
        requested = parse_timeout(request.headers.get("Grpc-Timeout"), None)
        answer = asked.answer
        if kind.client_streams:
            framing = _FRAMINGS[answer]
            how = (answer.json, asked.text_request, framing, stream_headers)
            return await serve_request_stream(request, plan, bridge, ctx, metadata, requested, how)
        payload = await read_message(request, bridge.settings.limits, asked.text_request, ctx)
        invoker = bridge.invoker(plan.upstream)
        if kind is MethodKind.UNARY:
            headers, body = await unary_reply(invoker, plan, answer, payload, metadata, requested)
            ctx.grpc_code = _OK
            response = web.Response(body=body, content_type=answer.content_type)
            for name, value in headers:
                response.headers.add(name, value)
            return response
        info, message, encode = _call_of(plan, answer, payload)
        # Streams have no default deadline (spec §7): only the client's, clamped.
        stream_timeout = None if requested is None else min(requested, plan.limits.max_timeout_s)
        framing = _FRAMINGS[answer]
        ctx.open_stream(NAME)
        sink = HttpSink(request, framing, stream_headers)
        request[ACTIVE_SINK] = sink
        async with invoker.server_stream(
            info, message, metadata=metadata, timeout=stream_timeout
        ) as call:
            outcome = await relay_stream(call, encode, bridge, sink, framing, Activity(), None)
        return await finish_stream(sink, plan, ctx, outcome)


def _call_of(
    plan: MethodPlan, answer: Answer, payload: bytes
) -> tuple[MethodInfo, Message, Callable[[Message], bytes]]:
    """The method, request message and response encoder of a call: raw bytes for protobuf."""
    if answer.json:
        return plan.info, plan.request_codec.decode(payload), plan.response_codec.encode
    return plan.raw_info, raw(payload), raw_bytes


async def unary_reply(
    invoker: CallInvoker,
    plan: MethodPlan,
    answer: Answer,
    payload: bytes,
    metadata: Metadata,
    requested: float | None,
) -> tuple[list[tuple[str, str]], bytes]:
    """A unary call's answer: its headers (but Content-Type, ``answer.content_type``) and body.

    No HTTP server in here: any edge that has read the request's message
    (:func:`read_message`, :func:`message_of_body`) can send what this returns.
    """
    info, message, encode = _call_of(plan, answer, payload)
    timeout = effective_timeout(requested, plan.limits.timeout_s, plan.limits.max_timeout_s)
    result = await invoker.unary(info, message, metadata=metadata, timeout=timeout)
    trailing = result.trailing_metadata
    body = answer.encode(frame(encode(result.response))) + answer.encode(
        trailer_frame(0, "", None, trailing) if trailing else OK_TRAILER
    )
    return plain_headers(result.initial_metadata, ()), body


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
