"""The receiving half of a gRPC call on an HTTP/2 stream: events in, gRPC's rules applied.

The state machine (:mod:`.state`) tells a stream what the upstream sent
(:meth:`Response.on_headers`, :meth:`Response.on_data`, :meth:`Response.on_reset`)
or that it ended without the upstream's word (:meth:`Response.fail`). This
applies gRPC's rules to it: informational blocks, then one header block
(``:status`` 200 and a gRPC content-type), then length-prefixed messages, then
trailers, whose status (read as :mod:`.grpc_status` says) ends the call. A
violation resets the stream with the status the call gets. The call layer's
side, reading what is here, is :class:`~.stream.Stream`, built on this.

Everything runs on the event loop thread, so a frame that completes a
message wakes the reader directly, with no hand-off.

Flow control is the backpressure for slow HTTP clients, counted in bytes: the
stream hands window back only for bytes its reader took, so whole messages
waiting plus the window the upstream may still use stay within the
connection's ``stream_buffer_bytes`` (at least the largest stream window). The
message being assembled counts as taken, else one larger than the budget
could never complete; ``max_receive_message_bytes`` bounds it. A stream starts
with the initial window (64 KiB, our SETTINGS) and is granted the rest of its
window (4 MiB) once it used half of the initial one: a unary answer (most fit in 64
KiB) then costs no WINDOW_UPDATE, and a larger one is granted the rest before the
upstream runs out.

A call serving a client connection that carries many calls (h2c) also counts
what it holds (messages, the message being assembled, the window) in that
connection's :class:`~grpc_bridge.upstream.client_budget.ClientBudget`, and
grants window only while the connection's calls hold less than one stream's
budget between them; a stream that holds nothing for its reader may still
keep the initial window, so each call can always finish the message its
reader waits for.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Protocol

from grpc_bridge.status import Code
from grpc_bridge.upstream.client_budget import CLIENT_BUDGET, ClientBudget
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.fields import Block, Header
from grpc_bridge.upstream.h2.grpc_status import RESET_TO_CODE, Status, not_grpc, status_of
from grpc_bridge.upstream.h2.inflate import Compressed

__all__ = ["MAX_INFORMATIONAL", "Response", "StreamOwner", "wake_all"]

#: Informational (1xx) responses a call may get before its headers, as Go's
#: HTTP/2 client allows: each costs a header-block decode and carries nothing.
MAX_INFORMATIONAL = 5
#: A stream of an h2c client connection may be granted this fraction of the
#: connection's budget as window (1/8: 512 KiB of the default 4 MiB, far more than a
#: LAN needs to stream at full speed), so several can stream at once.
WINDOW_SHARES = 8
#: A gRPC message's prefix: the compressed flag, then the length (big-endian).
_PREFIX = struct.Struct(">BI").unpack_from


class StreamOwner(Protocol):
    """What a stream needs of its connection (the connection imports this module, not back)."""

    loop: asyncio.AbstractEventLoop
    #: The window each stream starts with (our SETTINGS_INITIAL_WINDOW_SIZE), and the most
    #: it is granted.
    stream_window: int
    max_stream_window: int
    #: Bytes of unread messages a stream holds before it stops granting window.
    stream_buffer_bytes: int
    max_receive_message_bytes: int

    def reset(self, call: Response, code: int, status: Status | None = None) -> None: ...

    def grant(self, call: Response, increment: int) -> None: ...

    def forget(self, call: Response) -> None: ...


def wake_all(waiters: list[asyncio.Future[None]]) -> None:
    """Resolve every waiter still pending (the ones cancelled meanwhile are skipped)."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class Response:
    """See the module docstring. Created (as a :class:`~.stream.Stream`) by the connection."""

    __slots__ = (
        "_budget",
        "_buffer",
        "_client",
        "_compressed",
        "_counted",
        "_encoding",
        "_grant_at",
        "_held",
        "_inflating",
        "_low",
        "_max_receive",
        "_max_window",
        "_waiters",
        "_window",
        "connection",
        "headers",
        "id",
        "informational",
        "messages",
        "status",
        "trailers",
    )

    def __init__(self, connection: StreamOwner, stream_id: int) -> None:
        self.connection = connection
        self.id = stream_id
        #: Response headers (None until received; stays None for Trailers-Only).
        self.headers: tuple[Header, ...] | None = None
        self.trailers: tuple[Header, ...] | None = None
        self.status: Status | None = None
        #: Informational (1xx) header blocks received so far.
        self.informational = 0
        self.messages: deque[bytes] = deque()
        self._buffer = bytearray()
        #: The reader (:mod:`.stream`) is inflating a taken message on a worker
        #: thread: the ones after it wait. Here so a stream costs one __init__.
        self._inflating = False
        self._encoding: str | None = None
        self._max_receive = connection.max_receive_message_bytes
        #: The window the upstream has left on this stream.
        self._window = connection.stream_window
        #: Window is granted again once it is down to this.
        self._low = self._window // 2
        #: Bytes of whole messages waiting for the reader (not yet taken).
        self._held = 0
        #: How many of them are still compressed (none, on most streams).
        self._compressed = 0
        # Held messages plus the window the upstream may still use stay within
        # this: a reader that stops pauses the upstream by flow control, so a
        # slow HTTP client costs at most this (plus one partial message).
        max_window = connection.max_stream_window
        self._budget = max(connection.stream_buffer_bytes, max_window)
        #: The budget of the client connection this call serves, and what is counted in it.
        self._client: ClientBudget | None = CLIENT_BUDGET.get()
        self._counted = 0
        if self._client is not None:
            # The window granted counts in the connection's budget even while unused:
            # a stream may have a share of it, so one that sits idle with its window
            # open (a watch that sends nothing for minutes) leaves the rest to the others.
            share = self._budget // WINDOW_SHARES
            max_window = max(connection.stream_window, min(max_window, share))
        self._max_window = max_window
        # Window is handed back in halves, once a stream used half of what it was
        # granted: a response smaller than that (most unary ones, within the initial
        # 64 KiB) costs no WINDOW_UPDATE at all.
        self._grant_at = min(max_window, connection.stream_buffer_bytes) // 2
        self._waiters: list[asyncio.Future[None]] = []

    # -- fed by the state machine -----------------------------------------------------

    def on_headers(self, block: Block, end_stream: bool) -> None:
        if self.status is not None:
            return
        problem = block.problem
        http_status = block.status
        if problem is None and self.headers is None:
            if http_status is None:
                problem = "upstream sent a response without :status"
            elif http_status[0] == "1" and len(http_status) == 3:
                # RFC 9113 §8.1: informational blocks may come first (never 101, never last).
                if http_status == "101" or end_stream:
                    problem = f"upstream sent an invalid informational response {http_status}"
                elif self.informational >= MAX_INFORMATIONAL:
                    problem = f"upstream sent over {MAX_INFORMATIONAL} informational responses"
                else:
                    self.informational += 1
                    return
        elif problem is None and http_status is not None:
            problem = "upstream sent a pseudo-header in trailers"
        if problem is not None:
            self.connection.reset(self, frames.PROTOCOL_ERROR, Status(Code.INTERNAL, problem))
            return
        headers = block.headers
        if self.headers is None and not end_stream:
            if http_status != "200":
                # Not a gRPC response (a proxy's error page): no trailers will follow.
                self.connection.reset(self, frames.CANCEL, status_of((), http_status))
                return
            if not block.grpc:
                self.connection.reset(self, frames.CANCEL, not_grpc(block))
                return
            self.headers = headers
            self._encoding = block.encoding
            self._wake()
            return
        if not end_stream:
            self.connection.reset(
                self,
                frames.PROTOCOL_ERROR,
                Status(Code.INTERNAL, "upstream sent a second header block mid-stream"),
            )
            return
        self.trailers = headers
        if self.headers is None:
            if block.content_type is not None and not block.grpc:
                self._finish(not_grpc(block))
            else:
                self._finish(status_of(headers, http_status))
        elif self._buffer:
            self._finish(Status(Code.INTERNAL, "upstream ended the call inside a message"))
        else:
            self._finish(status_of(headers, None))

    def on_data(self, payload: bytes, end_stream: bool, flow_length: int) -> None:
        if self.status is not None:
            return
        if self.headers is None:
            status = Status(Code.INTERNAL, "upstream sent data before headers")
            self.connection.reset(self, frames.PROTOCOL_ERROR, status)
            return
        self._window -= flow_length
        if self._window < 0:
            # Past the window we granted (RFC 9113 §6.9.1): an upstream ignoring flow
            # control would make the bridge buffer without bound for a slow client.
            status = Status(Code.INTERNAL, "upstream sent more data than the flow-control window")
            self.connection.reset(self, frames.FLOW_CONTROL_ERROR, status)
            return
        buffer = self._buffer
        if buffer:
            buffer += payload
            self._parse(buffer)
        elif payload:
            # The common case, a frame holding whole messages: no copy into the buffer.
            rest = self._parse(payload)
            if rest < len(payload):
                buffer += payload[rest:]
        if self.status is not None:
            return  # _parse failed the call (a message over max_receive_message_bytes)
        if end_stream:
            self._finish(Status(Code.INTERNAL, "upstream ended the call without trailers"))
            return
        if self._window <= self._low:
            self._maybe_grant()
        elif buffer and len(buffer) >= 5 and _PREFIX(buffer, 0)[1] + 5 - len(buffer) > self._window:
            # A message larger than the window left: its rest is asked for now, not once
            # half the window is used, or the upstream would wait a round trip for it.
            self._maybe_grant()
        self._wake()

    def _parse(self, data: bytes | bytearray) -> int:
        """Move every whole message of ``data`` into ``messages``; returns where the rest starts.

        A bytearray is consumed in place; for bytes the caller keeps the rest.
        This loop runs once per message (a stream of small messages spends a
        third of its time here), hence one ``unpack_from`` for the 5-byte
        prefix and the flag tested only when set.
        """
        pos = 0
        end = len(data)
        messages = self.messages
        append = messages.append
        had = len(messages)
        while end - pos >= 5:
            flag, length = _PREFIX(data, pos)
            if length > self._max_receive:
                self.connection.reset(
                    self,
                    frames.CANCEL,
                    Status(
                        Code.RESOURCE_EXHAUSTED,
                        f"upstream sent a message of {length} bytes, over "
                        f"max_receive_message_bytes ({self._max_receive})",
                    ),
                )
                return end
            start = pos + 5
            if end - start < length:
                break
            pos = start + length
            message = bytes(data[start:pos])  # no copy when data is bytes
            if flag:
                message = Compressed(message)
                self._compressed += 1
            append(message)
        # What the new messages hold: the bytes parsed less their 5-byte prefixes.
        self._held += pos - 5 * (len(messages) - had)
        if isinstance(data, bytearray):
            del data[:pos]
            return 0
        return pos

    def on_reset(self, code: int) -> None:
        if self.status is None:
            self._finish(
                Status(
                    RESET_TO_CODE.get(code, Code.INTERNAL),
                    f"upstream reset the stream (HTTP/2 error code {code})",
                    unprocessed=code == frames.REFUSED_STREAM,
                )
            )

    def fail(self, status: Status) -> None:
        """Ends the call from this side (deadline, connection lost, GOAWAY)."""
        if self.status is None:
            self._finish(status)

    def _finish(self, status: Status) -> None:
        self.status = status
        if self._client is not None:
            # No more window: what is left are the messages its reader may still take
            # (a failed call's too: they are handed on before its status), until release().
            self._count(self._held)
        self.connection.forget(self)
        self._wake()

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            wake_all(waiters)

    async def _wait(self) -> None:
        waiter = self.connection.loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def open_window(self) -> None:
        """The stream's HEADERS are written: a call of a client connection's budget gets
        the window the budget allows with them.

        A call of its own is granted nothing yet: most answers (unary ones) fit in the
        initial 64 KiB, and a WINDOW_UPDATE per call cost every unary call ~2 % of its
        CPU; a larger answer gets the whole window once half the initial one is used,
        or once a message's prefix says it is larger than the window left (the data
        path's :meth:`_maybe_grant`).
        """
        if self._client is not None:
            self._maybe_grant()

    def _maybe_grant(self) -> None:
        """Hand back window the budget allows: bytes the reader took, never read-ahead.

        Bytes of a partial message count as handed on (they cannot be taken
        before the message is whole, and max_receive_message_bytes bounds them),
        so a message larger than the budget still completes.
        """
        if self.status is not None:
            return  # no more window for a call that ended (nor counted in its budget)
        window = self._window
        held = self._held
        target = min(self._max_window, self._budget - held)
        client = self._client
        if client is not None:
            self._count(held + len(self._buffer) + window)
            room = window + self._budget - client.held
            if not held:
                # Its reader waits (or will) for what comes next: the initial window, always.
                room = max(room, self.connection.stream_window)
            target = min(target, room)
        increment = target - window
        # Small increments only once the reader caught up: nothing is held then.
        if increment > 0 and (increment >= self._grant_at or not held):
            self._window = target
            self._low = target - min(self._grant_at, target // 2)
            if client is not None:
                client.add(increment)
                self._counted += increment
            self.connection.grant(self, increment)

    def _count(self, mine: int) -> None:
        """``mine`` bytes are what this stream holds or may receive, in its client's budget."""
        client = self._client
        assert client is not None
        client.add(mine - self._counted)
        self._counted = mine

    def release(self) -> None:
        """The call is over: what it holds no longer counts in its client's budget."""
        if self._client is not None:
            self._count(0)

    def _consumed(self) -> None:
        """The reader took messages: window may go back now, once it is down to ``_low``
        (a WINDOW_UPDATE per batch read would cost a call of many small messages one
        each); what the stream holds is counted less at once."""
        if self._client is not None:
            # (An ended call holds its messages only: _finish counted no buffer, no window.)
            ended = self.status is not None
            self._count(self._held + (0 if ended else len(self._buffer) + self._window))
        if self.status is None and self._window <= self._low:
            self._maybe_grant()
