"""What the lean HTTP/1.1 edge serves itself, and how it answers: the aiohttp edge's own steps.

edge/fastpath.py reads the bytes, parses each head with aiohttp's own parser
and hands connections over to aiohttp; this module decides from a parsed head
whether the request is one served here (:func:`served_length`,
:meth:`LeanEdge.route`), and answers it with the functions the aiohttp edge
calls (edge/steps.py, protocol/json_unary.py, protocol/json_transcode.py), in the same order, on
the same ``CIMultiDict`` of response headers, serialized by aiohttp's own
head writer: so both edges send the same bytes.

Served here: HTTP/1.1 requests to a unary method, ``POST`` to its generic route
(``GET`` too where the method has no side effects) or ``GET``, ``DELETE``,
``POST``, ``PUT``, ``PATCH`` to one of its REST bindings; a ``Content-Length``
body within the limit (or none for ``GET``/``DELETE``), a plain
``application/json`` Content-Type (or none), CORS requests included. Handed
to aiohttp: everything else, among it every request of another protocol
(gRPC-Web, Connect: a ``Connect-Protocol-Version`` header, another
Content-Type, a ``GET`` with a ``connect`` query parameter), ``HEAD`` and
preflights, streaming methods, upgrades, chunked or compressed bodies, bytes
outside RFC 3986 in the target, and any request that fails before the
upstream call (so every such error answer is aiohttp's own).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from aiohttp import hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from multidict import CIMultiDict, istr

from grpc_bridge.bridge import Bridge
from grpc_bridge.discovery.registry import MethodKind
from grpc_bridge.edge.aiohttp_compat import RawRequestMessage, serialize_head
from grpc_bridge.edge.cors import CorsPolicy
from grpc_bridge.edge.steps import (
    REQUEST_ID_HEADER,
    count_request,
    error_answer,
    finish_headers,
    internal_error,
    log_request_line,
    new_context,
    prepare_headers,
    request_done,
    request_started,
    trace_of,
)
from grpc_bridge.errors import BridgeError
from grpc_bridge.metrics import Metrics
from grpc_bridge.pipeline.body import body_timeout
from grpc_bridge.pipeline.call import metadata_for, timeout_for
from grpc_bridge.pipeline.compress import ResponseCompression
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.pipeline.responses import JSON_CONTENT_TYPE
from grpc_bridge.protocol.json_transcode import message_of
from grpc_bridge.protocol.json_unary import unary_reply
from grpc_bridge.routing.table import Match, MatchKind
from grpc_bridge.upstream.metadata import ClientInfo, MetadataPolicy

#: The request methods served here. HEAD stays aiohttp's (it answers GET's status
#: and headers without the body), as do OPTIONS and custom methods.
_METHODS = frozenset({"POST", "GET", "PUT", "PATCH", "DELETE"})
#: How every request served here starts; other first bytes go to aiohttp at once,
#: so that what can't be HTTP (TLS, say) is answered, not left waiting.
STARTS = tuple(f"{method} /".encode() for method in sorted(_METHODS))
#: Methods served without a Content-Length: their requests usually have no body.
_BODYLESS = frozenset({"GET", "DELETE"})
_GENERIC_METHODS = frozenset({"POST", "GET"})
#: An origin-form target made of RFC 3986 characters only (unreserved, sub-delims,
#: ":@/?" and "%"), no fragment. Bytes beyond those (controls, quotes, braces, "#")
#: are aiohttp's to judge, as they have been.
_PCHARS = r"-A-Za-z0-9._~!$&'()*+,;=:@/%"
_TARGET = re.compile(rf"/[{_PCHARS}]*(?:\?[{_PCHARS}?]*)?")
#: Request headers after which aiohttp decides: bodies it frames or inflates,
#: upgrades, preflights, and Connect's unary protocol (a JSON body like ours, with
#: its own error shape: http's protocol modules answer it).
_HAND_OVER = (
    hdrs.TRANSFER_ENCODING,
    hdrs.EXPECT,
    hdrs.UPGRADE,
    hdrs.CONTENT_ENCODING,
    hdrs.ACCESS_CONTROL_REQUEST_METHOD,
    hdrs.SEC_WEBSOCKET_KEY,
    istr("Connect-Protocol-Version"),
)
# Header names as istr (aiohttp's): a case-insensitive lookup without folding the name.
CONTENT_TYPE, ACCEPT_ENCODING, ORIGIN, HOST = (
    hdrs.CONTENT_TYPE,
    hdrs.ACCEPT_ENCODING,
    hdrs.ORIGIN,
    hdrs.HOST,
)
_ACCEPTED = frozenset({"*/*", JSON_CONTENT_TYPE})
#: Connect's GET: its message in the query string (``?connect=v1&encoding=json&message=``).
_CONNECT_QUERY = "connect"


def served_length(message: RawRequestMessage) -> int | None:
    """The body length of a request whose head is one served here; None: aiohttp's."""
    method = message.method
    if (
        method not in _METHODS
        or message.version != HttpVersion11
        or message.chunked
        or message.upgrade
        or not _TARGET.fullmatch(message.path)
    ):
        return None
    headers = message.headers
    for name in _HAND_OVER:
        if name in headers:
            return None
    content_type = headers.get(CONTENT_TYPE)
    if content_type is not None and content_type != JSON_CONTENT_TYPE:
        return None  # gRPC-Web, Connect, binary protobuf, a charset parameter: aiohttp's
    if headers.get(hdrs.ACCEPT, "*/*") not in _ACCEPTED:
        return None
    if method == "GET" and _connect_get(message.path):
        return None
    length = headers.get(hdrs.CONTENT_LENGTH)
    if length is None:
        return 0 if method in _BODYLESS else None
    return int(length)  # digits only: the parser refuses any other


