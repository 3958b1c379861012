"""The JSON codec agrees with json_format: base64 line breaks, corrupt Any, enum aliases.

Each case is checked against protobuf's own ``json_format`` where it has an answer.
"""

from __future__ import annotations

import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from grpc_bridge.codec.json_codec import JsonOptions, MessageCodec
from grpc_bridge.errors import JsonEncodeError
from tests.helpers.codec_tools import build_private_pool


def kitchen_codec() -> tuple[MessageCodec, type]:
    pool = build_private_pool(kitchen_pb2.DESCRIPTOR)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("bridgetest.v1.Kitchen"))
    return MessageCodec(cls, pool, JsonOptions()), cls


def test_base64_with_line_breaks_is_accepted_like_json_format() -> None:
    codec, cls = kitchen_codec()
    body = b'{"fBytes": "aGVs\\nbG8=\\r\\n"}'
    assert codec.decode(body).f_bytes == b"hello"
    assert json_format.Parse(body, cls()).f_bytes == b"hello"


def test_corrupt_any_payload_is_a_clear_encode_error() -> None:
    codec, cls = kitchen_codec()
    message = cls()
    message.any.type_url = "type.googleapis.com/bridgetest.v1.Kitchen"
    message.any.value = b"\xff\xff"
    with pytest.raises(JsonEncodeError, match=r"bridgetest\.v1\.Kitchen"):
        codec.encode(message)


def test_enum_alias_renders_the_first_name_like_json_format() -> None:
    file = descriptor_pb2.FileDescriptorProto(name="alias.proto", package="alias", syntax="proto3")
    enum = file.enum_type.add(name="State")
    enum.options.allow_alias = True
    for name, number in (("UNKNOWN", 0), ("STARTED", 1), ("RUNNING", 1)):
        enum.value.add(name=name, number=number)
    msg = file.message_type.add(name="Job")
    msg.field.add(name="e", number=1, type=14, type_name=".alias.State", label=1)
    msg.field.add(name="re", number=2, type=14, type_name=".alias.State", label=3)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("alias.Job"))
    job = cls(e=1, re=[1])
    codec = MessageCodec(cls, pool, JsonOptions())
    expected = json_format.MessageToDict(job, always_print_fields_with_no_presence=True)
    assert codec.to_value(job) == expected == {"e": "STARTED", "re": ["STARTED"]}
