"""Connect request envelopes are parsed the same however the bytes arrive, and bounded by headers.

The parser (grpc_bridge/protocol/connect_wire.py) takes body bytes as the
network hands them over: any split gives the same messages, a length past
the limit is refused from the 5-byte header alone, and a body that stops
inside an envelope is refused at its end.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grpc_bridge.errors import InvalidArgument, PayloadTooLarge
from grpc_bridge.protocol.connect_wire import EnvelopeParser
from tests.helpers.connect_tools import envelope

LIMIT = 1024

messages = st.lists(st.tuples(st.sampled_from([0, 1]), st.binary(max_size=LIMIT)), max_size=8)


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(messages, st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_of_the_body_gives_the_same_envelopes(
    sent: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    body = b"".join(envelope(data, flags) for flags, data in sent)
    parser = EnvelopeParser(LIMIT)
    got: list[tuple[int, bytes]] = []
    for chunk in _splits(body, cuts):
        got += parser.feed(chunk)
    parser.finish()
    assert got == sent
    assert parser.count == len(sent)


@given(st.integers(min_value=LIMIT + 1, max_value=2**32 - 1))
def test_a_length_past_the_limit_is_refused_from_the_header_alone(length: int) -> None:
    parser = EnvelopeParser(LIMIT)
    with pytest.raises(PayloadTooLarge, match=f"envelope 1 is {length} bytes"):
        parser.feed(bytes([0]) + length.to_bytes(4, "big"))


@given(messages.filter(bool), st.data())
def test_a_body_ending_inside_an_envelope_is_refused(
    sent: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    body = b"".join(envelope(payload, flags) for flags, payload in sent)
    last = len(envelope(sent[-1][1]))
    cut = data.draw(st.integers(min_value=len(body) - last + 1, max_value=len(body) - 1))
    parser = EnvelopeParser(LIMIT)
    assert parser.feed(body[:cut]) == sent[:-1]
    assert parser.pending
    with pytest.raises(InvalidArgument, match=f"ends inside envelope {len(sent)}"):
        parser.finish()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [(0x02, "end-of-stream"), (0x04, "unknown flags 0x04"), (0x81, "unknown flags 0x81")],
)
def test_flags_a_request_may_not_carry_are_refused(flags: int, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        EnvelopeParser(LIMIT).feed(envelope(b"{}") + envelope(b"", flags))
