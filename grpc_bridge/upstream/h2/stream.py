"""One gRPC call on an HTTP/2 stream: its messages, metadata and final status.

The connection feeds it frames (:meth:`Stream.on_headers`, :meth:`Stream.on_data`,
:meth:`Stream.on_reset`, :meth:`Stream.fail`); the call layer awaits
:meth:`next_message`, :meth:`wait_headers` and :meth:`wait_closed`. Everything
runs on the event loop thread, so a frame that completes a message wakes the
reader directly, with no hand-off.

The final status follows the gRPC HTTP/2 protocol: ``grpc-status`` and
``grpc-message`` from the trailers (or from a Trailers-Only response); an HTTP
status other than 200 without them is mapped as in
doc/http-grpc-status-mapping.md; a stream reset maps by its error code.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import struct
import zlib
from collections import deque
from typing import NamedTuple, Protocol
from urllib.parse import unquote

from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.fields import Block, Header

Metadata = tuple[tuple[str, str | bytes], ...]

#: A gRPC message's prefix: the compressed flag, then the length (big-endian).
_PREFIX = struct.Struct(">BI").unpack_from

_HTTP_TO_CODE = {
    400: Code.INTERNAL,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.UNIMPLEMENTED,
    429: Code.UNAVAILABLE,
    502: Code.UNAVAILABLE,
    503: Code.UNAVAILABLE,
    504: Code.UNAVAILABLE,
}

_RESET_TO_CODE = {
    frames.NO_ERROR: Code.INTERNAL,
    frames.REFUSED_STREAM: Code.UNAVAILABLE,
    frames.CANCEL: Code.CANCELLED,
    frames.ENHANCE_YOUR_CALM: Code.RESOURCE_EXHAUSTED,
    frames.INADEQUATE_SECURITY: Code.PERMISSION_DENIED,
}

# Headers that describe the transport, not the application: never handed on as metadata.
_RESERVED = frozenset(
    {
        "content-type",
        "grpc-status",
        "grpc-message",
        "grpc-encoding",
        "grpc-accept-encoding",
        "te",
        "content-length",
    }
)

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


class Status(NamedTuple):
    code: int
    message: str
    details_bin: bytes | None = None
    #: The upstream never saw the request (GOAWAY above it, REFUSED_STREAM, no
    #: connection): safe to send again whatever the method does.
    unprocessed: bool = False


def metadata_of(headers: tuple[Header, ...]) -> Metadata:
    """Application metadata of a header block; ``-bin`` values base64-decoded to bytes."""
    out: list[tuple[str, str | bytes]] = []
    for name, value in headers:
        if name.startswith(":") or name in _RESERVED:
            continue
        if name.endswith("-bin"):
            try:
                out.append((name, base64.b64decode(value + "=" * (-len(value) % 4))))
            except (binascii.Error, ValueError):
                continue
        else:
            out.append((name, value))
    return tuple(out)


def _http_code(http_status: str | None) -> int:
    if http_status is None:
        return Code.INTERNAL  # as grpc-go: a response without :status
    return _HTTP_TO_CODE.get(int(http_status) if http_status.isdigit() else 0, Code.UNKNOWN)


def _not_grpc(block: Block) -> Status:
    """A response that is not gRPC (a proxy's page, a web server): mapped like grpc-go does."""
    http_status = block.status
    what = (
        f"content-type {block.content_type!r}"
        if block.content_type is not None
        else "no content-type"
    )
    return Status(
        _http_code(http_status),
        f"upstream answered HTTP status {http_status} with {what}, not application/grpc",
    )


def _status_of(headers: tuple[Header, ...], http_status: str | None) -> Status:
    grpc_status = message = details = None
    for name, value in headers:
        if name == "grpc-status":
            grpc_status = value
        elif name == "grpc-message":
            message = value
        elif name == "grpc-status-details-bin":
            details = value
    if grpc_status is None:
        if http_status is not None and http_status != "200":
            return Status(
                _http_code(http_status),
                f"upstream answered HTTP status {http_status} without a gRPC status",
            )
        return Status(Code.UNKNOWN, "upstream ended the call without a grpc-status")
    try:
        code: int = int(grpc_status)
    except ValueError:
        return Status(Code.UNKNOWN, f"upstream sent an invalid grpc-status {grpc_status!r}")
    if not 0 <= code <= 16:
        code = Code.UNKNOWN
    details_bin = None
    if details is not None:
        try:
            details_bin = base64.b64decode(details + "=" * (-len(details) % 4))
        except (binascii.Error, ValueError):
            details_bin = None
    return Status(code, unquote(message, errors="replace") if message else "", details_bin)


class _TooBig(Exception):
    pass


def _decompress(encoding: str | None, data: bytes, limit: int) -> bytes:
    """The message inflated, never past ``limit`` bytes (a small message can inflate to GBs)."""
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=31)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    else:
        raise ValueError(f"compressed message with unsupported grpc-encoding {encoding!r}")
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit:
        raise _TooBig(len(out))
    if not inflater.eof or inflater.unused_data:
        raise ValueError("truncated or trailing data in a compressed message")
    return out


def wake_all(waiters: list[asyncio.Future[None]]) -> None:
    """Resolve every waiter still pending (the ones cancelled meanwhile are skipped)."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class Stream:
    """See the module docstring. Created by :meth:`Connection.open_stream`."""

    __slots__ = (
        "_buffer",
        "_encoding",
        "_grant_at",
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
                self.connection.reset(self, frames.CANCEL, _status_of((), http_status))
                return
            if not block.grpc:
                self.connection.reset(self, frames.CANCEL, _not_grpc(block))
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
                self._finish(_not_grpc(block))
            else:
                self._finish(_status_of(headers, http_status))
        elif self._buffer:
            self._finish(Status(Code.INTERNAL, "upstream ended the call inside a message"))
        else:
            self._finish(_status_of(headers, None))

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
                try:
                    message = _decompress(self._encoding, message, self._max_receive)
                except _TooBig:
                    self.connection.reset(
                        self,
                        frames.CANCEL,
                        Status(
                            Code.RESOURCE_EXHAUSTED,
                            "upstream sent a compressed message that inflates past "
                            f"max_receive_message_bytes ({self._max_receive})",
                        ),
                    )
                    return end
                except (ValueError, OSError, EOFError, zlib.error) as exc:
                    self.connection.reset(
                        self,
                        frames.CANCEL,
                        Status(Code.INTERNAL, f"cannot decompress a message: {exc}"),
                    )
                    return end
            append(message)
        if isinstance(data, bytearray):
            del data[:pos]
            return 0
        return pos

    def on_reset(self, code: int) -> None:
        self.remote_closed = self.local_closed = True
        if self.status is None:
            self._finish(
                Status(
                    _RESET_TO_CODE.get(code, Code.INTERNAL),
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
