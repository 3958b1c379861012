"""Connect unary calls: ``POST`` with a bare message, and ``GET`` for NO_SIDE_EFFECTS methods.

- POST ``application/json`` or ``application/proto``: the body is the message
  (``Content-Encoding: gzip`` inflated, bounded by ``limits.max_request_bytes``
  as bytes arrive: pipeline/body.py).
- GET ``?connect=v1&encoding=json|proto&message=...[&base64=1][&compression=gzip]``,
  parameters in any order, others ignored: the message from the query string,
  URL-safe base64 (padding optional) when ``base64=1``, bounded like a body.
  The route table lets GET reach only NO_SIDE_EFFECTS methods (405 otherwise).

The answer is the bare response message with the request's Content-Type,
the upstream's leading metadata as plain headers and its trailers as
``trailer-<key>`` headers. ``Connect-Timeout-Ms`` is the upstream deadline.
Errors are raised: the protocol answers them (protocol/connect.py).

A POST's call is steps on plain values (:func:`unary_form`, :func:`unary_message`,
:func:`unary_request`, :func:`unary_reply`): :func:`serve_unary` calls them after
reading the body, the lean edge (edge/fastpath_serve.py) with the body it buffered.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from urllib.parse import unquote_plus, unquote_to_bytes

from aiohttp import web
from multidict import istr

from grpc_bridge.codec.message import CODECS, Codec
from grpc_bridge.discovery.registry import MethodKind
from grpc_bridge.errors import InvalidArgument, UnsupportedMediaType, shown
from grpc_bridge.pipeline.body import read_body
from grpc_bridge.pipeline.call import open_call
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.inflate import too_large
from grpc_bridge.protocol.base import UnaryRequest
from grpc_bridge.protocol.connect_wire import (
    PROTOCOL_VERSION_HEADER,
    UnsupportedCompression,
    check_content_encoding,
    inflate,
    media_type,
    unary_type,
)
from grpc_bridge.protocol.json_transcode import query_items
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.table import Match
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.api import CallInvoker
from grpc_bridge.upstream.metadata import Metadata, MetadataPolicy, prefixed_headers

_OK = code_name(Code.OK)
_GET_PARAMETERS = frozenset({"connect", "encoding", "message", "base64", "compression"})
_UNARY_TYPES = "send application/json or application/proto"

#: A "%" not followed by two hex digits (strict, as every other query value is read).
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


_BARE_TYPES = {unary_type(codec): codec for codec in CODECS.values()}
_CONTENT_TYPES = {codec: ("Content-Type", unary_type(codec)) for codec in CODECS.values()}
# Header names as istr: a case-insensitive lookup without folding the name each time.
_CONTENT_TYPE = istr("Content-Type")
_VERSION = istr(PROTOCOL_VERSION_HEADER)


def post_codec(request: web.Request) -> Codec:
    """The codec a unary POST names by its Content-Type (415 for another)."""
    bare = _BARE_TYPES.get(request.headers.get("Content-Type", ""))
    if bare is not None:
        return bare  # the usual bare type: no parameters to parse (~1.5 us saved)
    media = media_type(request)
    codec = (
        CODECS.get(media.removeprefix("application/")) if media.startswith("application/") else None
    )
    if codec is None:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {shown(request.headers.get('Content-Type', ''))} "
            f"for a Connect unary call: {_UNARY_TYPES} "
            "(streams: application/connect+json or application/connect+proto)"
        )
    charset = request.charset
    if not codec.binary and charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"unsupported charset {charset!r}: JSON bodies must be UTF-8")
    return codec


def _check_unary(plan: MethodPlan) -> None:
    kind = plan.info.kind
    if kind is not MethodKind.UNARY:
        raise UnsupportedMediaType(
            f"{plan.full_name} is a {kind.value.replace('_', '-')} method: send it as a Connect "
            "stream (application/connect+json or application/connect+proto)"
        )


def _base64(value: str) -> bytes:
    text = value.strip().encode("ascii", "replace")
    padded = text.rstrip(b"=")
    padded += b"=" * (-len(padded) % 4)
    try:
        # URL-safe as sent; the standard alphabet's two characters are taken too.
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(
            "query parameter 'message' is not valid URL-safe base64 (base64=1)"
        ) from exc


async def get_message(raw_query: str, limit: int) -> tuple[Codec, bytes]:
    """The codec and message bytes of a Connect GET, from its query string."""
    raw: dict[str, str] = {}
    for pair in raw_query.split("&"):
        name, _, value = pair.partition("=")
        name = unquote_plus(name)
        if name in _GET_PARAMETERS:
            if name in raw:
                raise InvalidArgument(f"query parameter {name!r} is repeated")
            raw[name] = value
    # The message is percent-encoded *bytes* without base64=1 (a proto message is not
    # text); the other parameters are text, decoded strictly.
    params = dict(query_items("&".join(f"{k}={v}" for k, v in raw.items() if k != "message")))
    if "message" in raw:
        params["message"] = raw["message"]
    version = params.get("connect")
    if version is not None and version != "v1":
        raise InvalidArgument(
            f"unsupported query parameter connect={shown(version)}: grpc-bridge speaks v1"
        )
    encoding = params.get("encoding")
    if encoding is None:
        raise InvalidArgument("missing query parameter 'encoding' (json or proto)")
    codec = CODECS.get(encoding)
    if codec is None:
        raise UnsupportedMediaType(
            f"unsupported query parameter encoding={shown(encoding)}: use json or proto"
        )
    message = params.get("message")
    if message is None:
        raise InvalidArgument("missing query parameter 'message' (the request message)")
    # Percent-encoding is 3 characters a byte: a longer text can't decode within the limit.
    if len(message) > 3 * limit + 4:
        raise too_large(limit)
    if _BAD_ESCAPE.search(message):
        raise InvalidArgument("query parameter 'message' has a malformed percent-escape")
    data = unquote_to_bytes(message.replace("+", " "))
    if params.get("base64") == "1":
        data = _base64(data.decode("ascii", "replace"))
    compression = params.get("compression", "identity")
    if compression not in ("identity", "gzip"):
        raise UnsupportedCompression(
            f"unsupported query parameter compression={shown(compression)}: use gzip or identity"
        )
    if compression == "gzip":
        data = await inflate(data, limit, "query parameter 'message'")
    if len(data) > limit:
        raise too_large(limit)
    return codec, data


def unary_form(method: str, headers: Mapping[str, str]) -> Codec | None:
    """The codec of a unary POST with a bare Content-Type and no coding (the usual call);
    None for another request (its handler reads and refuses it)."""
    if method != "POST":
        return None
    codec = _BARE_TYPES.get(headers.get(_CONTENT_TYPE, ""))
    if codec is None:
        return None
    version = headers.get(_VERSION)
    if version is not None and version.strip() != "1":
        return None  # refused by check_version
    return codec


def unary_message_now(codec: Codec, headers: Mapping[str, str], body: bytes, limit: int) -> bytes:
    """The message of a unary POST's body received whole: the body itself."""
    return body


