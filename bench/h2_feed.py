"""Micro-benchmark of the native client's receive path: canned unary responses fed to a Connection.

Each iteration opens a stream and feeds the bytes a grpc server answers a unary
call with (HEADERS, one DATA, trailers; the blocks the cache serves) in one
``data_received``, the way the bench's unary case reaches
``data_received -> receive -> the call's on_headers/on_data``.

    python bench/h2_feed.py [iterations]
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import hpack

from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.connection import Connection


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _responses(count: int) -> list[bytes]:
    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # what the client's SETTINGS ask for
    fields = [(":status", "200"), ("content-type", "application/grpc")]
    first = encoder.encode(fields)  # carries the table size update, as RFC 7541 §4.2 asks
    head = encoder.encode(fields)
    tail = encoder.encode([("grpc-status", "0"), ("grpc-message", "")])
    message = b"\x00" + (20).to_bytes(4, "big") + b"x" * 20
    out = []
    for index in range(count):
        sid = 1 + 2 * index
        out.append(
            frames.frame(frames.HEADERS, frames.END_HEADERS, sid, first if index == 0 else head)
            + frames.frame(frames.DATA, 0, sid, message)
            + frames.frame(frames.HEADERS, frames.END_HEADERS | frames.END_STREAM, sid, tail)
        )
    return out


async def main(count: int) -> None:
    conn = Connection(
        max_receive_message_bytes=4 << 20,
        keepalive_time_s=0,
        keepalive_timeout_s=20,
        keepalive_without_calls=False,
    )
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    conn.data_received(frames.settings({}))
    responses = _responses(count)
    block = b"\x83\x86"
    best = float("inf")
    for _ in range(9):
        conn._next_id = 1
        start = time.process_time()
        for data in responses:
            stream = conn.open_stream(block, b"\x00\x00\x00\x00\x00", True)
            conn.data_received(data)
            assert stream.status is not None and stream.status.code == 0, stream.status
        best = min(best, time.process_time() - start)
        await asyncio.sleep(0)
    print(
        f"{count} responses: best of 9 (CPU time) {best * 1000:.1f} ms, "
        f"{best / count * 1e6:.2f} us each"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
