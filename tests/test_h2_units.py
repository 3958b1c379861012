"""Pieces of the native HTTP/2 client that need no server: HPACK, frames, timeouts."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import hpack
import pytest

from grpc_bridge.status import Code
from grpc_bridge.upstream import grpc_request
from grpc_bridge.upstream.grpc_request import grpc_timeout, metadata_block
from grpc_bridge.upstream.h2 import frames, hpack_codec, inflate
from grpc_bridge.upstream.h2.connection import MAX_FRAME, STREAM_WINDOW, Connection
from grpc_bridge.upstream.h2.grpc_status import metadata_of, status_of
from grpc_bridge.upstream.h2.stream import Stream
from tests.helpers.h2peer import LoopbackTransport, frame


def test_request_fields_decode_with_a_standard_decoder() -> None:
    block = (
        hpack_codec.METHOD_POST
        + hpack_codec.SCHEME_HTTP
        + hpack_codec.path("/pkg.Service/Method")
        + hpack_codec.authority("upstream.example:50051")
        + hpack_codec.content_type(b"application/grpc")
        + hpack_codec.literal(b"te", b"trailers")
        + hpack_codec.literal(b"x-long", b"v" * 300)  # a length past the 7-bit prefix
    )
    assert hpack.Decoder().decode(block) == [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/pkg.Service/Method"),
        (":authority", "upstream.example:50051"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("x-long", "v" * 300),
    ]


@pytest.mark.parametrize("huffman", [True, False])
def test_a_server_ignoring_our_table_size_of_zero_is_a_decoding_error(huffman: bool) -> None:
    """RFC 7541 §4.4/§6.3: its insert is evicted at once, so the reference to it fails."""
    encoder = hpack.Encoder()  # keeps the default 4096-byte table
    decoder = hpack_codec.HeaderDecoder(64 * 1024)
    headers = [(":status", "200"), ("x-value", "a")]
    assert list(decoder.decode(encoder.encode(headers, huffman=huffman)).headers) == headers
    with pytest.raises(hpack.HPACKError):
        decoder.decode(encoder.encode(headers, huffman=huffman))


def test_a_table_size_update_above_zero_is_a_decoding_error() -> None:
    decoder = hpack_codec.HeaderDecoder(64 * 1024)
    with pytest.raises(hpack.HPACKError):
        decoder.decode(b"\x3f\xe1\x1f" + b"\x88")  # size update to 4096, then :status 200


def test_the_hpack_bomb_stops_at_the_header_list_limit() -> None:
    """One 4,000-byte value, then index 62 again and again: refused at the first reference."""
    insert = b"\x40\x05x-big\x7f\xa1\x1e" + b"v" * 4000
    decoder = hpack_codec.HeaderDecoder(64 * 1024)
    with pytest.raises(hpack.HPACKError):
        decoder.decode(b"\x88" + insert + b"\xbe" * 10_000)
    with pytest.raises(hpack_codec.HeaderListTooLarge):
        decoder.decode(b"\x88" + insert + b"\xbe" * 100_000)
    with pytest.raises(hpack_codec.HeaderListTooLarge):
        # Literal fields only (no table): over the limit, refused without decoding it all.
        decoder.decode(b"\x88" + hpack_codec.literal(b"a", b"v" * 80_000))


def test_cached_decoding_of_a_server_without_a_table() -> None:
    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # what SETTINGS_HEADER_TABLE_SIZE = 0 asks for
    decoder = hpack_codec.HeaderDecoder(64 * 1024)
    first = encoder.encode([(":status", "200"), ("grpc-status", "0")])
    second = encoder.encode([(":status", "200"), ("grpc-status", "0")])
    assert first != second  # the first carries the table size update
    for block in (first, second, second, second):
        assert decoder.decode(block).headers == ((":status", "200"), ("grpc-status", "0"))


@pytest.mark.parametrize(
    ("seconds", "value"),
    [
        (0.0001, b"1m"),
        (0.2, b"200m"),
        (30, b"30000m"),
        (99_999.9, b"99999900m"),
        (99_999.9999, b"100000S"),
        (1e6, b"1000000S"),
    ],
)
def test_grpc_timeout_rounds_up_within_eight_digits(seconds: float, value: bytes) -> None:
    assert grpc_timeout(seconds) == value


def test_metadata_fields_read_the_same_however_often_they_are_sent() -> None:
    # Encoded fields are kept by their entry: the thousandth block of the same entries,
    # a long value (never kept) and the entries after the memo was emptied all decode
    # to what was sent.
    entries: list[tuple[str, str | bytes]] = [
        ("x-forwarded-for", "127.0.0.1"),
        ("trace-bin", b"\x00\xff\x10"),
        ("token", "t" * 1000),
    ]
    expected = [("x-forwarded-for", "127.0.0.1"), ("trace-bin", "AP8Q"), ("token", "t" * 1000)]
    for round_ in range(1500):
        metadata = [*entries, ("x-seq", str(round_))]
        block = metadata_block(metadata)
        decoded = hpack.Decoder().decode(block)
        assert decoded == [*expected, ("x-seq", str(round_))]


def test_metadata_fields_kept_are_short_however_long_their_names() -> None:
    # A client names its headers (limits.max_metadata_bytes: 8 KiB a name): kept
    # by their entry, 512 of them could hold ~8 MiB of names and their fields.
    for i in range(600):
        block = metadata_block([(f"x-{i:04d}-" + "n" * 8000, "v")])
        assert hpack.Decoder().decode(block) == [(f"x-{i:04d}-" + "n" * 8000, "v")]
    kept = grpc_request._FIELDS
    assert all(len(name) + len(value) <= 256 for name, value in kept), len(kept)


def test_padding_is_removed_and_bad_padding_refused() -> None:
    assert frames.unpad(b"\x02abc\x00\x00", frames.PADDED) == b"abc"
    assert frames.unpad(b"abc", 0) == b"abc"
    assert frames.unpad(b"\x05ab", frames.PADDED) is None
    assert frames.unpad(b"", frames.PADDED) is None


async def test_data_past_the_connection_window_is_a_flow_control_error() -> None:
    """Each stream within its 4 MiB, together past the 16 MiB granted: RFC 9113 §6.9.1."""
    conn = Connection(
        max_receive_message_bytes=8 << 20,
        keepalive_time_s=0,
        keepalive_timeout_s=1,
        keepalive_without_calls=False,
    )
    conn.connection_made(LoopbackTransport(conn))  # type: ignore[arg-type]
    conn.data_received(frame(frames.SETTINGS, 0, 0))
    head = hpack_codec.indexed(8) + hpack_codec.content_type(b"application/grpc")
    streams = [conn.open_stream(b"\x83\x86", None, False) for _ in range(5)]
    body = b"\x00\x00\x40\x00\x00" + b"x" * (STREAM_WINDOW - 5)  # one unfinished message
    chunk = MAX_FRAME
    data = b"".join(
        frame(frames.HEADERS, frames.END_HEADERS, s.id, head)
        + b"".join(
            frame(frames.DATA, 0, s.id, body[i : i + chunk]) for i in range(0, len(body), chunk)
        )
        for s in streams[:4]
    )
    data += frame(frames.HEADERS, frames.END_HEADERS, streams[4].id, head)
    conn.data_received(data + frame(frames.DATA, 0, streams[4].id, b"\x00"))
    assert conn.error_code == frames.FLOW_CONTROL_ERROR, conn.error
    assert conn.error is not None and "connection window" in conn.error
    await asyncio.sleep(0)


class _CountingExecutor(ThreadPoolExecutor):
    """A real worker thread that counts what it was given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def _gzip_stream(conn: Connection, *messages: tuple[int, bytes], trailers: bool) -> Stream:
    """A stream that received ``messages`` (compressed flag, bytes) with grpc-encoding gzip."""
    conn.connection_made(LoopbackTransport(conn))  # type: ignore[arg-type]
    conn.data_received(frame(frames.SETTINGS, 0, 0))
    stream = conn.open_stream(b"\x83\x86", None, False)
    head = (
        hpack_codec.indexed(8)
        + hpack_codec.content_type(b"application/grpc")
        + hpack_codec.literal(b"grpc-encoding", b"gzip")
    )
    body = b"".join(bytes([flag]) + len(m).to_bytes(4, "big") + m for flag, m in messages)
    data = frame(frames.HEADERS, frames.END_HEADERS, stream.id, head)
    # In 16 KiB frames, as a server sends within the 64 KiB window a stream starts with
    # (each grant takes effect as it is queued, before the next frame is read).
    data += b"".join(
        frame(frames.DATA, 0, stream.id, body[i : i + 16384]) for i in range(0, len(body), 16384)
    )
    if trailers:
        tail = hpack_codec.literal(b"grpc-status", b"0")
        data += frame(frames.HEADERS, frames.END_HEADERS | frames.END_STREAM, stream.id, tail)
    conn.data_received(data)
    return stream


