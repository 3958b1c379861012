"""HTTP request → request message, response message → HTTP body.

The one place every handler (unary, streaming, WebSocket) builds its first
request message and encodes responses, so REST bindings (path variables,
``body:``, query parameters, HttpBody, PATCH masks, ``response_body``) are
handled once, whichever framing carries the call:

- :func:`decode_request`: the request message of a matched route (aiohttp's
  request read and checked, then :func:`message_of`);
- :func:`message_of`: the request message from plain inputs (method, raw
  query, body bytes, Content-Type), for the aiohttp path and the lean one
  (edge/fastpath.py) alike;
- :func:`stream_decoder`: the decoder of a request stream's messages (HTTP
  NDJSON / JSON array and WebSocket frames), path and query merged into each;
- :func:`query_items`: the query string, decoded strictly;
- :func:`rest_message`: a REST binding's part of :func:`message_of`;
- :func:`encode_response`: one response message as the HTTP body bytes (JSON,
  a ``response_body`` field's JSON, or an HttpBody's raw bytes);
- :func:`response_content_type`: the media type of those bytes;
- :func:`reply_body`: both, for a one-message reply;
- :func:`reply_parts`: a one-message reply's body and headers (both HTTP edges);
- :func:`message_response`: those, as the ``web.Response`` of a one-message reply.

The REST rules themselves live in :mod:`grpc_bridge.codec.rest`; this module
only feeds them what aiohttp (or the lean path) parsed. A plain body's message
and a plain route's response bytes go through codec/message.py's
``JSON_CODEC``, as every protocol's do; what only JSON has (REST bindings, a
GET's message from its query, a JSON array's elements: ``decode_value``)
calls the method's JSON codec (codec/json_codec.py) itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from aiohttp import web
from google.protobuf.message import Message

from grpc_bridge.codec.json_codec import MessageCodec
from grpc_bridge.codec.message import JSON_CODEC
from grpc_bridge.codec.percent import decode_query
from grpc_bridge.codec.query import query_to_value
from grpc_bridge.codec.rest import StreamDecoder
from grpc_bridge.errors import InvalidArgument
from grpc_bridge.pipeline.body import JSON, check_media_type, read_body
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.routing.bindings import Binding
from grpc_bridge.routing.table import Match

__all__ = [
    "decode_request",
    "encode_response",
    "message_from_query",
    "message_of",
    "message_response",
    "query_items",
    "reply_body",
    "reply_parts",
    "response_content_type",
    "rest_message",
    "stream_decoder",
    "stream_encoder",
]

#: What decodes a request stream's messages: a plain codec, or a REST binding's.
MessageDecoder = MessageCodec | StreamDecoder

_NO_BODY = "this route takes no request body: send the fields in the query string"


def query_items(raw: str) -> list[tuple[str, str]]:
    """The parameters of a raw query string (``request.rel_url.raw_query_string``), in
    order; a malformed escape or non-UTF-8 value is a 400."""
    if not raw:
        return []
    try:
        return decode_query(raw)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def stream_decoder(request: web.Request, match: Match, env: CallEnv) -> MessageDecoder:
    """The decoder of each streamed request message; the path and query are checked now."""
    plan = match.plan
    if match.binding is None:
        # The JSON codec itself, not JSON_CODEC: a JSON array body's elements need decode_value.
        return plan.request_codec
    return match.binding.request.stream_decoder(
        match.path_params,
        query_items(request.rel_url.raw_query_string),
        ignore_unknown_query=env.ignore_unknown_query,
    )


def message_from_query(raw_query: str, match: Match, env: CallEnv) -> Message:
    """The generic route's GET: every field from the query string (as sent, still encoded)."""
    plan = match.plan
    value = query_to_value(
        plan.info.input_type,
        query_items(raw_query),
        ignore_unknown=env.ignore_unknown_query,
        max_depth=env.limits.max_json_depth,
    )
    return plan.request_codec.decode_value(value)


