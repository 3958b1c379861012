"""gRPC-Web's unary call and error answer on plain values, for both HTTP/1.1 edges.

Headers (a case-insensitive mapping) and body bytes in; an HTTP status, a
header list and body bytes out. protocol/grpc_web.py's aiohttp handler calls
these after reading the body as it arrives (``read_message``); the lean edge
(edge/fastpath_serve.py) calls the same ones with the body it buffered, by
the :class:`~grpc_bridge.protocol.base.PlainUnary` steps of
:class:`~grpc_bridge.protocol.grpc_web.GrpcWebProtocol`. What a head asks
for (:func:`unary_form`) is a pure function of its headers, kept per head.
"""

from __future__ import annotations

from collections.abc import Mapping

from multidict import istr

from grpc_bridge.codec.details import status_bin
from grpc_bridge.errors import (
    BridgeError,
    MethodNotAllowed,
    UnsupportedMediaType,
    UpstreamError,
    grpc_family_code,
)
from grpc_bridge.protocol.base import UnaryRequest
from grpc_bridge.protocol.grpc_web_frames import (
    BINARY,
    JSON,
    TEXT,
    Answer,
    Asked,
    BadBase64,
    asked_by,
    frame,
    framed_with,
    message_of_body,
    plain_message,
    status_fields,
    trailer_frame,
)
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.upstream.api import CallInvoker
from grpc_bridge.upstream.deadlines import effective_timeout, parse_timeout
from grpc_bridge.upstream.metadata import Metadata, plain_headers

# Header names as istr: a case-insensitive lookup without folding the name each time.
CONTENT_TYPE, ACCEPT, GRPC_TIMEOUT, GRPC_ENCODING = (
    istr("Content-Type"),
    istr("Accept"),
    istr("Grpc-Timeout"),
    istr("Grpc-Encoding"),
)
#: The trailer frame of a call that succeeded with no trailing metadata, per answer form.
_OK_TRAILERS = {
    answer: answer.encode(trailer_frame(0, "", None, ())) for answer in (BINARY, TEXT, JSON)
}
_CONTENT_TYPES = {answer: ("Content-Type", answer.content_type) for answer in (BINARY, TEXT, JSON)}


def asked_of(headers: Mapping[str, str]) -> Asked | None:
    """The form a request's headers ask for (None: a Content-Type not served, a 415)."""
    return asked_by(headers.get(CONTENT_TYPE, ""), headers.get(ACCEPT))


def unary_form(method: str, headers: Mapping[str, str]) -> Asked | None:
    """What a gRPC-Web request asks for, when it is a POST of a form served."""
    return asked_of(headers) if method == "POST" else None


def requested_timeout(headers: Mapping[str, str]) -> float | None:
    """The client's deadline (``grpc-timeout``), if it sent one; a bad one raises."""
    return parse_timeout(headers.get(GRPC_TIMEOUT), None)


def unary_timeout(plan: MethodPlan, headers: Mapping[str, str]) -> float:
    return effective_timeout(
        requested_timeout(headers), plan.limits.timeout_s, plan.limits.max_timeout_s
    )


def unary_message_now(
    asked: Asked, headers: Mapping[str, str], body: bytes, limit: int
) -> bytes | None:
    """:func:`unary_message` of a binary body of one uncompressed frame; None: any other."""
    return None if asked.text_request else plain_message(body, limit)


async def unary_message(asked: Asked, headers: Mapping[str, str], body: bytes, limit: int) -> bytes:
    """The one message of a request body received whole."""
    return await message_of_body(body, asked.text_request, headers.get(GRPC_ENCODING), limit)


def unary_request(
    asked: Asked, plan: MethodPlan, message: bytes, metadata: Metadata, timeout: float
) -> UnaryRequest:
    """The call, its message decoded by the answer's codec: raw bytes for protobuf
    (``+proto``, passed through), the method's JSON codec for ``+json``."""
    answer = asked.answer
    codec = answer.codec
    return UnaryRequest(
        codec.info(plan),
        codec.decode(plan, message),
        codec.encoder(plan),
        metadata,
        timeout,
        answer,
    )


async def unary_reply(
    call: UnaryRequest, invoker: CallInvoker
) -> tuple[list[tuple[str, str]], bytes]:
    """The answer of a call that succeeded: its message frame, then the trailer frame."""
    result = await invoker.unary(
        call.info, call.message, metadata=call.metadata, timeout=call.timeout
    )
    answer: Answer = call.form
    trailing = result.trailing_metadata
    trailers = (
        answer.encode(trailer_frame(0, "", None, trailing)) if trailing else _OK_TRAILERS[answer]
    )
    data = call.encode(result.response)
    # Binary mode: the message (1 KB and more, usually) copied once into the body.
    body = answer.encode(frame(data)) + trailers if answer.text else framed_with(data, trailers)
    return [_CONTENT_TYPES[answer], *plain_headers(result.initial_metadata, ())], body


def error_answer(
    exc: BridgeError, headers: Mapping[str, str]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A call that failed before its answer started: trailers-only (HTTP 200, the status in
    the headers, no body), but a 415 and a text body that is not base64 keep their status."""
    asked = asked_of(headers)
    code = grpc_family_code(exc)
    status = exc.http_status if isinstance(exc, (UnsupportedMediaType, BadBase64)) else 200
    out = [_CONTENT_TYPES[asked.answer if asked else BINARY]]
    # The upstream's details as sent; the bridge's own (a BadRequest's field
    # violations) packed as a gRPC server would.
    if isinstance(exc, UpstreamError):
        details_bin = exc.details_bin
    else:
        details_bin = status_bin(code, exc.message, exc.details)
    out += status_fields(code, exc.message, details_bin)
    if isinstance(exc, UpstreamError):
        out += plain_headers(exc.initial_metadata, exc.trailing_metadata)
    elif isinstance(exc, MethodNotAllowed):
        out.append(("Allow", ", ".join(exc.allowed)))
    return status, out, b""
