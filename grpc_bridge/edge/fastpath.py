"""The lean HTTP/1.1 edge on the proxy listener, in front of aiohttp: its connections.

aiohttp's request and response machinery costs ~47 µs of CPU per request where
a bare protocol costs ~11 µs (bench/PROFILE.md §6), a fifth of what a unary
call costs the bridge in all. Every connection starts here: each head is
parsed with the parser aiohttp's own handlers use (llhttp, through
edge/aiohttp_compat.py), so a head reads the same on both edges and one that
aiohttp refuses is refused there; what it made of a head is kept by the head's
bytes (:attr:`FastPath.parsed`), so a head sent again is not parsed again.
edge/fastpath_heads.py decides which requests are served here (unary calls:
JSON's, gRPC-Web's, Connect's POST), edge/fastpath_serve.py answers them with
the aiohttp edge's steps and the protocols' own. For anything else it hands the
connection to aiohttp's ``RequestHandler`` with every byte it has buffered (the
unread request included), and aiohttp serves it and the rest of the connection
as if it had been there from the start.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from grpc_bridge.edge.aiohttp_compat import (
    HeadParser,
    HttpProcessingError,
    RawRequestMessage,
    adopt_connection,
    head_parser,
)
from grpc_bridge.edge.cut_off import FLUSH_GRACE, cut_off
from grpc_bridge.edge.fastpath_heads import Served
from grpc_bridge.edge.fastpath_serve import LeanEdge
from grpc_bridge.edge.h2c import H2cEdge, preface_state
from grpc_bridge.log import get_logger
from grpc_bridge.protocol.base import PlainUnary
from grpc_bridge.routing.table import Match, RouteTable

log = get_logger("grpc_bridge.http")

#: A head longer than this goes to aiohttp (which answers 431 or 400 as it should).
MAX_HEAD = 8190
#: Keep-alive timeout: an idle connection is closed after it. app.py gives aiohttp's
#: handlers the same one. A request begun must be in whole within
#: ``limits.body_read_timeout_s`` of its first byte: a 408 if its head is in (as
#: the aiohttp path answers a late body, pipeline/body.py), else the connection closes.
IDLE_TIMEOUT_S = 75.0
_TIMER_SLACK = 0.001  # how early a timer may fire (uvloop counts whole milliseconds)
#: Pipelined bytes buffered while a request is served, before reading pauses.
MAX_BUFFERED = 256 * 1024

#: Heads parsed, by their bytes: at most this many kept (the memo is emptied when full),
#: and only heads up to ``MAX_MEMO_HEAD`` bytes. Few: where every head differs, 512
#: kept messages made each new one ~4 µs dearer (freelists and caches gone cold).
MAX_MEMO = 64
MAX_MEMO_HEAD = 1024


class _Parsed:
    """What a head's bytes come to: its message, what it is here (edge/fastpath_heads.py),
    its match in the route table ``routes`` (None: not routed yet, or routes remade since)."""

    __slots__ = ("form", "length", "match", "message", "protocol", "routes")

    def __init__(self, message: RawRequestMessage, served: Served | None) -> None:
        self.message = message
        length, protocol, form = served or (None, None, None)
        self.length: int | None = length
        self.protocol: PlainUnary | None = protocol
        self.form: Any = form
        self.routes: RouteTable | None = None
        self.match: Match | None = None


#: A head served here and the body it awaits: what the head is, its match, the head's
#: bytes and the body's size.
_Pending = tuple[_Parsed, Match, bytes, int]


#: How a request line may start: a method token (the ones llhttp knows are upper-case
#: letters, and "-" for M-SEARCH), then a space, or the bytes so far of one.
_REQUEST_LINE_START = re.compile(rb"[A-Z-]{1,20}(?: |$)")


class FastPath:
    """What every lean connection shares; ``server`` makes aiohttp's protocol for a hand-over."""

    def __init__(
        self, edge: LeanEdge, server: web.Server, parser: Callable[[], HeadParser]
    ) -> None:
        self.edge = edge
        self.bridge = edge.bridge
        self.server = server
        self.parser = parser
        #: Connections that start with the HTTP/2 preface go there (edge/h2c.py).
        self.h2c = H2cEdge(
            server, head_timeout=edge.request_timeout, stall_timeout=edge.env.idle_timeout_s
        )
        #: What llhttp made of a head, and its route, by the head's bytes. A client sends
        #: the same head over and over (the same call, a body of the same size), and the
        #: parse is a pure function of those bytes: aiohttp's parser builds a yarl URL
        #: and a CIMultiDict for every head, ~7 µs of a busy bridge's CPU per request,
        #: and a REST route's match costs ~5 µs more, where a lookup costs well under
        #: one. The message is read-only (its headers a ``CIMultiDictProxy``), so
        #: requests can share it.
        self.parsed: dict[bytes, _Parsed] = {}
        self.connections: set[FastConnection] = set()
        self.closing = False
        #: Set when the last connection is gone (awaited at shutdown).
        self.emptied = asyncio.Event()

    @classmethod
    def start(cls, edge: LeanEdge, server: web.Server) -> FastPath | None:
        """The lean edge in front of ``server``; None without aiohttp's C parser."""
        parser = head_parser(server)
        if parser is None:
            log.warning("fast_path_off", reason="aiohttp runs without its C HTTP parser")
            return None
        return cls(edge, server, parser)

    def protocol(self) -> FastConnection:
        return FastConnection(self)

    async def shutdown(self, timeout: float) -> None:
        """No new requests; idle connections close now, busy ones after their response."""
        self.closing = True
        h2c = asyncio.ensure_future(self.h2c.shutdown(timeout))
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
        # A closing connection is gone once its last response is flushed (edge/cut_off.py).
        await cut_off(self.connections, self.emptied, min(timeout, FLUSH_GRACE))
        await h2c


