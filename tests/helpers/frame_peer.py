"""A hand-made HTTP/2 gRPC server on loopback, for upstreams that misbehave on purpose.

Frames are packed with the bridge's own ``frames`` helpers and headers with
``hpack``, so a test controls every byte the bridge's native client reads:
GOAWAY with the first SETTINGS, truncated messages, floods.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import hpack
from bridgetest.v1 import kitchen_pb2
from google.protobuf.message import Message

from grpc_bridge.upstream.h2 import frames
from tests.helpers.native_tools import grpc_message


@dataclass
class Request:
    """One request stream as the peer saw it."""

    conn: PeerConnection
    stream_id: int
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.headers.get(":path", "")

    def send_headers(self, headers: list[tuple[Any, Any]], *, end_stream: bool = False) -> None:
        self.conn.send_headers(self.stream_id, headers, end_stream=end_stream)

    def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        flags = frames.END_STREAM if end_stream else 0
        self.conn.writer.write(frames.frame(frames.DATA, flags, self.stream_id, data))

    def answer(self, message: Message, trailers: list[tuple[Any, Any]] | None = None) -> None:
        """A whole gRPC response: headers, one message, trailers (grpc-status 0 by default)."""
        self.send_headers([(":status", "200"), ("content-type", "application/grpc")])
        self.send_data(grpc_message(message))
        self.send_headers(trailers or [("grpc-status", "0")], end_stream=True)


def table_less_encoder() -> hpack.Encoder:
    """An encoder honouring the bridge's SETTINGS_HEADER_TABLE_SIZE = 0, as servers do."""
    encoder = hpack.Encoder()
    encoder.header_table_size = 0
    return encoder


@dataclass
class PeerConnection:
    index: int
    writer: asyncio.StreamWriter
    encoder: hpack.Encoder = field(default_factory=table_less_encoder)
    resets: list[tuple[int, int]] = field(default_factory=list)

    def send_headers(
        self, stream_id: int, headers: list[tuple[Any, Any]], *, end_stream: bool = False
    ) -> None:
        flags = frames.END_HEADERS | (frames.END_STREAM if end_stream else 0)
        block = self.encoder.encode(headers)
        self.writer.write(frames.frame(frames.HEADERS, flags, stream_id, block))


Handler = Callable[[Request], Awaitable[None]]


@dataclass
class Peer:
    target: str
    connections: list[PeerConnection]
    requests: list[Request]


@asynccontextmanager
async def h2_peer(
    handler: Handler,
    *,
    first_bytes: Callable[[int], bytes] = lambda index: frames.settings({}),
    read: Callable[[int], bool] = lambda index: True,
) -> AsyncIterator[Peer]:
    """A loopback HTTP/2 server: ``handler`` runs (as a task) once per complete request.

    ``first_bytes(connection_index)`` is what the server writes after the client's
    preface (its SETTINGS, and whatever a test wants in the same segment);
    ``read(connection_index)`` False makes the server stop reading after the preface.
    """
    connections: list[PeerConnection] = []
    requests: list[Request] = []
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []
    serving: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        serving.add(asyncio.current_task())  # type: ignore[arg-type]
        conn = PeerConnection(len(connections), writer)
        connections.append(conn)
        decoder = hpack.Decoder()
        partial: dict[int, tuple[dict[str, str], bytearray]] = {}
        try:
            await reader.readexactly(len(frames.PREFACE))
            writer.write(first_bytes(conn.index))
            if not read(conn.index):
                await asyncio.sleep(3600)
            while True:
                head = await reader.readexactly(9)
                high, low, kind, flags, stream_id = frames.HEADER.unpack(head)
                payload = await reader.readexactly((high << 16) | low)
                if kind == frames.SETTINGS and not flags & frames.ACK:
                    writer.write(frames.SETTINGS_ACK)
                elif kind == frames.PING and not flags & frames.ACK:
                    writer.write(frames.ping(payload, ack=True))
                elif kind == frames.RST_STREAM:
                    conn.resets.append((stream_id, frames.u32(payload)))
                    partial.pop(stream_id, None)
                elif kind == frames.HEADERS:
                    headers = {str(n): str(v) for n, v in decoder.decode(payload)}
                    partial[stream_id] = (headers, bytearray())
                elif kind == frames.DATA and stream_id in partial:
                    partial[stream_id][1].extend(payload)
                    if payload:
                        writer.write(
                            frames.window_update(0, len(payload))
                            + frames.window_update(stream_id, len(payload))
                        )
                ended = kind in (frames.HEADERS, frames.DATA) and flags & frames.END_STREAM
                if ended and stream_id in partial:
                    headers, body = partial.pop(stream_id)
                    request = Request(conn, stream_id, headers, bytes(body))
                    requests.append(request)
                    task = asyncio.create_task(handler(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Peer(f"127.0.0.1:{port}", connections, requests)
    finally:
        server.close()
        # A connection accepted just now has its serve task queued but not yet
        # run; one turn of the loop lets it register its writer.
        await asyncio.sleep(0)
        for task in [*tasks, *serving]:
            task.cancel()
        for writer in writers:
            # abort, not close: close waits to flush what the peer wrote and the
            # client never read, and a loop that ends first leaks the socket
            # (an unraisable ResourceWarning in some later test).
            writer.transport.abort()
        pending = [*tasks, *serving, *(asyncio.ensure_future(w.wait_closed()) for w in writers)]
        if pending:
            await asyncio.wait(pending, timeout=2)
        for task in pending:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so none is reported as never retrieved


async def echo_handler(request: Request) -> None:
    """Answers any unary call with the request message it got."""
    body = request.body
    message = kitchen_pb2.Kitchen.FromString(body[5:]) if len(body) >= 5 else kitchen_pb2.Kitchen()
    request.answer(message)


async def eventually(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition never held")
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def loop_errors() -> Any:
    """Collects what reaches the event loop's exception handler (exceptions that escaped)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)
