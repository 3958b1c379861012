"""Any bytes an upstream sends: the native client never raises, never hangs, ends every call.

Hypothesis builds sequences of HTTP/2 frames, some well-formed (response
headers, gRPC messages, settings, window updates), most not, and feeds them to
a real :class:`Connection` in arbitrary chunks. ``data_received`` must never
raise, the loop must come back (slices end), and once the connection is gone
every stream it opened has a final status.
"""

from __future__ import annotations

import asyncio
import os
import struct

import hpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.connection import Connection
from tests.helpers.h2peer import LoopbackTransport, frame


def _blocks() -> list[bytes]:
    encoder = hpack.Encoder()
    encoder.header_table_size = 0
    head = [(":status", "200"), ("content-type", "application/grpc")]
    return [
        encoder.encode(head),
        encoder.encode([("grpc-status", "0")]),
        encoder.encode([("grpc-status", "13"), ("grpc-message", "m%20x")]),
        encoder.encode([(":status", "503")]),
        encoder.encode([(":status", "100")]),
        encoder.encode([(":status", "200"), ("content-type", "text/html")]),
        encoder.encode([(":status", "200"), (":path", "/")]),
        encoder.encode([("connection", "close")]),
        b"\x3f\xe1\x1f\x88",  # table size update above 0
        b"\x40\x01a\x01b\xbe",  # insert, then reference it
        b"\xff\xff\xff\xff",  # an index that never ends
    ]


BLOCKS = _blocks()
MESSAGE = b"\x00\x00\x00\x00\x03abc"

payloads = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(BLOCKS),
    st.sampled_from([MESSAGE, MESSAGE * 3, MESSAGE[:4], b"\x01\x00\x00\x00\x03abc"]),
    st.builds(lambda k, v: struct.pack(">HL", k, v), st.integers(0, 9), st.integers(0, 2**32 - 1)),
    st.builds(lambda v: struct.pack(">L", v), st.integers(0, 2**32 - 1)),
    st.builds(lambda a, b: struct.pack(">LL", a, b), st.integers(0, 7), st.integers(0, 13)),
)
frame_strategy = st.builds(
    frame,
    st.integers(0, 11),
    st.sampled_from([0, 1, 4, 5, 8, 0x20, 0x25, 0xFF]),
    st.sampled_from([0, 1, 3, 5, 2, 7, 0x7FFFFFFF]),
    payloads,
)
SETTINGS = frame(4, 0, 0)


async def _feed(data: bytes, cuts: list[int]) -> None:
    conn = Connection(
        max_receive_message_bytes=1024,
        keepalive_time_s=0,
        keepalive_timeout_s=1,
        keepalive_without_calls=False,
    )
    transport = LoopbackTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(SETTINGS)
    streams = [conn.open_stream(b"\x83\x86", MESSAGE, True) for _ in range(3)]
    streams.append(conn.open_stream(b"\x83\x86", None, False))
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        if start < cut:
            conn.data_received(data[start:cut])  # raises: the test fails
            start = cut
    for _ in range(1000):
        if not conn._slicing:
            break
        await asyncio.sleep(0)
    assert not conn._slicing, "a slice never ended"
    # INTERNAL_ERROR is the catch-all for an exception inside the client: a bug.
    assert conn.error_code != frames.INTERNAL_ERROR, conn.error
    conn.abort("test over")
    await asyncio.sleep(0)
    for stream in streams:
        assert stream.status is not None, stream.id
        assert isinstance(stream.status.code, int)


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(frame_strategy, max_size=40), st.lists(st.integers(0, 2000), max_size=6))
def test_arbitrary_frames_never_escape_and_every_call_ends(
    frame_list: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(frame_list)
    asyncio.run(asyncio.wait_for(_feed(data, [c for c in cuts if c < len(data)]), 5))
