"""A compressed stream's encoder costs a bounded amount of memory, whatever the level.

docs/security.md budgets a stalled client at about ``stream_buffer_bytes`` plus
two messages. The client picks the coding (``Accept-Encoding: zstd``) and so
which encoder every one of its streams holds; at the highest level settings
allow (``compression.zstd_level: 19``) a zstd stream encoder with no size hint
allocates ~80 MB as its first message is flushed, for a stream of 30-byte
messages.
"""

from __future__ import annotations

import asyncio

from tests.helpers.process import rss_bytes
from tests.helpers.raw_http import bridge_process
from tests.helpers.servers import RunningServer

STREAMS = 2
#: Two slow streams: one message, then one a minute.
TARGET = "/bridgetest.v1.TestService/ServerStream?count=5&interval=60s&tag=z"


async def open_stream(port: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {TARGET} HTTP/1.1\r\nHost: b\r\nAccept-Encoding: zstd\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    assert b"content-encoding: zstd" in head.lower(), head
    await asyncio.wait_for(reader.read(1), 10)  # the first message is out: the encoder ran
    return writer


async def test_zstd_streams_at_the_highest_level_cost_little_memory(
    upstream: RunningServer,
) -> None:
    async with bridge_process(upstream.target, GRPC_BRIDGE_COMPRESSION__ZSTD_LEVEL="19") as bp:
        first = await open_stream(bp.proxy_port)  # warm-up: imports, first allocations
        before = rss_bytes(bp.proc.pid)
        writers = [await open_stream(bp.proxy_port) for _ in range(STREAMS)]
        after = rss_bytes(bp.proc.pid)
        for writer in [first, *writers]:
            writer.close()
    # gzip's stream encoder is ~0.1 MB, zstd's at level 3 ~0.7 MB; 8 MB each is generous.
    assert after - before < STREAMS * 8 * 2**20, (before, after)