def _connection() -> Connection:
    return Connection(
        max_receive_message_bytes=4 << 20,
        keepalive_time_s=0,
        keepalive_timeout_s=1,
        keepalive_without_calls=False,
    )


async def test_compressed_messages_wait_as_sent_and_large_ones_inflate_off_the_loop_in_order() -> (
    None
):
    executor = _CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    small = gzip.compress(b"a" * 1_000_000)  # 1 MB inflated, ~1 KB held
    large_raw = os.urandom(100_000)
    large = gzip.compress(large_raw)
    assert len(small) < 4096 and len(large) > inflate.OFF_LOOP_BYTES
    conn = _connection()
    messages = ((1, small), (0, b"plain"), (1, large), (0, b"after"))
    stream = _gzip_stream(conn, *messages, trailers=True)
    # Held as they came: what flow control counted, not what they inflate to.
    assert [len(m) for m in stream.messages] == [len(small), 5, len(large), 5]
    # The batch path never waits: it stops before the large one, leaving it to the awaited one.
    assert stream.take(10, 1 << 20) == [b"a" * 1_000_000, b"plain"]
    assert stream.take(10, 1 << 20) == []
    assert executor.submitted == 0
    assert await stream.next_message() == large_raw
    assert executor.submitted == 1
    assert stream.take(10, 1 << 20) == [b"after"]
    assert await stream.next_message() is None
    assert stream.status is not None and stream.status.code == Code.OK
    executor.shutdown()


