"""The compiled encoder's Timestamp formatting equals json_format's (Timestamp.ToJsonString)."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from grpc_bridge.codec.fast_encode import timestamp_json

SECONDS = st.integers(-62135596800, 253402300799)
NANOS = st.one_of(
    st.just(0),
    st.integers(0, 999).map(lambda n: n * 1_000_000),
    st.integers(0, 999_999).map(lambda n: n * 1000),
    st.integers(0, 999_999_999),
)


@given(SECONDS, NANOS)
def test_same_text_as_json_format(seconds: int, nanos: int) -> None:
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert timestamp_json(stamp) == stamp.ToJsonString()


@pytest.mark.parametrize(("seconds", "nanos"), [(253402300800, 0), (-62135596801, 0), (0, -1)])
def test_out_of_range_raises_json_formats_error(seconds: int, nanos: int) -> None:
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    with pytest.raises(ValueError, match="Timestamp is not valid"):
        timestamp_json(stamp)
