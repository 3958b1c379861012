"""``null`` for a repeated google.protobuf.Value / NullValue field: both decode paths agree.

json_format fails on it with an internal error; proto3 JSON says null is the
field's default (empty), which is what the compiled decoder builds; the
validation walk drops such nulls so that the two paths agree.

The fast JSON decoder is compared with the reference path (validation walk, then
json_format) on a private descriptor pool, as discovery builds one.
"""

from __future__ import annotations

import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import descriptor_pb2

from grpc_bridge.codec.fast_decode import decode_with
from grpc_bridge.codec.json_codec import JsonOptions, MessageCodec
from grpc_bridge.errors import BridgeError
from tests.helpers.codec_tools import build_private_pool, message_class

_FDP = descriptor_pb2.FieldDescriptorProto


def _repeated_value_codec(ignore_unknown: bool) -> MessageCodec:
    """``message R { repeated google.protobuf.Value vals = 1; repeated NullValue nulls = 2; }``."""
    pool = build_private_pool(kitchen_pb2.DESCRIPTOR)
    proto = descriptor_pb2.FileDescriptorProto(
        name="review/r.proto", package="review", syntax="proto3"
    )
    proto.dependency.append("google/protobuf/struct.proto")
    message = proto.message_type.add(name="R")
    message.field.add(
        name="vals",
        number=1,
        label=_FDP.LABEL_REPEATED,
        type=_FDP.TYPE_MESSAGE,
        type_name=".google.protobuf.Value",
        json_name="vals",
    )
    message.field.add(
        name="nulls",
        number=2,
        label=_FDP.LABEL_REPEATED,
        type=_FDP.TYPE_ENUM,
        type_name=".google.protobuf.NullValue",
        json_name="nulls",
    )
    pool.AddSerializedFile(proto.SerializeToString())
    options = JsonOptions(ignore_unknown_fields=ignore_unknown)
    return MessageCodec(message_class(pool, "review.R"), pool, options)


@pytest.mark.parametrize("ignore_unknown", [False, True])
@pytest.mark.parametrize("field", ["vals", "nulls"])
def test_null_repeated_value_field_agrees_with_reference(field: str, ignore_unknown: bool) -> None:
    codec = _repeated_value_codec(ignore_unknown)
    value = {field: None}
    try:
        reference: bytes | str = codec.reference_decode_value(value).SerializeToString()
    except BridgeError as exc:
        reference = exc.message
    assert codec._fast_decode is not None
    fast = decode_with(codec._fast_decode, codec.message_class, value)
    # Either the fast path steps aside (None) or it builds what the reference builds.
    assert fast is None or fast.SerializeToString() == reference
