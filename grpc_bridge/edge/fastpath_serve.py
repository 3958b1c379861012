"""What the lean HTTP/1.1 edge serves itself, and how it answers: the aiohttp edge's own steps.

edge/fastpath.py reads the bytes, parses each head with aiohttp's own parser
and hands connections over to aiohttp; this module decides from a parsed head
whether the request is one served here (:func:`served_length`,
:meth:`LeanEdge.route`), and answers it with the functions the aiohttp edge
calls (edge/steps.py, protocol/json_unary.py, protocol/json_transcode.py), in the same order, on
the same ``CIMultiDict`` of response headers, serialized by aiohttp's own
head writer: so both edges send the same bytes.

Served here: HTTP/1.1 requests to a unary method with a ``Content-Length``
body within the limit (or none for ``GET``/``DELETE``), CORS requests included:

- JSON: ``POST`` to its generic route (``GET`` too where the method has no side
  effects) or ``GET``, ``DELETE``, ``POST``, ``PUT``, ``PATCH`` to one of its
  REST bindings, with a plain ``application/json`` Content-Type (or none);
- the protocols whose unary call is steps on plain values
  (:class:`~grpc_bridge.protocol.base.PlainUnary`), ``POST`` to the generic
  route: gRPC-Web (every ``application/grpc-web*`` form, text and JSON
  included) and Connect (``application/json`` or ``application/proto`` with
  ``Connect-Protocol-Version: 1``). The request's protocol is the one the
  aiohttp edge would pick (``Protocols.of_head``, asked once per head); the
  protocol's own steps read, call and answer, errors included.

Handed to aiohttp: everything else, among it Connect's GET and streams,
``HEAD`` and preflights, streaming methods, upgrades, chunked or compressed
bodies, bytes outside RFC 3986 in the target, and any request that fails
before the upstream call (so every such error answer is aiohttp's own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict

from grpc_bridge.bridge import Bridge
from grpc_bridge.edge.aiohttp_compat import RawRequestMessage, serialize_head
from grpc_bridge.edge.cors import CorsPolicy
from grpc_bridge.edge.fastpath_heads import (
    ACCEPT_ENCODING,
    CONTENT_TYPE,
    HOST,
    ORIGIN,
    Served,
    routed_here,
    served_head,
)
from grpc_bridge.edge.head_template import HeadTemplates
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
from grpc_bridge.pipeline.call import timeout_for
from grpc_bridge.pipeline.compress import ResponseCompression
from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.protocol.base import PlainUnary
from grpc_bridge.protocol.json_transcode import message_of
from grpc_bridge.protocol.json_unary import unary_reply
from grpc_bridge.protocol.select import Protocols
from grpc_bridge.routing.table import Match, MatchKind
from grpc_bridge.status import Code, code_name
from grpc_bridge.upstream.metadata import ClientInfo, MetadataMemo, MetadataPolicy

_OK = code_name(Code.OK)


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
        protocols: Protocols,
    ) -> None:
        self.bridge = bridge
        self.env = env
        self.metrics = metrics
        self.policy = policy
        self.compression = compression
        self.cors = cors
        self.protocols = protocols
        #: What CORS exposes of a JSON answer.
        self.exposed = protocols.json.exposed
        self.max_body = env.limits.max_request_bytes
        self.request_timeout = env.limits.body_read_timeout_s
        #: The heads of answers sent as they are, by shape (edge/head_template.py).
        self._templates = HeadTemplates()
        #: ``pipeline.call.metadata_for`` of a head seen before (upstream/metadata.py).
        self._metadata = MetadataMemo()

    def served(self, message: RawRequestMessage) -> Served | None:
        """What a head is, if it is one served here (a pure function of it); None: aiohttp's."""
        return served_head(message, self.protocols)

    def route(self, message: RawRequestMessage, plain: bool) -> Match | None:
        """The match of a request served here (its head is); None: aiohttp's."""
        method = message.method
        match = self.bridge.routes.match(method, message.path.partition("?")[0])
        if match.kind is MatchKind.NONE:
            return None
        return match if routed_here(match, method, plain) else None

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
            metadata = self._metadata.metadata(headers, self.policy, client, ctx.request_id)
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
        pending = unary_reply(self.env, match, request, metadata, timeout, ctx)
        return await self._reply(ctx, message, path, peer, close, accept_encoding, None, pending)

    async def answer_plain(
        self,
        protocol: PlainUnary,
        form: Any,
        message: RawRequestMessage,
        match: Match,
        body: bytes,
        peer: str | None,
        close: bool,
    ) -> tuple[bytes, bool] | None:
        """:meth:`answer` for a :class:`PlainUnary` protocol's call: its own steps, in the
        order its aiohttp handler takes them, and its own error answers."""
        headers = message.headers
        accept_encoding = headers.get(ACCEPT_ENCODING)
        if accept_encoding is not None and self.compression.choose(accept_encoding).refused:
            return None  # aiohttp answers the 406
        path = message.path.partition("?")[0]
        plan = match.plan
        ctx = new_context(headers, self.metrics)
        try:
            client = ClientInfo(peer=peer, host=headers.get(HOST), scheme="http")
            metadata = self._metadata.metadata(headers, protocol.policy, client, ctx.request_id)
            timeout = protocol.unary_timeout(plan, headers)
            data = protocol.message_now(form, headers, body, self.max_body)
            if data is None:
                data = await protocol.message_of_body(form, headers, body, self.max_body)
            call = protocol.unary_request(form, plan, data, metadata, timeout)
            invoker = self.bridge.invoker(plan.upstream)
        except Exception:
            return None  # aiohttp answers every failure before the call
        ctx.protocol = protocol.name
        ctx.record_match(match)
        ctx.bytes_in = len(body)
        pending = protocol.unary_reply(call, invoker)
        return await self._reply(
            ctx, message, path, peer, close, accept_encoding, protocol, pending
        )

    async def _reply(
        self,
        ctx: RequestContext,
        message: RawRequestMessage,
        path: str,
        peer: str | None,
        close: bool,
        accept_encoding: str | None,
        protocol: PlainUnary | None,
        pending: Awaitable[tuple[Any, Any]],
    ) -> tuple[bytes, bool]:
        """The call made (``pending``: the JSON routes' body and headers, a ``protocol``'s
        headers and body) and its answer written, counted and logged, as both kinds of
        call end: an error in the protocol's shape (None: JSON's), compression where the
        protocol takes HTTP's, the head as aiohttp's writer makes it."""
        headers = message.headers
        method = message.method
        request_started(ctx)
        status = 499
        try:
            try:
                result = await pending
                if protocol is None:
                    payload, reply = result
                else:
                    reply, payload = result
                    ctx.grpc_code = _OK
                status, reason, answer = 200, "OK", None
            except BridgeError as exc:
                status, reason, answer, payload = _parts(error_answer(exc, ctx, protocol, headers))
            except Exception:
                status, reason, answer, payload = _parts(
                    internal_error(ctx, path, protocol, headers)
                )
            close = close or message.should_close
            origin = headers.get(ORIGIN)
            head = None
            if answer is None and (
                accept_encoding is None or not (protocol is None or protocol.http_compression)
            ):
                # A call answered (not an error, whose status may be 200 too) and sent as
                # it is: nothing in its head but the three values depends on the body,
                # and the shape is what the steps below read.
                shape = (
                    None if protocol is None else protocol.name,
                    tuple(reply),
                    close,
                    self.bridge.draining,
                    origin,
                )
                head = self._templates.head(
                    shape,
                    lambda request_id, length, date: self._ok_head(
                        reply, request_id, length, date, close, origin, protocol
                    ),
                    ctx.request_id,
                    len(payload),
                    rfc822_formatted_time(),
                )
            if head is None:
                if answer is None:
                    answer = CIMultiDict(reply)
                coding = self._finish(
                    answer, len(payload), ctx.request_id, accept_encoding, protocol
                )
                if coding is not None:
                    payload = await self.compression.compress(coding, payload)
                exposed = None if protocol is None else protocol.exposed
                length = str(len(payload))
                head = self._head(
                    status, reason, answer, length, close, ctx.request_id, origin, exposed
                )
            log_request_line(ctx, method, path, peer, trace_of(headers), status, len(payload))
        except asyncio.CancelledError:
            log_request_line(ctx, method, path, peer, trace_of(headers), 499, 0)
            raise
        finally:
            request_done(ctx, method, status)
        return head + payload, close or self.bridge.draining

    def _finish(
        self,
        answer: CIMultiDict[str],
        size: int,
        request_id: str,
        accept_encoding: str | None,
        protocol: PlainUnary | None,
    ) -> str | None:
        """A whole answer's headers finished, and the coding its body is to be sent in:
        HTTP's compression negotiated where the protocol takes it (JSON's, Connect
        unary's), else only the request id added (gRPC-Web compresses per message)."""
        if protocol is None or protocol.http_compression:
            return finish_headers(answer, size, request_id, accept_encoding, self.compression)
        answer[REQUEST_ID_HEADER] = request_id
        return None

    def _ok_head(
        self,
        reply: Iterable[tuple[str, str]],
        request_id: str,
        length: str,
        date: str,
        close: bool,
        origin: str | None,
        protocol: PlainUnary | None,
    ) -> bytes:
        """A 200's head by the steps :meth:`_reply` takes for an answer sent as it is
        (no ``Accept-Encoding``, or a protocol without HTTP's compression)."""
        answer = CIMultiDict(reply)
        coding = self._finish(answer, 0, request_id, None, protocol)
        assert coding is None  # none without Accept-Encoding
        exposed = None if protocol is None else protocol.exposed
        return self._head(200, "OK", answer, length, close, request_id, origin, exposed, date)

    def late_body(
        self,
        message: RawRequestMessage,
        match: Match,
        peer: str | None,
        protocol: PlainUnary | None,
    ) -> bytes:
        """The 408 of a request whose body did not arrive in time, as the aiohttp path's
        (in ``protocol``'s shape; None: JSON's).

        (Sent at once, no compression; the connection closes after it.)
        """
        headers = message.headers
        ctx = new_context(headers, self.metrics)
        exposed = self.exposed
        if protocol is not None:
            ctx.protocol = protocol.name
            exposed = protocol.exposed
        ctx.record_match(match)
        response = error_answer(body_timeout(self.request_timeout), ctx, protocol, headers)
        payload = response.body or b""
        assert isinstance(payload, bytes)
        response.headers[REQUEST_ID_HEADER] = ctx.request_id
        origin = headers.get(ORIGIN)
        data = self._head(
            response.status,
            response.reason,
            response.headers,
            str(len(payload)),
            True,
            ctx.request_id,
            origin,
            exposed,
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
        length: str,
        close: bool,
        request_id: str,
        origin: str | None,
        exposed: Callable[[str], bool] | None = None,
        date: str | None = None,
    ) -> bytes:
        """The response head, with what aiohttp's writer adds in its order (web_response.py);
        ``length`` the Content-Length, ``exposed``: what CORS exposes (the protocol's),
        JSON's by default; ``date`` now's by default."""
        headers[hdrs.CONTENT_LENGTH] = length
        headers[hdrs.DATE] = rfc822_formatted_time() if date is None else date
        headers[hdrs.SERVER] = SERVER_SOFTWARE
        if close:
            headers[hdrs.CONNECTION] = "close"
        # Then aiohttp's response-prepare callback's step (edge/proxy.py).
        prepare_headers(
            headers,
            request_id,
            self.cors,
            origin,
            self.bridge.draining,
            exposed or self.exposed,
        )
        return serialize_head(f"HTTP/1.1 {status} {reason}", headers)


def _parts(response: web.Response) -> tuple[int, str, CIMultiDict[str], bytes]:
    payload = response.body or b""  # gRPC-Web's trailers-only answers have none
    assert isinstance(payload, bytes)
    return response.status, response.reason, response.headers, payload