async def test_a_message_that_does_not_inflate_fails_the_call_even_after_ok_trailers() -> None:
    stream = _gzip_stream(_connection(), (1, b"not gzip at all"), trailers=True)
    assert stream.status is not None and stream.status.code == Code.OK
    assert await stream.next_message() is None
    assert stream.status.code == Code.INTERNAL
    assert "cannot decompress a message" in stream.status.message


async def test_a_batch_of_compressed_messages_is_bounded_by_inflated_bytes() -> None:
    """Three ~100-byte gzip messages of 100 KB each: a 64 KiB batch takes one at a time."""
    inflated = b"z" * 100_000
    small = gzip.compress(inflated)
    stream = _gzip_stream(_connection(), (1, small), (1, small), (0, b"plain"), trailers=True)
    assert stream.take(10, 64 * 1024) == [inflated]
    assert stream.take(10, 64 * 1024) == [inflated]
    assert stream.take(10, 64 * 1024) == [b"plain"]
    assert await stream.next_message() is None


async def test_initial_window_entries_of_one_settings_frame_move_streams_by_the_last() -> None:
    conn = _connection()
    conn.connection_made(LoopbackTransport(conn))  # type: ignore[arg-type]
    conn.data_received(frame(frames.SETTINGS, 0, 0))
    stream = conn.open_stream(b"\x83\x86", None, False)
    assert conn.streams[stream.id].send_window == frames.DEFAULT_WINDOW
    entries = b"".join(
        frames.SETTINGS_INITIAL_WINDOW_SIZE.to_bytes(2, "big") + value.to_bytes(4, "big")
        for value in (1, 2**31 - 1, 100_000)
    )
    conn.data_received(frame(frames.SETTINGS, 0, 0, entries))
    assert conn.error is None
    assert conn.streams[stream.id].send_window == 100_000
    await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ((("grpc-status", "0"),), Code.OK, ""),
        ((("grpc-status", "5"),), Code.NOT_FOUND, ""),
        ((("grpc-status", "99"),), Code.UNKNOWN, ""),
        ((("grpc-status", "+0"),), Code.UNKNOWN, "invalid grpc-status"),
        ((("grpc-status", "\u0660"),), Code.UNKNOWN, "invalid grpc-status"),
        ((("grpc-status", ""),), Code.UNKNOWN, "invalid grpc-status"),
        ((("grpc-status", "13"), ("grpc-status", "0")), Code.INTERNAL, "more than one"),
    ],
)
def test_grpc_status_is_one_field_of_ascii_digits(
    fields: tuple[tuple[str, str], ...], code: int, message: str
) -> None:
    status = status_of(fields, None)
    assert status.code == code and message in status.message, status


