"""At shutdown, a client that reads nothing is cut off after a short grace, on either edge.

Its last response can never be flushed, and asyncio's close() waits for that: the
bridge stops anyway and releases the socket (edge/cut_off.py) rather than
leaving it open past its loop (an unraisable "unclosed transport" ResourceWarning).
Served by the lean edge, by the aiohttp-only edge, and by aiohttp on a connection
the lean edge handed over. A connection that has not yet said HTTP/1.1 or HTTP/2
(the aiohttp-only edge's sniffing site holds it) is closed too.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from grpc_bridge.edge import sites as edge_sites
from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.raw_http import ECHO, request
from tests.helpers.servers import RunningServer

BIG = b'{"fString": "' + b"x" * (3 << 20) + b'"}'


def server_transport(b: RunningBridge, served_by: str) -> asyncio.Transport:
    """The bridge's side of the test's one connection."""
    sites = b.server.proxy_runner.sites
    lean = [site.fast for site in sites if isinstance(site, edge_sites.FastSite)]
    if served_by == "lean":
        (stuck,) = lean[0].connections
        transport = stuck._transport
    else:
        assert not any(fast.connections for fast in lean)  # handed over, if lean at all
        server = b.server.proxy_runner.server
        assert server is not None
        (handler,) = server.connections
        transport = handler.transport
    assert transport is not None
    return transport


@pytest.mark.parametrize(
    ("fast_path", "served_by", "content_type"),
    [
        (True, "lean", "application/json"),
        (False, "aiohttp", "application/json"),
        # Not a type the lean edge serves: it hands the connection to aiohttp.
        (True, "handed_over", "application/json; charset=utf-8"),
    ],
    ids=["lean", "aiohttp", "handed_over"],
)
async def test_a_client_that_reads_nothing_is_cut_off_at_shutdown(
    upstream: RunningServer, fast_path: bool, served_by: str, content_type: str
) -> None:
    async with running_bridge(
        upstream.target,
        limits={"max_request_bytes": 8 << 20},
        listen={"fast_path": fast_path},
        shutdown={"timeout_s": 1},
    ) as b:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", b.server.proxy_port))
        _, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(request("POST", ECHO, BIG, f"Content-Type: {content_type}", json=False))
            await writer.drain()
            await asyncio.sleep(1.0)  # the response is written into full buffers
            transport = server_transport(b, served_by)
            assert transport.get_write_buffer_size() > 0
            released = transport.get_extra_info("socket")
            # The handler waits shutdown.timeout_s (1 s here) for its answer to go out.
            await asyncio.wait_for(b.server.drain_and_stop(), 20)
            assert released.fileno() == -1, "the socket is still open after the bridge stopped"
        finally:
            writer.transport.abort()


@pytest.mark.parametrize("sent", [b"", b"PRI * HTTP/2"], ids=["nothing", "part_of_h2_preface"])
@pytest.mark.parametrize("fast_path", [True, False], ids=["lean", "aiohttp"])
async def test_a_connection_not_yet_told_http1_or_http2_is_closed_at_shutdown(
    upstream: RunningServer, fast_path: bool, sent: bytes
) -> None:
    # Before its first bytes say HTTP/1.1 or HTTP/2, a connection belongs to neither
    # server: the bridge still closes it when it stops, rather than leaving the
    # socket open past its loop.
    async with running_bridge(upstream.target, listen={"fast_path": fast_path}) as b:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.server.proxy_port)
        try:
            writer.write(sent)
            await writer.drain()
            await asyncio.sleep(0.2)  # the bridge has taken the connection (and the bytes)
            await asyncio.wait_for(b.server.drain_and_stop(), 20)
            # Closed by the bridge: end of stream at once (a socket left open gives none).
            assert await asyncio.wait_for(reader.read(), 10) == b""
        finally:
            writer.transport.abort()
