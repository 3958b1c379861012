"""One gRPC call on an HTTP/2 stream: its messages, metadata and final status.

The connection feeds it frames (:meth:`Stream.on_headers`, :meth:`Stream.on_data`,
:meth:`Stream.on_reset`, :meth:`Stream.fail`); the call layer awaits
:meth:`next_message`, :meth:`wait_headers` and :meth:`wait_closed`. Everything
runs on the event loop thread, so a frame that completes a message wakes the
reader directly, with no hand-off.

The final status is read as :mod:`.grpc_status` says.

Flow control is the backpressure for slow HTTP clients, counted in bytes: the
stream hands window back only for bytes its reader took (:meth:`next_message`,
:meth:`take`), so whole messages waiting plus the window the upstream may
still use stay within the connection's ``stream_buffer_bytes`` (at least the
stream window). The message being assembled counts as taken, else one larger
than the budget could never complete; ``max_receive_message_bytes`` bounds it.

Compressed messages are held as they came and inflated by :mod:`.inflate`
when taken: flow control counts wire bytes, so inflating on arrival would let
a window of small gzip messages become gigabytes held for a reader that
stopped. The large ones (over :data:`.inflate.OFF_LOOP_BYTES`) are inflated on
a worker thread by the awaited path (:meth:`next_message`, :meth:`inflated`);
:meth:`take`, which never waits, stops before one, so the order is kept, and
bounds a batch by its inflated bytes as well as its wire bytes.
"""

from __future__ import annotations

import asyncio
import struct
from bisect import bisect_left
from collections import deque
from itertools import accumulate
from typing import Protocol

from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import frames, inflate
from grpc_bridge.upstream.h2.fields import Block, Header
from grpc_bridge.upstream.h2.grpc_status import (
    RESET_TO_CODE,
    Metadata,
    Status,
    metadata_of,
    not_grpc,
    status_of,
)
from grpc_bridge.upstream.h2.inflate import OFF_LOOP_BYTES, Compressed, MessageError

__all__ = [
    "MessageError",
    "Metadata",
    "Status",
    "Stream",
    "StreamOwner",
    "metadata_of",
    "wake_all",
]

#: Informational (1xx) responses a call may get before its headers, as Go's
#: HTTP/2 client allows: each costs a header-block decode and carries nothing.
MAX_INFORMATIONAL = 5
#: A gRPC message's prefix: the compressed flag, then the length (big-endian).
_PREFIX = struct.Struct(">BI").unpack_from


class StreamOwner(Protocol):
    """What a stream needs of its connection (the connection imports this module, not back)."""

    loop: asyncio.AbstractEventLoop
    stream_window: int
    #: Bytes of unread messages a stream holds before it stops granting window.
    stream_buffer_bytes: int
    max_receive_message_bytes: int

    def reset(self, stream: Stream, code: int, status: Status | None = None) -> None: ...

    def grant(self, stream: Stream, increment: int) -> None: ...

    def forget(self, stream: Stream) -> None: ...


