"""Pieces of the native HTTP/2 client that need no server: HPACK, frames, timeouts."""

from __future__ import annotations

import hpack
import pytest

from grpc_bridge.upstream.h2 import frames, hpack_codec
from grpc_bridge.upstream.native_invoker import grpc_timeout


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
def test_cached_decoding_follows_a_server_that_indexes(huffman: bool) -> None:
    """An encoder that fills its dynamic table: cached blocks must never be reused wrongly."""
    encoder = hpack.Encoder()
    decoder = hpack_codec.HeaderDecoder()
    for round_ in range(3):
        for value in ("a", "b", "a", "c"):
            headers = [(":status", "200"), ("x-value", value), ("x-round", str(round_))]
            block = encoder.encode(headers, huffman=huffman)
            assert list(decoder.decode(block).headers) == headers


def test_cached_decoding_of_a_server_without_a_table() -> None:
    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # what SETTINGS_HEADER_TABLE_SIZE = 0 asks for
    decoder = hpack_codec.HeaderDecoder()
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


def test_padding_is_removed_and_bad_padding_refused() -> None:
    assert frames.unpad(b"\x02abc\x00\x00", frames.PADDED) == b"abc"
    assert frames.unpad(b"abc", 0) == b"abc"
    assert frames.unpad(b"\x05ab", frames.PADDED) is None
    assert frames.unpad(b"", frames.PADDED) is None
