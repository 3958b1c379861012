"""A lean HTTP/1.1 path for the plainest requests, in front of aiohttp on the proxy listener.

aiohttp's request and response machinery costs ~47 µs of CPU per request
where a bare protocol costs ~11 µs (bench/PROFILE.md §6), a fifth of what a
unary call costs the bridge in all. This protocol serves only the commonest
requests itself, over HTTP/1.1 to a unary method: ``POST`` to its generic
route, and ``GET``/``DELETE`` (no body needed) or ``POST``/``PUT``/``PATCH``
to one of its REST bindings (path variables and a query string included,
decoded by the aiohttp path's own functions, http/transcode.py); a
``Content-Length`` body within the limit, ``Content-Type: application/json``
(or none), nothing unusual in the head. For anything else — another method
(HEAD among them), a streaming method, CORS, an upgrade, chunked bodies, a bad
header, a target with bytes outside RFC 3986's, a request that does not decode
— it hands the connection to aiohttp's
``RequestHandler`` together with every byte it has buffered (the unread
request included), and aiohttp serves it and the rest of the connection as
if it had been there from the start. So every error answer before the
upstream call is aiohttp's own (parse errors included, in the Status body:
http/parse_errors.py), and a head aiohttp's parser would refuse (no Host,
too many fields, a repeated singleton field, bytes that are not HTTP) is
handed over rather than served; after the call, the response is the one the
aiohttp path builds (``message_response`` / ``error_response``), written as
bytes here, with the same request id header, log line and metrics.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Callable
from typing import cast

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from google.protobuf.message import Message

from grpc_bridge.bridge import Bridge
from grpc_bridge.discovery.registry import MethodKind
from grpc_bridge.errors import BridgeError
from grpc_bridge.http.aiohttp_compat import ProtocolSite, adopt_connection
from grpc_bridge.http.body import body_timeout
from grpc_bridge.http.compress import ResponseCompression
from grpc_bridge.http.context import RequestContext
from grpc_bridge.http.middleware import (
    INTERNAL_MESSAGE,
    REQUEST_ID_HEADER,
    count_request,
    error_answer,
    log_request_line,
    request_id_from,
)
from grpc_bridge.http.responses import JSON_CONTENT_TYPE, json_response
from grpc_bridge.http.transcode import message_of, reply_body
from grpc_bridge.http.unary import timeout_for
from grpc_bridge.log import get_logger
from grpc_bridge.metrics import Metrics
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.table import Match, MatchKind
from grpc_bridge.status import Code, code_name, status_body
from grpc_bridge.upstream.metadata import (
    ClientInfo,
    Metadata,
    MetadataPolicy,
    to_headers,
    to_metadata,
)

log = get_logger("grpc_bridge.http")

#: A head longer than this goes to aiohttp (which answers 431 or 400 as it should).
MAX_HEAD = 8190
#: aiohttp's ``max_headers``: a head with more fields is a 431 there, so goes there.
MAX_FIELDS = 128
_MAX_LINES = MAX_FIELDS + 1  # with the request line
#: The request methods served here, as sent → as named. HEAD stays aiohttp's (it
#: answers GET's status and headers without the body), as do custom methods.
_METHODS = {
    b"POST": "POST",
    b"GET": "GET",
    b"PUT": "PUT",
    b"PATCH": "PATCH",
    b"DELETE": "DELETE",
}
#: Methods served without a Content-Length: their requests usually have no body.
_BODYLESS = frozenset({"GET", "DELETE"})
_GENERIC_METHODS = frozenset({"POST", "GET"})
#: How every request the fast path serves starts; other first bytes go to aiohttp
#: at once, so that what can't be HTTP (TLS, say) is answered, not left waiting.
_STARTS = tuple(method + b" /" for method in _METHODS)
#: An origin-form target made of RFC 3986 characters only (unreserved, sub-delims,
#: ":@/?" and "%"), no fragment. Bytes beyond those (controls, quotes, braces, "#")
#: are judged by aiohttp's parser, which may refuse what a route variable would take.
_PCHARS = rb"-A-Za-z0-9._~!$&'()*+,;=:@/%"
_TARGET = re.compile(rb"/[%s]*(?:\?[%s?]*)?" % (_PCHARS, _PCHARS))
#: Keep-alive timeout: an idle connection is closed after it. app.py gives aiohttp's
#: handlers the same one. A request begun must be in whole within
#: ``limits.body_read_timeout_s`` of its first byte: a 408 if its head is in (as
#: the aiohttp path answers a late body, http/body.py), else the connection closes.
IDLE_TIMEOUT_S = 75.0
#: Pipelined bytes buffered while a request is served, before reading pauses.
MAX_BUFFERED = 256 * 1024

_OK = code_name(Code.OK)
# What aiohttp sends as Server, so both paths answer alike.
_SERVER = f"\r\nServer: {SERVER_SOFTWARE}\r\n".encode()
# Request headers after which aiohttp must decide (bodies, upgrades, CORS, content negotiation).
_HAND_OVER = frozenset(
    {
        "transfer-encoding",
        "expect",
        "upgrade",
        "origin",
        "content-encoding",
        "access-control-request-method",
        "sec-websocket-key",
    }
)
# Headers whose value the fast path reads: given twice, aiohttp decides (it
# takes the first of some, joins others) rather than the last one winning here.
# With them, the fields aiohttp refuses twice (http_parser.SINGLETON_HEADERS).
_SINGLE = frozenset(
    {
        "content-length",
        "content-type",
        "connection",
        "host",
        "accept",
        "accept-encoding",
        "x-request-id",
        "grpc-timeout",
        "connect-timeout-ms",
        "traceparent",
        "tracestate",
        "content-location",
        "content-range",
        "etag",
        "max-forwards",
        "server",
        "user-agent",
    }
)
#: RFC 9110 token, what a field name is made of.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Bytes no header value may hold (the head is ASCII already): controls but tab, and DEL.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: Field names already checked, raw → (as sent, lower case): clients send the same few
#: names on every request. Bounded, so a client inventing names cannot grow it.
_NAMES: dict[bytes, tuple[str, str]] = {}
_MAX_NAMES = 512


class _Date:
    """The Date header, formatted once a second."""

    __slots__ = ("_at", "_value")

    def __init__(self) -> None:
        self._at = 0
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._at:
            self._at = second
            self._value = email.utils.formatdate(second, usegmt=True).encode("ascii")
        return self._value


_DATE = _Date()


class Head:
    """What the fast path needs of a request head it can serve."""

    __slots__ = ("close", "headers", "length", "method", "path", "query", "values")

    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        values: dict[str, str],
        length: int,
    ) -> None:
        self.method = method
        # Split where aiohttp's parser splits them: the raw path, the raw query string.
        self.path, _, self.query = target.partition("?")
        #: As sent, for metadata forwarding.
        self.headers = headers
        #: Lower-case name → value (the last one; the ones read are never duplicated).
        self.values = values
        self.length = length
        self.close = values.get("connection", "").lower() == "close"


def parse_head(head: bytes) -> Head | None:
    """The head of a request the fast path serves, or None for one aiohttp must see."""
    if not head.isascii():
        return None
    lines = head.split(b"\r\n")
    request_line = lines[0]
    name, _, rest = request_line.partition(b" ")
    method = _METHODS.get(name)
    if method is None or not rest.endswith(b" HTTP/1.1"):
        return None
    target = rest[:-9]
    if not _TARGET.fullmatch(target):
        return None
    if len(lines) > _MAX_LINES:
        return None
    headers: list[tuple[str, str]] = []
    values: dict[str, str] = {}
    names = _NAMES
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        # A control byte in a value, CR/LF left in a line (bare line ends) among
        # them: aiohttp refuses those, and a front proxy may read them differently.
        if not sep or _CONTROL.search(value):
            return None
        known = names.get(name)
        if known is None:
            # A name that is not a token: aiohttp refuses it too.
            if not _TOKEN.fullmatch(name):
                return None
            known = (name.decode("ascii"), name.decode("ascii").lower())
            if len(names) < _MAX_NAMES:
                names[name] = known
        text_name, key = known
        text = value.strip(b" \t").decode("ascii")
        if key in _HAND_OVER or (key in values and key in _SINGLE):
            return None
        values[key] = text
        headers.append((text_name, text))
    length = values.get("content-length")
    if length is None:
        if method not in _BODYLESS:
            return None
        length = "0"  # no body, as aiohttp reads a request without framing headers
    elif not length.isdigit() or len(length) > 18:
        return None
    content_type = values.get("content-type")
    if content_type is not None and content_type != JSON_CONTENT_TYPE:
        return None
    if values.get("accept", "*/*") not in ("*/*", JSON_CONTENT_TYPE):
        return None
    connection = values.get("connection")
    if connection is not None and connection.lower() not in ("keep-alive", "close"):
        return None
    return Head(method, target.decode("ascii"), headers, values, int(length))


def _could_start(prefix: bytes) -> bool:
    """Whether an incomplete head starting with ``prefix`` may still be one served here."""
    return any(start.startswith(prefix[: len(start)]) for start in _STARTS)


def _served(match: Match, method: str) -> bool:
    """A unary method through a REST binding, or a POST or GET to its generic route.

    (A full match means the method is allowed there: GET only on methods marked
    NO_SIDE_EFFECTS.) Every streaming method and every request that matched
    nothing (404, 405) is aiohttp's.
    """
    plan = match.plan
    return (
        match.kind is MatchKind.FULL
        and plan is not None
        and plan.info.kind is MethodKind.UNARY
        and (match.binding is not None or method in _GENERIC_METHODS)
    )


class FastPath:
    """What every fast connection shares; ``server`` makes aiohttp's protocol for a hand-over."""

    def __init__(
        self,
        bridge: Bridge,
        metrics: Metrics | None,
        policy: MetadataPolicy,
        compression: ResponseCompression,
        server: Callable[[], asyncio.Protocol],
    ) -> None:
        self.bridge = bridge
        self.metrics = metrics
        self.policy = policy
        self.compression = compression
        self.server = server
        self.max_body = bridge.settings.limits.max_request_bytes
        self.request_timeout = bridge.settings.limits.body_read_timeout_s
        self.connections: set[FastConnection] = set()
        self.closing = False

    def protocol(self) -> FastConnection:
        return FastConnection(self)

    async def shutdown(self, timeout: float) -> None:
        """No new requests; idle connections close now, busy ones after their response."""
        self.closing = True
        busy = []
        for connection in list(self.connections):
            task = connection.close_when_idle()
            if task is not None:
                busy.append(task)
        if busy:
            _, pending = await asyncio.wait(busy, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)