async def unary_message(codec: Codec, headers: Mapping[str, str], body: bytes, limit: int) -> bytes:
    """:func:`unary_message_now`, awaited."""
    return body


def unary_request(
    codec: Codec, plan: MethodPlan, message: bytes, metadata: Metadata, timeout: float
) -> UnaryRequest:
    return UnaryRequest(
        codec.info(plan), codec.decode(plan, message), codec.encoder(plan), metadata, timeout, codec
    )


async def unary_reply(
    call: UnaryRequest, invoker: CallInvoker
) -> tuple[list[tuple[str, str]], bytes]:
    """The bare response message; leading metadata as headers, trailing as ``trailer-``."""
    result = await invoker.unary(
        call.info, call.message, metadata=call.metadata, timeout=call.timeout
    )
    headers = prefixed_headers(
        (("", result.initial_metadata), ("trailer-", result.trailing_metadata))
    )
    headers.append(_CONTENT_TYPES[call.form])
    return headers, call.encode(result.response)


async def serve_unary(
    request: web.Request,
    match: Match,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> web.Response:
    plan = match.plan
    limits = env.limits
    if request.method == "GET":
        _check_unary(plan)
        start = open_call(request, plan, env, ctx, policy)
        if request.body_exists:
            raise InvalidArgument("a Connect GET takes no body: the message goes in the query")
        codec, body = await get_message(request.rel_url.raw_query_string, limits.max_request_bytes)
    else:
        # Headers are checked before the body is read: a bad header costs no upload.
        codec = post_codec(request)
        _check_unary(plan)
        check_content_encoding(request.headers.getall("Content-Encoding", ()), "Content-Encoding")
        start = open_call(request, plan, env, ctx, policy)
        body = await read_body(request, limits.max_request_bytes, limits.body_read_timeout_s)
    ctx.bytes_in = len(body)
    call = unary_request(codec, plan, body, start.metadata, start.timeout)
    headers, answer = await unary_reply(call, start.invoker)
    ctx.grpc_code = _OK
    return web.Response(body=answer, headers=headers)