def test_blocks_read_the_same_each_time_they_come() -> None:
    # What a block comes to is kept by its fields: the same fields read alike again,
    # the same trailers under another :status (Trailers-Only) read as that status says,
    # and blocks too long to keep read right every time.
    long = "m" * 2000
    for _ in range(3):
        assert status_of((("grpc-status", "5"), ("grpc-message", "a%20b")), None)[:2] == (
            Code.NOT_FOUND,
            "a b",
        )
        assert status_of((), None).code == Code.UNKNOWN
        assert status_of((), "503").code == Code.UNAVAILABLE
        assert status_of((("grpc-status", "2"), ("grpc-message", long)), None).message == long
        block = (("content-type", "application/grpc"), ("x-a", "1"), ("x-b-bin", "AP8"))
        assert metadata_of(block) == (("x-a", "1"), ("x-b-bin", b"\x00\xff"))
        assert metadata_of((("x-long", long),)) == (("x-long", long),)
    many = [((("grpc-status", "0"), ("grpc-message", str(n))), str(n)) for n in range(600)]
    for fields, message in many:  # past the memo's size: emptied and refilled
        assert status_of(fields, None).message == message


@pytest.mark.parametrize("reset_by_us", [True, False])
async def test_frames_in_flight_for_streams_the_bridge_reset_are_no_flood(
    reset_by_us: bool,
) -> None:
    """RFC 9113 §5.4.2: after our RST_STREAM the upstream's frames in flight still arrive.

    1,000 cancelled calls, each followed by the DATA, trailers and WINDOW_UPDATE the
    upstream had sent already: more than the flood budget's burst, and legitimate. The
    same frames on streams that never were ours to reset (ended by the upstream) are
    a flood.
    """
    conn = _connection()
    conn.connection_made(LoopbackTransport(conn))  # type: ignore[arg-type]
    conn.data_received(frame(frames.SETTINGS, 0, 0))
    head = hpack_codec.indexed(8) + hpack_codec.content_type(b"application/grpc")
    tail = hpack_codec.literal(b"grpc-status", b"0")
    streams = [conn.open_stream(b"\x83\x86", None, True) for _ in range(1000)]
    for stream in streams:
        if reset_by_us:
            conn.reset(stream, frames.CANCEL)
        else:
            conn.data_received(
                frame(frames.HEADERS, frames.END_HEADERS | frames.END_STREAM, stream.id, head)
            )
    in_flight = b"".join(
        frame(frames.DATA, 0, s.id, b"\x00\x00\x00\x00\x01x")
        + frame(frames.HEADERS, frames.END_HEADERS | frames.END_STREAM, s.id, tail)
        + frame(frames.WINDOW_UPDATE, 0, s.id, (1024).to_bytes(4, "big"))
        for s in streams
    )
    conn.data_received(in_flight)
    for _ in range(40):  # the read slices that follow
        await asyncio.sleep(0)
    if reset_by_us:
        assert conn.error is None, conn.error
    else:
        assert conn.error_code == frames.ENHANCE_YOUR_CALM, conn.error


async def test_a_call_with_one_informational_response_costs_one_token() -> None:
    """480 calls, each answered ``100 Continue`` then headers, a message and trailers.

    Only the 1xx blocks carry nothing (480 tokens, under the 1,000 burst); the
    response headers and trailers after them are the call itself and must not
    be charged as informational.
    """
    conn = _connection()
    conn.connection_made(LoopbackTransport(conn))  # type: ignore[arg-type]
    conn.data_received(frame(frames.SETTINGS, 0, 0))
    informational = hpack_codec.literal(b":status", b"100")
    head = hpack_codec.indexed(8) + hpack_codec.content_type(b"application/grpc")
    tail = hpack_codec.literal(b"grpc-status", b"0")
    streams = [conn.open_stream(b"\x83\x86", None, True) for _ in range(480)]
    conn.data_received(
        b"".join(
            frame(frames.HEADERS, frames.END_HEADERS, s.id, informational)
            + frame(frames.HEADERS, frames.END_HEADERS, s.id, head)
            + frame(frames.DATA, 0, s.id, b"\x00\x00\x00\x00\x01x")
            + frame(frames.HEADERS, frames.END_HEADERS | frames.END_STREAM, s.id, tail)
            for s in streams
        )
    )
    for _ in range(40):  # the read slices that follow
        await asyncio.sleep(0)
    assert conn.error is None, conn.error
    assert all(s.headers is not None for s in streams)
