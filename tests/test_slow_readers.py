"""Clients that stop reading a stream of large messages cost the bridge a bounded number of bytes.

An endless server stream of 2 MB messages, clients on raw sockets (tiny
receive buffer) that never read: the bridge holds about
``upstreams[].stream_buffer_bytes`` plus the message in hand per client, the
upstream is paused (it stops being able to send), and a concurrent call to
the same upstream stays fast.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.helpers.h2peer import HostilePeer, descriptor_set
from tests.helpers.process import BridgeProcess, rss_bytes
from tests.helpers.raw_http import PATHS, bridge_on
from tests.helpers.servers import RunningServer, StartServer
from tests.helpers.slowclients import (
    http_post,
    read_head,
    send_until_blocked,
    stalled_client,
    websocket_open,
    websocket_text,
)
from tests.helpers.streamtools import CLIENT_STREAM, ECHO, SERVER_STREAM

MESSAGE = 2 * 1024 * 1024
BUFFER = 4 * 1024 * 1024
CLIENTS = 2
#: What one stalled client may cost: the stream's budget and the upstream's
#: window in flight, one partial message, and the message being written (parsed,
#: JSON-encoded, in the transport's buffer). Holding messages by count (32 of
#: them) would be 64 MB per client.
PER_CLIENT = BUFFER + 5 * MESSAGE
SLACK = 32 * 1024 * 1024  # the interpreter, allocator slack, the 2 MB request bodies


@asynccontextmanager
async def bridge_process(tmp_path: Path, upstream: RunningServer) -> AsyncIterator[BridgeProcess]:
    config = {
        "upstreams": [
            {
                "name": "default",
                "targets": [upstream.target],
                "stream_buffer_bytes": BUFFER,
            }
        ],
        "streams": {"idle_timeout_s": 0},
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ("serve", "--config", str(path), "--host", "127.0.0.1", "--port", "0")
    bridge = await BridgeProcess.start(*args, "--admin-port", "0", "--log-format", "json")
    await bridge.wait_for("discovered")
    try:
        yield bridge
    finally:
        await bridge.stop()


async def settled(read: Callable[[], int], *, quiet: float = 1.5, within: float = 60.0) -> int:
    """``read()`` once it stopped changing for ``quiet`` seconds."""
    loop = asyncio.get_running_loop()
    last, since = read(), loop.time()
    async with asyncio.timeout(within):
        while loop.time() - since < quiet:
            await asyncio.sleep(0.1)
            if (now := read()) != last:
                last, since = now, loop.time()
    return last


def big_tag(name: str) -> str:
    # Each reply's text is the tag: MESSAGE bytes per message.
    return name + "x" * (MESSAGE - len(name))


def request_body(tag: str) -> bytes:
    return orjson.dumps({"count": 1_000_000, "tag": tag})


def open_stalled(port: int, framing: str, tag: str) -> socket.socket:
    body = request_body(tag)
    if framing == "ndjson":
        return stalled_client(
            port, http_post(SERVER_STREAM, body, "Content-Type: application/json")
        )
    if framing == "sse":
        request = http_post(
            SERVER_STREAM, body, "Content-Type: application/json", "Accept: text/event-stream"
        )
        return stalled_client(port, request)
    sock = stalled_client(port, websocket_open(SERVER_STREAM))
    assert read_head(sock).startswith(b"HTTP/1.1 101")
    sock.sendall(websocket_text(body))
    return sock


async def check_bounded(
    tmp_path: Path, upstream: RunningServer, framing: str, clients: int
) -> None:
    async with (
        bridge_process(tmp_path, upstream) as bridge,
        aiohttp.ClientSession() as session,
    ):
        url = f"http://127.0.0.1:{bridge.proxy_port}"
        # Warm up: the first calls load what every later one shares.
        for _ in range(3):
            async with session.post(f"{url}{ECHO}", json={"fString": "warm"}) as resp:
                assert resp.status == 200
        before = rss_bytes(bridge.proc.pid)
        tags = [big_tag(f"{framing}-{n}-") for n in range(clients)]
        socks = [
            await asyncio.to_thread(open_stalled, bridge.proxy_port, framing, tag) for tag in tags
        ]
        try:
            # The upstream stops being able to send: its count of messages settles.
            sent = [await settled(lambda t=tag: upstream.test.sent.get(t, 0)) for tag in tags]
            assert all(0 < n < 20 for n in sent), sent
            grown = rss_bytes(bridge.proc.pid) - before
            assert grown < clients * PER_CLIENT + SLACK, (grown, sent)
            # Another call on the same upstream is not held up by the stalled ones.
            started = time.monotonic()
            async with session.post(f"{url}{ECHO}", json={"fString": "fast"}) as resp:
                assert resp.status == 200
                assert (await resp.json())["fString"] == "fast"
            assert time.monotonic() - started < 2.0
            # Still paused: nothing more was sent meanwhile.
            assert [upstream.test.sent.get(t, 0) for t in tags] == sent
        finally:
            for sock in socks:
                sock.close()

        # The bridge sees each client go and ends its call (499 in the request log).
        def gone(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in events if e.get("http_status") == 499]

        await bridge.wait_until(lambda events: len(gone(events)) >= clients, timeout=10)
        assert {e["path"] for e in gone(bridge.events)} == {SERVER_STREAM}


async def test_clients_that_stop_reading_ndjson_pause_the_upstream(
    tmp_path: Path, upstream: RunningServer
) -> None:
    await check_bounded(tmp_path, upstream, "ndjson", CLIENTS)


@pytest.mark.parametrize("framing", ["sse", "websocket"])
async def test_every_framing_is_bounded_for_a_client_that_stops_reading(
    tmp_path: Path, upstream: RunningServer, framing: str
) -> None:
    await check_bounded(tmp_path, upstream, framing, 1)


async def test_compressed_messages_are_held_as_they_came(
    tmp_path: Path, upstream_factory: StartServer
) -> None:
    """A window of small gzip messages is not inflated for a client that stopped reading.

    Flow control counts wire bytes: 2 MB of ``x`` is ~2 KB gzipped, so the
    upstream sends all of them at once; the bridge keeps each as it came until
    the client takes it, instead of holding count times 2 MB inflated.
    """
    count = 120
    upstream = await upstream_factory(options=(("grpc.default_compression_algorithm", 2),))
    async with bridge_process(tmp_path, upstream) as bridge:
        before = rss_bytes(bridge.proc.pid)
        tag = big_tag("gzip-")
        request = http_post(
            SERVER_STREAM,
            orjson.dumps({"count": count, "tag": tag}),
            "Content-Type: application/json",
        )
        sock = await asyncio.to_thread(stalled_client, bridge.proxy_port, request)
        try:
            await upstream.test.wait_for("completed", tag, within=30)
            await settled(lambda: rss_bytes(bridge.proc.pid) // 2**20)
            grown = rss_bytes(bridge.proc.pid) - before
            assert grown < PER_CLIENT + SLACK, grown
        finally:
            sock.close()


@pytest.mark.parametrize("path", PATHS)
async def test_an_upstream_that_stops_reading_pauses_a_request_stream(
    tmp_path: Path, path: str
) -> None:
    """The other direction: request messages are read from the client only as the
    upstream takes them, so an upstream that stopped reading pauses the client."""
    peer = await HostilePeer(reads=False).start()
    config = {
        "upstreams": [
            {
                "name": "default",
                "targets": [peer.target],
                "reflection": False,
                "descriptor_sets": [str(descriptor_set(tmp_path))],
            }
        ],
        "streams": {"idle_timeout_s": 0},
    }
    head = (
        f"POST {CLIENT_STREAM} HTTP/1.1\r\nHost: bridge\r\n"
        "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    line = orjson.dumps({"text": "y" * (256 * 1024)}) + b"\n"
    chunk = b"%x\r\n%s\r\n" % (len(line), line)
    cap = 256 * 1024 * 1024
    try:
        async with bridge_on(None, path, config=config) as bridge:
            before = rss_bytes(bridge.proc.pid)
            sent = await asyncio.to_thread(
                send_until_blocked, bridge.proxy_port, head, chunk, cap=cap, stall_s=3.0
            )
            grown = rss_bytes(bridge.proc.pid) - before
    finally:
        await peer.stop()
    # The upstream took its 64 KiB window; the client was stopped after a few
    # lines (~2 MB: socket buffers, aiohttp's read buffer, one line being read,
    # one message waiting for window), not the 256 MB it offered.
    assert 0 < peer.received <= 65535 + 5
    assert sent < 32 * 1024 * 1024, sent
    assert grown < 32 * 1024 * 1024, grown