async def decode_request(
    request: web.Request, match: Match, env: CallEnv, ctx: RequestContext
) -> Message:
    """The request message of ``match``: the body read and checked, then :func:`message_of`."""
    binding = match.binding
    limits = env.limits
    body = b""
    if binding is not None:
        rest = binding.request
        # A body-less binding still reads what was sent, to refuse it with a clear 400.
        if rest.takes_body or request.body_exists:
            if rest.takes_body and not rest.raw_body:
                check_media_type(request)
            body = await read_body(request, limits.max_request_bytes, limits.body_read_timeout_s)
    elif request.method == "GET":
        if request.body_exists:
            raise InvalidArgument(_NO_BODY)
    else:
        check_media_type(request)
        body = await read_body(request, limits.max_request_bytes, limits.body_read_timeout_s)
    ctx.bytes_in = len(body)
    return message_of(
        match,
        request.method,
        request.rel_url.raw_query_string,
        body,
        request.headers.get("Content-Type"),
        env,
    )


def message_of(
    match: Match,
    method: str,
    raw_query: str,
    body: bytes,
    content_type: str | None,
    env: CallEnv,
) -> Message:
    """The request message from what the request carried, however it was parsed.

    Generic route: from the query string for GET, else from the JSON body.
    REST binding: path variables + body + query, as the binding says. The
    caller has checked the media type and the size (the lean path,
    edge/fastpath.py, calls this too).
    """
    binding = match.binding
    if binding is not None:
        return rest_message(binding, match.path_params, raw_query, body, content_type, env)
    if method == "GET":
        if body:
            raise InvalidArgument(_NO_BODY)
        return message_from_query(raw_query, match, env)
    return JSON_CODEC.decode(match.plan, body)


def rest_message(
    binding: Binding,
    path_params: Mapping[str, str],
    raw_query: str,
    body: bytes,
    content_type: str | None,
    env: CallEnv,
) -> Message:
    """A REST binding's request message from what the request carried, however it was parsed.

    ``path_params`` are the match's captures (still percent-encoded), ``raw_query``
    the query string as sent, ``body`` every body byte (``b""`` for none). The
    caller has checked the media type and the size; everything else is checked
    here, with :class:`InvalidArgument` naming what is wrong.
    """
    return binding.request.decode(
        path_params,
        query_items(raw_query),
        body,
        content_type,
        ignore_unknown_query=env.ignore_unknown_query,
    )


def encode_response(match: Match, message: Message) -> bytes:
    """The HTTP body for one response message (for streams: one message's bytes)."""
    if match.binding is not None:
        return match.binding.response.encode(message)
    return JSON_CODEC.encoder(match.plan)(message)


def stream_encoder(match: Match) -> Callable[[Message], bytes]:
    """What renders each message of a streamed response (NDJSON, SSE, WebSocket): always JSON.

    An HttpBody's raw bytes would break the framing around them, so a stream
    sends it in its JSON form (``{"contentType": ..., "data": <base64>}``).
    Chosen once per stream and returned bound: it runs once per message.
    """
    if match.binding is not None:
        return match.binding.response.encode_json
    return JSON_CODEC.encoder(match.plan)


def response_content_type(match: Match, message: Message) -> str:
    """``application/json``, or an HttpBody response's own content type."""
    if match.binding is not None:
        return match.binding.response.content_type(message) or JSON
    return JSON


def reply_body(match: Match, message: Message) -> tuple[bytes, str]:
    """The body of a one-message reply and its Content-Type (the lean path sends these too)."""
    return encode_response(match, message), response_content_type(match, message)


def reply_parts(
    match: Match, message: Message, headers: Sequence[tuple[str, str]] = ()
) -> tuple[bytes, list[tuple[str, str]]]:
    """The body and headers of the ``200`` carrying one response message: its
    Content-Type first, then ``headers`` (the call's metadata)."""
    body, content_type = reply_body(match, message)
    return body, [("Content-Type", content_type), *headers]


def message_response(
    match: Match, message: Message, *, headers: Sequence[tuple[str, str]] = ()
) -> web.Response:
    """The ``200`` reply carrying one response message (unary and client-streaming calls)."""
    body, all_headers = reply_parts(match, message, headers)
    return web.Response(body=body, headers=all_headers)
