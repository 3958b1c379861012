"""pipeline/inflate.py alone: bounded steps, any split of the input, the bytes gzip/zlib read."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpc_bridge.errors import InvalidArgument, UnsupportedMediaType
from grpc_bridge.pipeline.inflate import STEP, Inflater, inflater_for


def inflate(coding: str, data: bytes, cuts: list[int]) -> bytes:
    inflater = Inflater(coding)
    out = []
    start = 0
    for cut in [*sorted(c for c in cuts if 0 < c < len(data)), len(data)]:
        for piece in inflater.feed(data[start:cut]):
            assert 0 < len(piece) <= STEP
            out.append(piece)
        start = cut
    inflater.finish()
    return b"".join(out)


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(max_size=3000) | st.binary(max_size=8).map(lambda b: b * 40000),
    cuts=st.lists(st.integers(0, 4000), max_size=5),
    members=st.integers(1, 3),
)
def test_any_split_of_a_gzip_stream_inflates_to_what_gzip_reads(
    payload: bytes, cuts: list[int], members: int
) -> None:
    data = b"".join(gzip.compress(payload) for _ in range(members))
    assert inflate("gzip", data, cuts) == gzip.decompress(data)


@settings(max_examples=40, deadline=None)
@given(payload=st.binary(max_size=3000), cut=st.integers(0, 4000), raw=st.booleans())
def test_deflate_with_or_without_its_zlib_wrapper(payload: bytes, cut: int, raw: bool) -> None:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    data = packer.compress(payload) + packer.flush()
    assert inflate("deflate", data, [cut]) == payload


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=500), end=st.integers(1, 600))
def test_a_cut_gzip_stream_is_refused_never_read_short(payload: bytes, end: int) -> None:
    data = gzip.compress(payload)
    cut = data[: min(end, len(data) - 1)]
    with pytest.raises(InvalidArgument, match=r"^malformed gzip request body: "):
        inflate("gzip", cut, [])


def test_a_bomb_comes_out_one_bounded_piece_at_a_time() -> None:
    """The caller can stop after any piece: nothing past it is inflated."""
    pieces = Inflater("gzip").feed(gzip.compress(b"\0" * (64 << 20)))
    taken = [next(pieces) for _ in range(4)]
    assert [len(p) for p in taken] == [STEP] * 4


@pytest.mark.parametrize(
    ("values", "coding"),
    [
        ([], None),
        (["identity"], None),
        (["gzip"], "gzip"),
        (["X-GZIP"], "gzip"),
        ([" deflate "], "deflate"),
    ],
)
def test_codings_served(values: list[str], coding: str | None) -> None:
    inflater = inflater_for(values)
    assert (inflater.coding if inflater else None) == coding


@pytest.mark.parametrize("values", [["br"], ["gzip", "gzip"], ["gzip, deflate"], ["\x00" * 99]])
def test_codings_refused(values: list[str]) -> None:
    with pytest.raises(UnsupportedMediaType, match="send gzip, deflate or identity"):
        inflater_for(values)
