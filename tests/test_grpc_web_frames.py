"""gRPC-Web's wire format apart from I/O (protocol/grpc_web_frames.py), against the standard
library's base64, struct and percent-decoding: a request's message comes out whole however
its bytes (or its base64, padded per piece) are split, and what is written reads back."""

from __future__ import annotations

import base64
import gzip
import itertools
import struct
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpc_bridge.errors import BridgeError, InvalidArgument, PayloadTooLarge
from grpc_bridge.protocol.grpc_web_frames import (
    MAX_PADDED_PIECES,
    BadBase64,
    RequestFrames,
    TextDecoder,
    message_of_body,
    percent_encode,
    plain_message,
    trailer_frame,
)
from tests.helpers.grpc_web_tools import split_frames, trailer_lines

LIMIT = 4096


def framed(message: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(message)) + message


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_a_message_comes_out_whole_however_its_bytes_are_split(
    message: bytes, points: list[int], compressed: bool
) -> None:
    frames = RequestFrames(LIMIT)
    for piece in cuts(framed(message, int(compressed)), points):
        frames.feed(piece)
    assert (frames.message(), frames.flag) == (message, int(compressed))


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300),
    st.lists(st.integers(min_value=0), max_size=6),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_text_padded_per_piece_and_split_anywhere_decodes_to_the_frame(
    message: bytes, encode_points: list[int], send_points: list[int]
) -> None:
    data = framed(message)
    # A client base64-encodes each piece it flushes on its own: padding mid-body.
    text = b"".join(base64.b64encode(piece) for piece in cuts(data, encode_points))
    decoder, frames = TextDecoder(), RequestFrames(LIMIT)
    for piece in cuts(text, send_points):
        frames.feed(decoder.feed(piece))
    decoder.finish()
    assert frames.message() == message


@pytest.mark.parametrize("text", [b"AAA!", b"A===", b"=AAA", b"AA=A", b"AAA\n", b"AA-_"])
def test_text_that_is_not_base64_is_refused_by_the_group(text: bytes) -> None:
    decoder = TextDecoder()
    with pytest.raises(BadBase64, match="not base64"):
        decoder.feed(b"AAAA" + text)


def test_text_padded_piece_by_piece_is_refused_past_a_bound() -> None:
    decoder = TextDecoder()
    decoder.feed(b"AA==" * MAX_PADDED_PIECES)
    with pytest.raises(BadBase64, match="separately padded"):
        decoder.feed(b"AA==")


def test_text_ending_inside_a_group_is_refused() -> None:
    decoder = TextDecoder()
    decoder.feed(b"AAAAAA")
    with pytest.raises(BadBase64, match="incomplete 4-character group"):
        decoder.finish()


def test_an_oversize_frame_is_refused_from_its_head_alone() -> None:
    frames = RequestFrames(LIMIT)
    with pytest.raises(PayloadTooLarge):
        frames.feed(struct.pack(">BI", 0, LIMIT + 1))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "no message frame"),
        (b"\x00\x00", "inside a frame head"),
        (framed(b"abc")[:-1], "truncated frame"),
    ],
)
def test_a_missing_or_truncated_frame_is_refused_at_the_end(body: bytes, problem: str) -> None:
    frames = RequestFrames(LIMIT)
    frames.feed(body)
    with pytest.raises(InvalidArgument, match=problem):
        frames.message()


@pytest.mark.parametrize("body", [framed(b"a") + b"\x00", framed(b"", 0x80), framed(b"", 0x03)])
def test_more_than_one_message_frame_or_another_flag_is_refused_as_it_arrives(
    body: bytes,
) -> None:
    with pytest.raises(InvalidArgument, match="malformed gRPC-Web request"):
        RequestFrames(LIMIT).feed(body)


@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=80))
def test_grpc_message_percent_encoding_is_printable_ascii_and_decodes_back(text: str) -> None:
    encoded = percent_encode(text)
    assert all(" " <= c <= "~" for c in encoded)
    assert unquote_to_bytes(encoded) == text.encode()


def test_the_trailer_frame_holds_the_status_and_the_trailing_metadata_only() -> None:
    frame = trailer_frame(
        9,
        "50% off\r\nnow",
        b"\x08\x09",
        [("x-a", "b"), ("x-c-bin", b"\xff\x00"), ("grpc-status", "0"), ("bad key", "v")],
    )
    [(flag, block)] = split_frames(frame)
    assert flag == 0x80
    assert block == (
        b"grpc-status: 9\r\ngrpc-message: 50%25 off%0D%0Anow\r\n"
        b"grpc-status-details-bin: CAk=\r\nx-a: b\r\nx-c-bin: /wA=\r\n"
    )
    assert dict(trailer_lines(block))["x-c-bin"] == "/wA="


@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
@pytest.mark.parametrize("coding", [None, "gzip"])
async def test_a_body_read_whole_gives_its_message(text: bool, coding: str | None) -> None:
    message = b"\x0a\x03abc" * 10
    body = framed(gzip.compress(message), 1) if coding else framed(message)
    if text:
        body = base64.b64encode(body)
    assert await message_of_body(body, text, coding, LIMIT) == message


@settings(max_examples=300, deadline=None)
@given(
    head=st.binary(min_size=0, max_size=5),
    message=st.binary(max_size=40),
    limit=st.integers(min_value=0, max_value=48),
)
async def test_the_plain_message_shortcut_answers_as_the_whole_reader(
    head: bytes, message: bytes, limit: int
) -> None:
    """plain_message (the lean edge's coroutine-free read) gives message_of_body's message
    for every body it answers, and leaves every other body (errors included) to it."""
    for body in (head + message, framed(message), framed(message, 1), framed(message) + head):
        shortcut = plain_message(body, limit)
        try:
            whole: bytes | None = await message_of_body(body, False, None, limit)
        except BridgeError:  # refused: the shortcut must leave it to the reader
            whole = None
        if shortcut is not None:
            assert shortcut == whole
        elif whole is not None:
            # Left to the reader and read: only a compressed frame's.
            assert body[0] == 1
