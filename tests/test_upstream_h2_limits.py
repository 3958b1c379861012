"""The native client's timers and send-side limits against misbehaving HTTP/2 peers.

SETTINGS never acknowledged, a drained connection whose stream never ends,
the peer's SETTINGS_MAX_HEADER_LIST_SIZE, a peer that stops reading while
calls keep starting, and TLS without ALPN h2. The peers are raw asyncio
servers or tests/helpers/h2peer.py (on ``h2``), never the client's own frames module.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from bridgetest.v1 import kitchen_pb2

from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import hpack_codec
from grpc_bridge.upstream.h2.connection import Connection
from tests.helpers.certs import issue, make_ca, write
from tests.helpers.h2peer import GOAWAY, SETTINGS, WINDOW_UPDATE, Exchange, HostilePeer, frame
from tests.helpers.native_tools import grpc_message, method, native

ECHO = method("Echo", kitchen_pb2.Kitchen)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _connection(**kwargs: float) -> Connection:
    return Connection(
        max_receive_message_bytes=4 << 20,
        keepalive_time_s=0,
        keepalive_timeout_s=20,
        keepalive_without_calls=False,
        **kwargs,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def raw_server(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    writers: list[asyncio.StreamWriter] = []
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        for writer in writers:
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        for writer in writers:
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _request_block(path: str = "/bridgetest.v1.TestService/Echo") -> bytes:
    return (
        hpack_codec.METHOD_POST
        + hpack_codec.SCHEME_HTTP
        + hpack_codec.authority("peer")
        + hpack_codec.path(path)
        + hpack_codec.content_type(b"application/grpc")
    )


async def test_settings_never_acknowledged_end_the_connection() -> None:
    async def no_ack(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(PREFACE))
        writer.write(frame(SETTINGS, 0, 0))
        while await reader.read(65536):
            pass  # reads everything, acknowledges nothing

    loop = asyncio.get_running_loop()
    async with raw_server(no_ack) as port:
        _, conn = await loop.create_connection(
            lambda: _connection(settings_timeout_s=0.3), "127.0.0.1", port
        )
        await conn.ready
        async with asyncio.timeout(5):
            await conn.closed
    assert conn.error is not None and "did not acknowledge our SETTINGS" in conn.error


async def test_a_drained_connection_is_closed_after_its_grace_even_with_a_stream_open() -> None:
    async def hang_after_goaway(ex: Exchange) -> None:
        ex.raw(frame(GOAWAY, 0, 0, struct.pack(">LL", ex.stream_id, 0)))
        ex.send_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
        # ... and never ends the stream.

    loop = asyncio.get_running_loop()
    async with HostilePeer({"hang": hang_after_goaway}) as peer:
        host, port = peer.target.rsplit(":", 1)
        _, conn = await loop.create_connection(
            lambda: _connection(drain_grace_s=0.5), host, int(port)
        )
        await conn.ready
        data = grpc_message(kitchen_pb2.Kitchen(f_string="hang"))
        stream = conn.open_stream(_request_block(), data, True)
        async with asyncio.timeout(5):
            status = await stream.wait_closed()
            await conn.closed
    assert status.code == Code.UNAVAILABLE and "still open" in status.message, status


async def test_request_headers_over_the_peers_max_header_list_size_fail_the_call() -> None:
    async def echo(ex: Exchange) -> None:
        ex.respond(kitchen_pb2.Kitchen.FromString(ex.body[5:]))

    async with (
        HostilePeer({"": echo}, settings={0x6: 1000}) as peer,
        native(peer.target, pool_size=1) as invoker,
    ):
        answer = await invoker.unary(ECHO, kitchen_pb2.Kitchen(), metadata=[], timeout=5)
        assert answer.response == kitchen_pb2.Kitchen()
        with pytest.raises(UpstreamError) as caught:
            await invoker.unary(
                ECHO, kitchen_pb2.Kitchen(), metadata=[("x-big", "v" * 600)], timeout=5
            )
    assert caught.value.code == Code.INTERNAL
    assert "SETTINGS_MAX_HEADER_LIST_SIZE (1000)" in caught.value.message


async def test_new_calls_wait_while_the_upstream_reads_nothing() -> None:
    """Huge windows granted, then deafness: calls must not pile up in the socket buffer."""
    peers: list[asyncio.StreamWriter] = []

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(PREFACE))
        big = struct.pack(">HL", 0x4, 2**31 - 1)  # SETTINGS_INITIAL_WINDOW_SIZE
        writer.write(
            frame(SETTINGS, 0, 0, big)
            + frame(SETTINGS, 1, 0)
            + frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", 2**31 - 1 - 65535))
        )
        peers.append(writer)
        await asyncio.sleep(30)  # reads nothing more

    request = kitchen_pb2.Kitchen(f_bytes=b"x" * (1 << 20))
    async with (
        raw_server(deaf) as port,
        native(f"127.0.0.1:{port}", pool_size=1, max_send_message_bytes=2 << 20) as invoker,
    ):
        calls = [
            asyncio.create_task(invoker.unary(ECHO, request, metadata=[], timeout=2))
            for _ in range(40)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        slot = invoker._pool._slots[0]
        assert slot.connection is not None and slot.connection._transport is not None
        buffered = slot.connection._transport.get_write_buffer_size()
    codes = {r.code for r in results if isinstance(r, UpstreamError)}
    assert codes == {Code.DEADLINE_EXCEEDED}, results[:3]
    # Without the wait every call's megabyte would sit in the buffer (40 MiB).
    assert buffered < 8 << 20, buffered


async def test_tls_without_alpn_h2_is_refused(tmp_path: Path) -> None:
    ca = make_ca()
    pair = issue(ca, "localhost", ips=("127.0.0.1",))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(
        write(tmp_path, "server.pem", pair.cert), write(tmp_path, "server.key", pair.key)
    )
    server_context.set_alpn_protocols(["http/1.1"])

    async def http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)

    client_context = ssl.create_default_context(cadata=ca.pem.decode())
    client_context.set_alpn_protocols(["h2"])
    loop = asyncio.get_running_loop()
    async with raw_server(http1, server_context) as port:
        _, conn = await loop.create_connection(
            _connection, "127.0.0.1", port, ssl=client_context, server_hostname="127.0.0.1"
        )
        with pytest.raises(Exception, match="not 'h2'"):
            await conn.ready
    assert conn.error is not None and "negotiated ALPN" in conn.error