class FastConnection(asyncio.Protocol):
    """One client connection, served here until a request needs aiohttp."""

    def __init__(self, fast: FastPath) -> None:
        self._fast = fast
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._task: asyncio.Task[None] | None = None
        #: When it closes if idle (None: busy); ``_idle`` is left to run, not re-made per request.
        self._idle_at: float | None = None
        self._idle: asyncio.TimerHandle | None = None
        #: Whether ``_idle_at`` times a request begun (else the keep-alive idle).
        self._idle_pending = False
        self._peer: str | None = None
        self._reading = True
        self._writable: asyncio.Future[None] | None = None
        self._close_after = False
        #: Made at the first head not in ``fast.parsed`` (most connections need none).
        self._parser: HeadParser | None = None
        #: A parser fed an unfinished head as it arrives, and how much of it: a head
        #: aiohttp would refuse before its end goes to aiohttp then, for its answer.
        self._probe: HeadParser | None = None
        self._probed = 0
        #: The head served here whose body is awaited.
        self._pending: _Pending | None = None
        #: No request yet: the bytes may be HTTP/2's preface (h2c with prior knowledge).
        self._fresh = True

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._peer = str(peer[0])
        self._fast.connections.add(self)
        self._fast.emptied.clear()
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
        if not self._fast.connections:
            self._fast.emptied.set()
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
            self._idle_at = None
        elif self._transport is not None:
            # Idle, or a request still incomplete: the keep-alive timeout runs.
            self._arm_idle()

    def _start_request(self) -> bool:
        """True when a request was complete and its task started."""
        buffer = self._buffer
        if not buffer:
            return False
        if self._fresh:
            h2c = preface_state(buffer)
            if h2c is None:
                return False  # the preface so far: the request timer runs
            self._fresh = False
            if h2c:
                self._hand_over(b"", http2=True)
                return False
        pending = self._pending
        if pending is None:
            end = buffer.find(b"\r\n\r\n")
            head = bytes(buffer[: end + 4 if end >= 0 else MAX_HEAD + 1])
            if head.count(b"\n") != head.count(b"\r\n") or (end < 0 and len(buffer) > MAX_HEAD):
                self._hand_over(b"")  # bare line ends, or a head too long: aiohttp answers
                return False
            if end < 0:
                # A head that will go to aiohttp (OPTIONS, HEAD, an upgrade) is read whole
                # here first, under this edge's head deadline: aiohttp has none. Bytes no
                # request line starts with (TLS on the plain port) go at once, for
                # aiohttp's immediate 400.
                if not _REQUEST_LINE_START.match(head, 0, 21) or self._refused_so_far(buffer):
                    self._hand_over(b"")
                return False
            self._probe = None
            pending = self._parse(head) if end <= MAX_HEAD else None
            if pending is None:
                self._hand_over(b"")
                return False
            self._pending = pending
        parsed, match, head, length = pending
        size = len(head)
        total = size + length
        if len(buffer) < total:
            if not self._reading and self._transport is not None:
                self._transport.resume_reading()
                self._reading = True
            return False
        self._pending = None
        # Through a memoryview: one copy of the body, not a bytearray slice copied again.
        body = bytes(memoryview(buffer)[size:total])
        del buffer[:total]
        self._task = self._loop.create_task(self._serve(parsed, match, head, body))
        self._task.add_done_callback(self._done)
        return True

    def _refused_so_far(self, buffer: bytearray) -> bool:
        """Whether llhttp refuses the unfinished head in ``buffer`` already (each byte
        fed once: a trickled head costs no more than a whole one)."""
        probe = self._probe
        if probe is None:
            probe = self._probe = self._fast.parser()
            self._probed = 0
        try:
            probe.feed_data(bytes(buffer[self._probed :]))
        except HttpProcessingError:
            return True
        self._probed = len(buffer)
        return False

    def _parse(self, head: bytes) -> _Pending | None:
        """A whole head (CRLF line ends only), parsed, if it is one served here."""
        fast = self._fast
        parsed = fast.parsed.get(head)
        if parsed is None:
            parsed = self._parse_new(head)
            if parsed is None:
                return None
        length = parsed.length
        bridge = fast.bridge
        if length is None or length > fast.edge.max_body or bridge.draining:
            return None
        # The bridge makes a new table when the upstreams' services change; until
        # then the same head has the same match (a frozen Match, read-only captures).
        routes = bridge.routes
        if parsed.routes is not routes:
            parsed.match = fast.edge.route(parsed.message, parsed.protocol is not None)
            parsed.routes = routes
        match = parsed.match
        if match is None:
            return None
        return parsed, match, head, length

    def _parse_new(self, head: bytes) -> _Parsed | None:
        """A head llhttp has not read before (None: refused, or not one request)."""
        if not head.isascii():
            return None  # aiohttp decodes other bytes its own way
        parser = self._parser
        if parser is None:
            parser = self._parser = self._fast.parser()
        try:
            messages, upgraded, _ = parser.feed_data(head)
        except HttpProcessingError:
            return None  # aiohttp's parser refuses it too, and answers
        if upgraded or len(messages) != 1:
            return None
        message = messages[0][0]
        parsed = _Parsed(message, self._fast.edge.served(message))
        if len(head) <= MAX_MEMO_HEAD:
            memo = self._fast.parsed
            if len(memo) >= MAX_MEMO:
                memo.clear()  # many distinct heads: no sweep, no growth
            memo[head] = parsed
        return parsed

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

    def _hand_over(self, raw: bytes, *, http2: bool = False) -> None:
        """aiohttp (or the HTTP/2 edge) takes the connection: ``raw`` (a request not
        answered) and all buffered."""
        transport = self._transport
        if transport is None:
            return
        data = raw + bytes(self._buffer)
        self._buffer.clear()
        self._transport = None
        self._fast.connections.discard(self)
        self._idle_at = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if http2:
            self._fast.h2c.adopt(transport, data, paused=not self._reading)
        else:
            adopt_connection(self._fast.server(), transport, data, paused=not self._reading)

    def _arm_idle(self) -> None:
        """The keep-alive timer while idle; the request timer from a request's first bytes."""
        pending = bool(self._buffer)
        if self._idle_at is not None and (self._idle_pending or not pending):
            return
        self._idle_pending = pending
        delay = self._fast.edge.request_timeout if pending else IDLE_TIMEOUT_S
        at = self._idle_at = self._loop.time() + delay
        timer = self._idle
        if timer is None or timer.when() > at:
            if timer is not None:
                timer.cancel()
            self._idle = self._loop.call_at(at, self._idle_due)

    def _idle_due(self) -> None:
        at, self._idle = self._idle_at, None
        if at is not None and at - self._loop.time() > _TIMER_SLACK:
            self._idle = self._loop.call_at(at, self._idle_due)  # re-armed later meanwhile
        elif at is not None:  # (None: busy since, armed again when idle)
            self._idle_at = None
            self._idle_close()

    def _idle_close(self) -> None:
        if self._task is None and self._transport is not None:
            if self._idle_pending:
                self._late_body()
            self._transport.close()

    def _late_body(self) -> None:
        """A request whose head is in but not its body: answered as the aiohttp path would.

        (A head not whole is not answered: the connection just closes.)
        """
        if self._transport is not None and self._pending is not None:
            parsed, match, _, _ = self._pending
            self._transport.write(
                self._fast.edge.late_body(parsed.message, match, self._peer, parsed.protocol)
            )

    def close_when_idle(self) -> asyncio.Task[None] | None:
        """For shutdown: the request in flight, if any (the connection closes after it)."""
        self._close_after = True
        if self._task is None and self._transport is not None:
            self._transport.close()
        return self._task

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def _serve(self, parsed: _Parsed, match: Match, head: bytes, body: bytes) -> None:
        fast = self._fast
        if parsed.protocol is None:
            answer = await fast.edge.answer(parsed.message, match, body, self._peer, fast.closing)
        else:
            answer = await fast.edge.answer_plain(
                parsed.protocol, parsed.form, parsed.message, match, body, self._peer, fast.closing
            )
        if answer is None:
            self._hand_over(head + body)
            return
        data, close = answer
        if self._transport is not None:
            self._transport.write(data)
            if close:
                self._close_after = True
        if self._writable is not None:
            # Backpressure: the next pipelined request waits until the client reads.
            await self._writable