def _connect_get(target: str) -> bool:
    """A query string with a ``connect`` parameter (Connect's GET of a unary method)."""
    query = target.partition("?")[2]
    return _CONNECT_QUERY in query and any(
        item.partition("=")[0] == _CONNECT_QUERY for item in query.split("&")
    )


def _served(match: Match, method: str) -> bool:
    """A unary method through a REST binding, or a POST or GET to its generic route.

    (A full match means the method is allowed there: GET only on methods marked
    NO_SIDE_EFFECTS.) Every streaming method and every request that matched
    nothing (404, 405) is aiohttp's.
    """
    return (
        match.kind is MatchKind.FULL
        and match.plan.info.kind is MethodKind.UNARY
        and (match.binding is not None or method in _GENERIC_METHODS)
    )


class LeanEdge:
    """What the lean edge needs of the proxy app, one per listener."""

    def __init__(
        self,
        bridge: Bridge,
        env: CallEnv,
        metrics: Metrics | None,
        policy: MetadataPolicy,
        compression: ResponseCompression,
        cors: CorsPolicy,
        exposed: Callable[[str], bool],
    ) -> None:
        self.bridge = bridge
        self.env = env
        self.metrics = metrics
        self.policy = policy
        self.compression = compression
        self.cors = cors
        #: What CORS exposes: the JSON protocol's headers (the only protocol served here).
        self.exposed = exposed
        self.max_body = env.limits.max_request_bytes
        self.request_timeout = env.limits.body_read_timeout_s

    def route(self, message: RawRequestMessage) -> Match | None:
        """The match of a request served here (its head is); None: aiohttp's."""
        method = message.method
        match = self.bridge.routes.match(method, message.path.partition("?")[0])
        if match.kind is MatchKind.NONE:
            return None
        return match if _served(match, method) else None

    async def answer(
        self, message: RawRequestMessage, match: Match, body: bytes, peer: str | None, close: bool
    ) -> tuple[bytes, bool] | None:
        """The response's bytes, and whether the connection closes after them.

        None when nothing was done: aiohttp answers (every failure before the call).
        ``close``: the listener is shutting down.
        """
        headers = message.headers
        accept_encoding = headers.get(ACCEPT_ENCODING)
        if accept_encoding is not None and self.compression.choose(accept_encoding).refused:
            return None  # aiohttp answers the 406
        method = message.method
        path, _, query = message.path.partition("?")
        plan = match.plan
        ctx = new_context(headers, self.metrics)
        try:
            # The Host header is there: the parser refuses an HTTP/1.1 head without it.
            client = ClientInfo(peer=peer, host=headers.get(HOST), scheme="http")
            metadata = metadata_for(headers.items(), client, ctx.request_id, self.policy)
            timeout = timeout_for(plan, headers)
            # served_length let only a JSON Content-Type (or none) through: the media
            # type check of the aiohttp path passes, and an HttpBody takes the same bytes.
            request = message_of(match, method, query, body, headers.get(CONTENT_TYPE), self.env)
        except Exception:
            # A BridgeError (or a bug): aiohttp answers it, as it answers any request
            # it sees first, 400 or 500 alike.
            return None
        ctx.record_match(match)
        ctx.bytes_in = len(body)
        request_started(ctx)
        status = 499
        try:
            try:
                payload, reply = await unary_reply(self.env, match, request, metadata, timeout, ctx)
                status, reason, answer = 200, "OK", CIMultiDict(reply)
            except BridgeError as exc:
                status, reason, answer, payload = _parts(error_answer(exc, ctx))
            except Exception:
                status, reason, answer, payload = _parts(internal_error(ctx, path))
            compression = self.compression
            coding = finish_headers(
                answer, len(payload), ctx.request_id, accept_encoding, compression
            )
            if coding is not None:
                payload = await compression.compress(coding, payload)
            close = close or message.should_close
            data = self._head(status, reason, answer, payload, close, ctx, headers.get(ORIGIN))
            log_request_line(ctx, method, path, peer, trace_of(headers), status, len(payload))
        except asyncio.CancelledError:
            log_request_line(ctx, method, path, peer, trace_of(headers), 499, 0)
            raise
        finally:
            request_done(ctx, method, status)
        return data + payload, close or self.bridge.draining

    def late_body(self, message: RawRequestMessage, match: Match, peer: str | None) -> bytes:
        """The 408 of a request whose body did not arrive in time, as the aiohttp path's.

        (Sent at once, no compression; the connection closes after it.)
        """
        headers = message.headers
        ctx = new_context(headers, self.metrics)
        ctx.record_match(match)
        response = error_answer(body_timeout(self.request_timeout), ctx)
        payload = response.body
        assert isinstance(payload, bytes)
        response.headers[REQUEST_ID_HEADER] = ctx.request_id
        origin = headers.get(ORIGIN)
        data = self._head(
            response.status, response.reason, response.headers, payload, True, ctx, origin
        )
        method, path = message.method, message.path.partition("?")[0]
        status = response.status
        log_request_line(ctx, method, path, peer, trace_of(headers), status, len(payload))
        if self.metrics is not None:
            count_request(self.metrics, ctx, method, status)
        return data + payload

    def _head(
        self,
        status: int,
        reason: str,
        headers: CIMultiDict[str],
        body: bytes,
        close: bool,
        ctx: RequestContext,
        origin: str | None,
    ) -> bytes:
        """The response head, with what aiohttp's writer adds in its order (web_response.py)."""
        headers[hdrs.CONTENT_LENGTH] = str(len(body))
        headers[hdrs.DATE] = rfc822_formatted_time()
        headers[hdrs.SERVER] = SERVER_SOFTWARE
        if close:
            headers[hdrs.CONNECTION] = "close"
        # Then aiohttp's response-prepare callback's step (edge/proxy.py).
        prepare_headers(
            headers, ctx.request_id, self.cors, origin, self.bridge.draining, self.exposed
        )
        return serialize_head(f"HTTP/1.1 {status} {reason}", headers)


def _parts(response: web.Response) -> tuple[int, str, CIMultiDict[str], bytes]:
    payload = response.body
    assert isinstance(payload, bytes)
    return response.status, response.reason, response.headers, payload
