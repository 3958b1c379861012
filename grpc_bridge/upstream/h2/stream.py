"""One gRPC call on an HTTP/2 stream: its messages, metadata and final status.

The connection feeds it frames (:meth:`Stream.on_headers`, :meth:`Stream.on_data`,
:meth:`Stream.on_reset`, :meth:`Stream.fail`); the call layer awaits
:meth:`next_message`, :meth:`wait_headers` and :meth:`wait_closed`. Everything
runs on the event loop thread, so a frame that completes a message wakes the
reader directly, with no hand-off.

The final status is read as :mod:`.grpc_status` says; compressed messages
are inflated by :mod:`.inflate`, the large ones on a worker thread (the
messages after one wait for it, so their order is kept).
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
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

__all__ = ["Metadata", "Status", "Stream", "StreamOwner", "metadata_of", "wake_all"]

#: A gRPC message's prefix: the compressed flag, then the length (big-endian).
_PREFIX = struct.Struct(">BI").unpack_from

#: Unread messages above which the stream stops granting flow-control window
#: (the upstream then waits: backpressure for slow HTTP clients).
_HIGH_WATER = 32


class StreamOwner(Protocol):
    """What a stream needs of its connection (the connection imports this module, not back)."""

    loop: asyncio.AbstractEventLoop
    stream_window: int
    max_receive_message_bytes: int

    def reset(self, stream: Stream, code: int, status: Status | None = None) -> None: ...

    def grant(self, stream: Stream, increment: int) -> None: ...

    def forget(self, stream: Stream) -> None: ...


def wake_all(waiters: list[asyncio.Future[None]]) -> None:
    """Resolve every waiter still pending (the ones cancelled meanwhile are skipped)."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


#: Stands in the deferred list for a DATA frame's END_STREAM.
_END_OF_DATA = Block((), 0, None, None, False, None, None)
_NOTHING_DEFERRED: list[tuple[Block, bool]] = []


class Stream:
    """See the module docstring. Created by :meth:`Connection.open_stream`."""

    __slots__ = (
        "_buffer",
        "_deferred",
        "_encoding",
        "_grant_at",
        "_inflating",
        "_max_receive",
        "_recv_unacked",
        "_waiters",
        "connection",
        "headers",
        "id",
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
        self.messages: deque[bytes] = deque()
        self.local_closed = False
        self.remote_closed = False
        #: Request bytes waiting for flow-control window, and whether END_STREAM follows them.
        self.pending: deque[memoryview] = deque()
        self.pending_end = False
        self._buffer = bytearray()
        #: A large message is being inflated on a worker thread: what follows waits.
        self._inflating = False
        # Shared and never appended to: a list of its own comes with the first inflation.
        self._deferred = _NOTHING_DEFERRED
        self._encoding: str | None = None
        self._max_receive = connection.max_receive_message_bytes
        self._recv_unacked = 0
        # Window is handed back in halves: a unary response (far smaller) then
        # costs no WINDOW_UPDATE at all, and the upstream never waits on it.
        self._grant_at = connection.stream_window // 2
        self._waiters: list[asyncio.Future[None]] = []

    # -- fed by the connection ---------------------------------------------------

    def on_headers(self, block: Block, end_stream: bool) -> None:
        if self.status is not None:
            return
        if self._inflating:
            self._deferred.append((block, end_stream))
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
                else:
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
        if self._inflating:
            buffer += payload
            if end_stream:
                self._deferred.append((_END_OF_DATA, True))
            return
        if buffer:
            buffer += payload
            self._parse(buffer)
        elif payload:
            # The common case, a frame holding whole messages: no copy into the buffer.
            rest = self._parse(payload)
            if rest < len(payload):
                buffer += payload[rest:]
        if self._inflating:
            if end_stream:
                self._deferred.append((_END_OF_DATA, True))
            return
        if end_stream:
            self.remote_closed = True
        if end_stream and self.status is None:
            self._finish(Status(Code.INTERNAL, "upstream ended the call without trailers"))
            return
        if self._recv_unacked >= self._grant_at and len(self.messages) < _HIGH_WATER:
            self._grant()
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
        append = self.messages.append
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
                if length > inflate.OFF_LOOP_BYTES:
                    # Milliseconds of CPU: on a worker thread; the rest waits in the buffer.
                    self._inflate_off_loop(message)
                    break
                try:
                    message = inflate.decompress(self._encoding, message, self._max_receive)
                except Exception as exc:
                    self._inflate_failed(exc)
                    return end
            append(message)
        if isinstance(data, bytearray):
            del data[:pos]
            return 0
        return pos

    def _inflate_off_loop(self, message: bytes) -> None:
        self._inflating = True
        if self._deferred is _NOTHING_DEFERRED:
            self._deferred = []
        future = self.connection.loop.run_in_executor(
            None, inflate.decompress, self._encoding, message, self._max_receive
        )
        future.add_done_callback(self._inflated)

    def _inflated(self, future: asyncio.Future[bytes]) -> None:
        self._inflating = False
        if self.status is not None or future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._inflate_failed(exc)
            return
        self.messages.append(future.result())
        buffer = self._buffer
        if buffer:
            self._parse(buffer)
        # What arrived meanwhile, in order, until the next large message (if any).
        while self._deferred and not self._inflating and self.status is None:
            block, end_stream = self._deferred.pop(0)
            if block is _END_OF_DATA:
                self.on_data(b"", True, 0)
            else:
                self.on_headers(block, end_stream)
        self._wake()

    def _inflate_failed(self, exc: BaseException) -> None:
        if isinstance(exc, inflate.TooBig):
            status = Status(
                Code.RESOURCE_EXHAUSTED,
                "upstream sent a compressed message that inflates past "
                f"max_receive_message_bytes ({self._max_receive})",
            )
        else:
            status = Status(Code.INTERNAL, f"cannot decompress a message: {exc}")
        self.connection.reset(self, frames.CANCEL, status)

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

    def _grant(self) -> None:
        increment, self._recv_unacked = self._recv_unacked, 0
        self.connection.grant(self, increment)

    # -- awaited by the call layer -------------------------------------------------

    async def _wait(self) -> None:
        waiter = self.connection.loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def next_message(self) -> bytes | None:
        """The next whole message; None once the call ended (read ``status`` then)."""
        while True:
            if self.messages:
                message = self.messages.popleft()
                self.consumed()
                return message
            if self.status is not None:
                return None
            await self._wait()

    def consumed(self) -> None:
        """The reader took messages from ``messages`` itself: grant window if it is due."""
        if (
            self._recv_unacked >= self._grant_at
            and self.status is None
            and len(self.messages) < _HIGH_WATER
        ):
            self._grant()

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