class FastConnection(asyncio.Protocol):
    """One client connection, served here until a request needs aiohttp."""

    def __init__(self, fast: FastPath) -> None:
        self._fast = fast
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        #: Whether ``_idle`` times a request begun (else the keep-alive idle).
        self._idle_pending = False
        self._peer: str | None = None
        self._reading = True
        self._writable: asyncio.Future[None] | None = None
        self._close_after = False

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._peer = str(peer[0])
        self._fast.connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._task is None:
            self._next()
        elif len(self._buffer) > MAX_BUFFERED and self._transport is not None:
            self._transport.pause_reading()
            self._reading = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fast.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        if self._task is not None:
            # The client left: the upstream call is cancelled with the task.
            self._task.cancel()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- requests -----------------------------------------------------------------

    def _next(self) -> None:
        """Start the next request in the buffer, or hand the connection over."""
        transport = self._transport
        if transport is None or self._task is not None:
            return
        if self._close_after:
            transport.close()
            return
        if not self._buffer and self._fast.closing:
            transport.close()
            return
        try:
            started = self._start_request()
        except Exception as exc:  # a bug here must not reach the event loop
            log.error("fast_path_error", error=repr(exc))
            self._hand_over(b"")
            return
        if started:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
        elif self._transport is not None:
            # Idle, or a request still incomplete: the keep-alive timeout runs.
            self._arm_idle()

    def _start_request(self) -> bool:
        """True when a request was complete and its task started."""
        buffer = self._buffer
        if not buffer:
            return False
        end = buffer.find(b"\r\n\r\n")
        head_bytes = bytes(buffer[: end if end >= 0 else MAX_HEAD + 1])
        if head_bytes.count(b"\n") != head_bytes.count(b"\r\n") or (
            end < 0 and len(buffer) > MAX_HEAD
        ):
            self._hand_over(b"")  # bare line ends, or a head too long: aiohttp answers
            return False
        if end < 0:
            if not _could_start(bytes(buffer[:8])):
                self._hand_over(b"")
            return False
        head = parse_head(head_bytes) if end <= MAX_HEAD else None
        if head is None or head.length > self._fast.max_body or self._fast.bridge.draining:
            self._hand_over(b"")
            return False
        total = end + 4 + head.length
        if len(buffer) < total:
            if not self._reading and self._transport is not None:
                self._transport.resume_reading()
                self._reading = True
            return False
        raw = bytes(buffer[:total])
        del buffer[:total]
        self._task = self._loop.create_task(self._serve(head, raw, raw[end + 4 :]))
        self._task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("fast_path_error", error=repr(task.exception()))
            if self._transport is not None:
                self._transport.close()
            return
        if self._transport is not None and not self._reading:
            self._transport.resume_reading()
            self._reading = True
        self._next()

    def _hand_over(self, raw: bytes) -> None:
        """aiohttp takes the connection: ``raw`` (a request not answered) and all buffered."""
        transport = self._transport
        if transport is None:
            return
        data = raw + bytes(self._buffer)
        self._buffer.clear()
        self._transport = None
        self._fast.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        adopt_connection(self._fast.server(), transport, data, paused=not self._reading)

    def _arm_idle(self) -> None:
        """The keep-alive timer while idle; the request timer from a request's first bytes."""
        pending = bool(self._buffer)
        if self._idle is not None:
            if self._idle_pending or not pending:
                return
            self._idle.cancel()
        self._idle_pending = pending
        delay = self._fast.request_timeout if pending else IDLE_TIMEOUT_S
        self._idle = self._loop.call_later(delay, self._idle_close)

    def _idle_close(self) -> None:
        self._idle = None
        if self._task is None and self._transport is not None:
            if self._idle_pending and self._late_body():
                return
            self._transport.close()

    def _late_body(self) -> bool:
        """A request whose head is in but not its body: answered as the aiohttp path would.

        True when aiohttp took the connection (a request not served here).
        """
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        head = parse_head(bytes(buffer[:end])) if 0 <= end <= MAX_HEAD else None
        if head is None or self._transport is None:
            return False
        fast = self._fast
        match = fast.bridge.routes.match(head.method, head.path)
        if match.plan is None or not _served(match, head.method):
            self._hand_over(b"")
            return True
        ctx = RequestContext(
            request_id=request_id_from(head.values.get("x-request-id")), metrics=fast.metrics
        )
        ctx.record_match(match)
        status, reason, headers, payload = _parts(
            error_answer(body_timeout(fast.request_timeout), ctx)
        )
        self._transport.write(
            self._serialize(status, reason, headers, payload, ctx.request_id, True)
        )
        trace = (head.values.get("traceparent"), head.values.get("tracestate"))
        log_request_line(ctx, head.method, head.path, self._peer, trace, status, len(payload))
        if fast.metrics is not None:
            count_request(fast.metrics, ctx, head.method, status)
        return False

    def close_when_idle(self) -> asyncio.Task[None] | None:
        """For shutdown: the request in flight, if any (the connection closes after it)."""
        self._close_after = True
        if self._task is None and self._transport is not None:
            self._transport.close()
        return self._task

    async def _serve(self, head: Head, raw: bytes, body: bytes) -> None:
        fast = self._fast
        bridge = fast.bridge
        method = head.method
        match = bridge.routes.match(method, head.path)
        plan = match.plan
        if plan is None or not _served(match, method):
            self._hand_over(raw)
            return
        values = head.values
        host = values.get("host")
        if host is None:
            # HTTP/1.1 requires it: aiohttp refuses the request (read here, where it's read anyway).
            self._hand_over(raw)
            return
        accept_encoding = values.get("accept-encoding")
        if accept_encoding is not None and fast.compression.choose(accept_encoding).refused:
            self._hand_over(raw)  # aiohttp answers the 406
            return
        request_id = request_id_from(values.get("x-request-id"))
        ctx = RequestContext(request_id=request_id, metrics=fast.metrics)
        try:
            client = ClientInfo(peer=self._peer, host=host, scheme="http")
            metadata = to_metadata(head.headers, fast.policy, client, request_id)
            timeout = timeout_for(
                plan, values.get("grpc-timeout"), values.get("connect-timeout-ms")
            )
            # parse_head let only a JSON Content-Type (or none) through: the media type
            # check of the aiohttp path passes, and an HttpBody takes the same bytes.
            message = message_of(
                match, method, head.query, body, values.get("content-type"), bridge
            )
        except Exception:
            # A BridgeError (or a bug): aiohttp answers it, exactly as it answers any
            # request it sees first, 400 or 500 alike.
            self._hand_over(raw)
            return
        ctx.record_match(match)
        ctx.bytes_in = len(body)
        path = head.path  # logged as received, as the aiohttp path logs it
        metrics = fast.metrics
        if metrics is not None:
            metrics.http_in_flight.value += 1
        status = 499
        trace = (values.get("traceparent"), values.get("tracestate"))
        try:
            status, reason, headers, payload = await self._call(
                ctx, match, plan, path, message, metadata, timeout
            )
            # The same encoding step as the aiohttp path's (middleware.py), after the request id.
            compression = fast.compression
            if accept_encoding is None:
                encoded = compression.plain_headers  # wrk, scripts: nothing to negotiate
            else:
                coding, encoded = compression.plan(
                    accept_encoding, _content_type(headers), len(payload)
                )
                if coding is not None:
                    payload = await compression.compress(coding, payload)
            close = head.close or fast.closing or bridge.draining
            if self._transport is not None:
                self._transport.write(
                    self._serialize(status, reason, headers, payload, request_id, close, encoded)
                )
                if close:
                    self._close_after = True
            log_request_line(ctx, method, path, self._peer, trace, status, len(payload))
        except asyncio.CancelledError:
            log_request_line(ctx, method, path, self._peer, trace, 499, 0)
            raise
        finally:
            if metrics is not None:
                metrics.http_in_flight.value -= 1
                count_request(metrics, ctx, method, status)
        if self._writable is not None:
            # Backpressure: the next pipelined request waits until the client reads.
            await self._writable

    async def _call(
        self,
        ctx: RequestContext,
        match: Match,
        plan: MethodPlan,
        path: str,
        message: Message,
        metadata: Metadata,
        timeout: float,
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Status, reason, headers and body the aiohttp path would send.

        See http/unary.py (the same steps, the same order) and middleware.py.
        """
        try:
            result = await self._fast.bridge.invoker(plan.upstream).unary(
                plan.info, message, metadata=metadata, timeout=timeout
            )
            ctx.grpc_code = _OK
            body, content_type = reply_body(match, result.response)
            # message_response's order: Content-Type, then the metadata headers.
            headers = [("Content-Type", content_type)]
            headers += to_headers(result.initial_metadata, result.trailing_metadata)
            return 200, "OK", headers, body
        except BridgeError as exc:
            return _parts(error_answer(exc, ctx))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unhandled_error", request_id=ctx.request_id, path=path)
            ctx.grpc_code = code_name(Code.INTERNAL)
            return _parts(json_response(status_body(Code.INTERNAL, INTERNAL_MESSAGE), status=500))

    def _serialize(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: bytes,
        request_id: str,
        close: bool,
        encoded: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        out = [f"HTTP/1.1 {status} {reason}\r\n".encode()]
        request_id_sent = False
        for name, value in headers:
            line = f"{name}: {value}\r\n".encode()
            if _CONTROL.search(line, 0, len(line) - 2):
                continue  # a value aiohttp would refuse to write (to_headers leaves none)
            request_id_sent = request_id_sent or name.lower() == "x-request-id"
            out.append(line)
        if not request_id_sent:
            out.append(f"{REQUEST_ID_HEADER}: {request_id}\r\n".encode())
        for name, value in encoded:
            out.append(f"{name}: {value}\r\n".encode())
        out.append(b"Content-Length: %d\r\nDate: " % len(body))
        out.append(_DATE.now())
        out.append(_SERVER)
        if close:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        out.append(body)
        return b"".join(out)


def _content_type(headers: list[tuple[str, str]]) -> str | None:
    return next((value for name, value in headers if name == "Content-Type"), None)


def _parts(response: web.Response) -> tuple[int, str, list[tuple[str, str]], bytes]:
    body = response.body
    assert isinstance(body, bytes)
    headers = [(k, v) for k, v in response.headers.items() if k != "Content-Length"]
    return response.status, response.reason, headers, body


class FastSite(ProtocolSite):
    """aiohttp's TCP site with connections that start on the fast path."""

    def __init__(
        self,
        runner: web.AppRunner,
        fast: FastPath,
        host: str,
        port: int,
        *,
        reuse_port: bool | None,
        shutdown_timeout: float,
    ) -> None:
        super().__init__(runner, fast.protocol, host, port, reuse_port=reuse_port)
        self._fast = fast
        self._drain_timeout = shutdown_timeout

    async def stop(self) -> None:
        """Stop listening, then let fast requests in flight finish (aiohttp's own follow)."""
        await super().stop()
        await self._fast.shutdown(self._drain_timeout)
