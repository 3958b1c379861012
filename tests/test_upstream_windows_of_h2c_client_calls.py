"""The receive windows the upstream HTTP/2 client grants the calls of one h2c client
connection, which share one budget (upstream/client_budget.py), on a real
``Connection`` fed frames by the test.

- A stream that sits idle with its window open (a watch that sends nothing for
  minutes) takes a share of the budget, not all of it: the next call of that
  connection is granted window too.
- A call whose reader takes each small message as it comes is granted window
  once half of it is used, not once per message read (as over HTTP/1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from grpc_bridge.upstream.client_budget import CLIENT_BUDGET, ClientBudget
from grpc_bridge.upstream.h2 import frames, hpack_codec
from grpc_bridge.upstream.h2.connection import Connection
from grpc_bridge.upstream.h2.response import WINDOW_SHARES
from grpc_bridge.upstream.h2.stream import Stream
from tests.helpers.h2peer import LoopbackTransport, frame

BUFFER = 4 * 1024 * 1024  # stream_buffer_bytes (the default)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _connection() -> tuple[Connection, LoopbackTransport]:
    conn = Connection(
        max_receive_message_bytes=4 << 20,
        keepalive_time_s=0,
        keepalive_timeout_s=1,
        keepalive_without_calls=False,
    )
    transport = LoopbackTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(frame(frames.SETTINGS, 0, 0))
    return conn, transport


@contextlib.contextmanager
def calls_of(budget: ClientBudget | None) -> Iterator[None]:
    """Streams opened inside are calls of the h2c client connection ``budget`` stands for."""
    token = CLIENT_BUDGET.set(budget)
    try:
        yield
    finally:
        CLIENT_BUDGET.reset(token)


async def window_updates(transport: LoopbackTransport, stream_id: int) -> list[int]:
    """The increments of the WINDOW_UPDATEs written for ``stream_id``, in order (once the
    connection wrote what it queued: it writes once per loop iteration)."""
    await asyncio.sleep(0)
    data, out = bytes(transport.data), []
    pos = len(PREFACE) if data.startswith(PREFACE) else 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        kind, sid = data[pos + 3], int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        if kind == frames.WINDOW_UPDATE and sid == stream_id:
            out.append(int.from_bytes(data[pos + 9 : pos + 13], "big") & 0x7FFFFFFF)
        pos += 9 + length
    return out


def answer_headers(conn: Connection, stream: Stream) -> None:
    head = hpack_codec.indexed(8) + hpack_codec.content_type(b"application/grpc")
    conn.data_received(frame(frames.HEADERS, frames.END_HEADERS, stream.id, head))


async def test_an_idle_stream_leaves_window_for_the_next_call_of_its_connection() -> None:
    conn, transport = _connection()
    budget = ClientBudget()
    with calls_of(budget):
        idle = conn.open_stream(b"\x83\x86", None, False)
        download = conn.open_stream(b"\x83\x86", None, False)
    share = BUFFER // WINDOW_SHARES
    assert sum(await window_updates(transport, idle.id)) == share - frames.DEFAULT_WINDOW
    assert sum(await window_updates(transport, download.id)) == share - frames.DEFAULT_WINDOW
    assert budget.held == 2 * share <= BUFFER


async def test_a_call_read_as_it_comes_is_granted_window_in_halves_not_per_message() -> None:
    for budget in (ClientBudget(), None):
        conn, transport = _connection()
        with calls_of(budget):
            stream = conn.open_stream(b"\x83\x86", None, False)
        answer_headers(conn, stream)
        opened = len(await window_updates(transport, stream.id))
        message = b"\x00" + (100).to_bytes(4, "big") + b"m" * 100
        for _ in range(6000):
            conn.data_received(frame(frames.DATA, 0, stream.id, message))
            assert stream.take(16, 65536) == [b"m" * 100]
        grants = (await window_updates(transport, stream.id))[opened:]
        # 630,000 bytes read: a grant each time half a window was used, not 6,000 grants.
        assert 1 <= len(grants) <= 8, (budget, grants)
        assert stream.status is None  # within the windows granted


async def test_a_call_failed_by_an_oversize_prefix_counts_no_window() -> None:
    conn, _ = _connection()
    budget = ClientBudget()
    with calls_of(budget):
        stream = conn.open_stream(b"\x83\x86", None, False)
    answer_headers(conn, stream)
    # A whole small message, then a prefix announcing 100 MB (over the 4 MiB limit),
    # cut across two frames.
    conn.data_received(frame(frames.DATA, 0, stream.id, b"\x00\x00\x00\x00\x01x\x00\x05\xf5"))
    conn.data_received(frame(frames.DATA, 0, stream.id, b"\xe1\x00" + b"z" * 100))
    assert stream.status is not None
    # What the call holds for its reader (the one message), no window on top.
    assert budget.held == 1
    stream.release()
    assert budget.held == 0