def wake_all(waiters: list[asyncio.Future[None]]) -> None:
    """Resolve every waiter still pending (the ones cancelled meanwhile are skipped)."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class Stream:
    """See the module docstring. Created by :meth:`Connection.open_stream`."""

    __slots__ = (
        "_budget",
        "_buffer",
        "_compressed",
        "_encoding",
        "_grant_at",
        "_held",
        "_inflating",
        "_max_receive",
        "_recv_unacked",
        "_waiters",
        "connection",
        "headers",
        "id",
        "informational",
        "local_closed",
        "messages",
        "pending",
        "pending_end",
        "remote_closed",
        "send_window",
        "status",
        "trailers",
    )

    def __init__(self, connection: StreamOwner, stream_id: int, send_window: int) -> None:
        self.connection = connection
        self.id = stream_id
        self.send_window = send_window
        #: Response headers (None until received; stays None for Trailers-Only).
        self.headers: tuple[Header, ...] | None = None
        self.trailers: tuple[Header, ...] | None = None
        self.status: Status | None = None
        #: Informational (1xx) header blocks received so far.
        self.informational = 0
        self.messages: deque[bytes] = deque()
        self.local_closed = False
        self.remote_closed = False
        #: Request bytes waiting for flow-control window, and whether END_STREAM follows them.
        self.pending: deque[memoryview] = deque()
        self.pending_end = False
        self._buffer = bytearray()
        #: A taken message is being inflated on a worker thread: the ones after it wait.
        self._inflating = False
        self._encoding: str | None = None
        self._max_receive = connection.max_receive_message_bytes
        #: Bytes received since the last WINDOW_UPDATE: the upstream's window
        #: left is ``stream_window - _recv_unacked``.
        self._recv_unacked = 0
        #: Bytes of whole messages waiting for the reader (not yet taken).
        self._held = 0
        #: How many of them are still compressed (none, on most streams).
        self._compressed = 0
        # Held messages plus the window the upstream may still use stay within
        # this: a reader that stops pauses the upstream by flow control, so a
        # slow HTTP client costs at most this (plus one partial message).
        self._budget = max(connection.stream_buffer_bytes, connection.stream_window)
        # Window is handed back in halves: a unary response (far smaller) then
        # costs no WINDOW_UPDATE at all, and the upstream never waits on it.
        self._grant_at = min(connection.stream_window, connection.stream_buffer_bytes) // 2
        self._waiters: list[asyncio.Future[None]] = []

    # -- fed by the connection ---------------------------------------------------

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
        self.remote_closed = True
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
        self._recv_unacked += flow_length
        if self._recv_unacked > self.connection.stream_window:
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
        if end_stream:
            self.remote_closed = True
        if end_stream and self.status is None:
            self._finish(Status(Code.INTERNAL, "upstream ended the call without trailers"))
            return
        if self._recv_unacked >= self._grant_at:
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
        self.remote_closed = self.local_closed = True
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
        self.pending.clear()
        self.connection.forget(self)
        self._wake()

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            wake_all(waiters)

    def _maybe_grant(self) -> None:
        """Hand back window the budget allows: bytes the reader took, never read-ahead.

        Bytes of a partial message count as handed on (they cannot be taken
        before the message is whole, and max_receive_message_bytes bounds them),
        so a message larger than the budget still completes.
        """
        window_left = self.connection.stream_window - self._recv_unacked
        increment = min(self._recv_unacked, self._budget - self._held - window_left)
        # Small increments only once the reader caught up: nothing is held then.
        if increment > 0 and (increment >= self._grant_at or not self._held):
            self._recv_unacked -= increment
            self.connection.grant(self, increment)

    # -- awaited by the call layer -------------------------------------------------

    async def _wait(self) -> None:
        waiter = self.connection.loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def next_message(self) -> bytes | None:
        """The next whole message, inflated; None once the call ended (read ``status`` then)."""
        while True:
            if not self._inflating:
                if self.messages:
                    message = self.messages.popleft()
                    self._held -= len(message)
                    self._consumed()
                    if type(message) is not Compressed:
                        return message
                    self._compressed -= 1
                    try:
                        return await self.inflated(message)
                    except MessageError as exc:
                        self._bad_message(exc.status)
                        return None
                if self.status is not None:
                    return None
            await self._wait()

    def take(self, limit: int, max_bytes: int) -> list[bytes]:
        """Whole messages already received, inflated, without waiting: up to ``limit``
        of them, stopping once ``max_bytes`` are taken, counted as received and
        again as inflated (at least one if any is there), and before a compressed
        one too large to inflate on the loop (for :meth:`next_message`, which
        awaits a worker thread)."""
        messages = self.messages
        count = min(limit, len(messages))
        if not count or self._inflating:
            return []
        # Whole batches at C speed: this runs once per batch of a stream's messages.
        popleft = messages.popleft
        taken = [popleft() for _ in range(count)]
        size = sum(map(len, taken))
        if size > max_bytes and count > 1:
            cut = bisect_left(list(accumulate(map(len, taken))), max_bytes) + 1
            if cut < count:
                size -= self._put_back(taken, cut)
        if self._compressed:
            # ``max_bytes`` bounds what the batch holds once inflated: counted on
            # wire bytes, 64 KiB of small gzip messages could inflate to GBs.
            inflated = 0
            for index, message in enumerate(taken):
                if inflated >= max_bytes and index:
                    size -= self._put_back(taken, index)
                    break
                if type(message) is Compressed:
                    if len(message) > OFF_LOOP_BYTES:
                        size -= self._put_back(taken, index)
                        break
                    self._compressed -= 1
                    try:
                        taken[index] = message = self.inflate(message)
                    except MessageError as exc:
                        del taken[index:]
                        self._bad_message(exc.status)
                        return taken
                inflated += len(message)
        self._held -= size
        self._consumed()
        return taken

    def _put_back(self, taken: list[bytes], index: int) -> int:
        """Return ``taken[index:]`` to the front of ``messages``; their size in bytes."""
        rest = taken[index:]
        del taken[index:]
        self.messages.extendleft(reversed(rest))
        return sum(map(len, rest))

    async def inflated(self, message: bytes) -> bytes:
        """:meth:`inflate`, on a worker thread for a large message (milliseconds of CPU).

        Raises :class:`MessageError` as :meth:`inflate` does.
        """
        if type(message) is not Compressed or len(message) <= OFF_LOOP_BYTES:
            return self.inflate(message)
        self._inflating = True
        try:
            return await self.connection.loop.run_in_executor(
                None, inflate.message, self._encoding, message, self._max_receive
            )
        finally:
            self._inflating = False
            self._wake()

    def inflate(self, message: bytes) -> bytes:
        """``message`` as the reader needs it: inflated if it came compressed.

        Raises :class:`MessageError` when it does not inflate, or inflates past
        max_receive_message_bytes (a small message can inflate to GBs).
        """
        if type(message) is not Compressed:
            return message
        return inflate.message(self._encoding, message, self._max_receive)

    def _bad_message(self, status: Status) -> None:
        # The messages after it are never handed on: the call ends with its status.
        self.messages.clear()
        self._held = self._compressed = 0
        self.connection.reset(self, frames.CANCEL, status)
        if self.status is not None and self.status.code == Code.OK:
            # The upstream ended the call before this message was taken: not OK after all.
            self.status = status

    def give_back(self, messages: list[bytes]) -> None:
        """Put messages :meth:`take` returned back in front, for :meth:`next_message`."""
        self.messages.extendleft(reversed(messages))
        self._held += sum(map(len, messages))

    def _consumed(self) -> None:
        if self._recv_unacked >= self._grant_at and self.status is None:
            self._maybe_grant()

    async def wait_headers(self) -> None:
        while self.headers is None and self.status is None:
            await self._wait()

    async def wait_closed(self) -> Status:
        while self.status is None:
            await self._wait()
        return self.status

    def initial_metadata(self) -> Metadata:
        return metadata_of(self.headers) if self.headers is not None else ()

    def trailing_metadata(self) -> Metadata:
        if self.trailers is None:
            return ()
        # Like grpc, keep grpc-status-details-bin among the trailers.
        return metadata_of(self.trailers)
