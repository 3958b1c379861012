"""render_details: the grpc-status-details-bin trailer -> the error body's "details"."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from grpc_bridge.codec.details import render_details
from grpc_bridge.codec.details import status_bin as own_status_bin
from grpc_bridge.codec.json_codec import JsonOptions
from tests.helpers.codec_tools import SECRET_TYPE, build_private_pool, message_class


@pytest.fixture(scope="module")
def pool() -> DescriptorPool:
    return build_private_pool(kitchen_pb2.DESCRIPTOR)


def packed(message: Any) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def status_bin(*details: any_pb2.Any) -> bytes:
    return status_pb2.Status(code=3, message="bad", details=details).SerializeToString()


def bad_request() -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="name", description="empty")
        ]
    )


def test_standard_google_rpc_detail(pool: DescriptorPool) -> None:
    details = render_details(status_bin(packed(bad_request())), pool)
    assert type(details[0]) is dict
    assert details == [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "name", "description": "empty"}],
        }
    ]


def test_several_standard_details_without_a_pool() -> None:
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromJsonString("1.5s")
    info = error_details_pb2.ErrorInfo(reason="QUOTA", domain="example.com", metadata={"k": "v"})
    details = render_details(status_bin(packed(retry), packed(info)), None)
    assert details[0] == {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "1.500s",
    }
    assert details[1]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert details[1]["reason"] == "QUOTA" and details[1]["metadata"] == {"k": "v"}


def test_custom_detail_from_the_private_pool(pool: DescriptorPool) -> None:
    custom = message_class(pool, "bridgetest.v1.CustomDetail")(reason="flaky", attempt=2)
    details = render_details(status_bin(packed(custom)), pool)
    assert details == [
        {"@type": "type.googleapis.com/bridgetest.v1.CustomDetail", "reason": "flaky", "attempt": 2}
    ]


def test_a_type_only_the_private_pool_knows(pool: DescriptorPool) -> None:
    secret = message_class(pool, SECRET_TYPE)(code_name="x", level=5)
    trailer = status_bin(packed(secret))
    assert render_details(trailer, pool) == [
        {"@type": f"type.googleapis.com/{SECRET_TYPE}", "codeName": "x", "level": "5"}
    ]
    # Without the upstream's pool the type is unknown: base64 of the payload.
    assert render_details(trailer, None) == [
        {
            "@type": f"type.googleapis.com/{SECRET_TYPE}",
            "value": base64.b64encode(secret.SerializeToString()).decode(),
        }
    ]


def test_unknown_type_as_base64(pool: DescriptorPool) -> None:
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.v1.Mystery", value=b"\x08\x96\x01\xff")
    assert render_details(status_bin(unknown), pool) == [
        {"@type": "type.googleapis.com/acme.v1.Mystery", "value": "CJYB/w=="}
    ]


def test_known_type_with_a_corrupt_payload_as_base64(pool: DescriptorPool) -> None:
    corrupt = any_pb2.Any(type_url="type.googleapis.com/google.rpc.BadRequest", value=b"\xff\xff")
    assert render_details(status_bin(corrupt), pool) == [
        {"@type": "type.googleapis.com/google.rpc.BadRequest", "value": "//8="}
    ]


def test_well_known_type_detail(pool: DescriptorPool) -> None:
    details = render_details(status_bin(packed(duration_pb2.Duration(seconds=3))), pool)
    assert details == [{"@type": "type.googleapis.com/google.protobuf.Duration", "value": "3s"}]


def test_mixed_details_keep_their_order(pool: DescriptorPool) -> None:
    custom = message_class(pool, "bridgetest.v1.CustomDetail")(reason="r")
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.v1.Mystery", value=b"")
    details = render_details(status_bin(packed(bad_request()), unknown, packed(custom)), pool)
    assert [d["@type"].rpartition(".")[2] for d in details] == [
        "BadRequest",
        "Mystery",
        "CustomDetail",
    ]


def test_json_options_apply(pool: DescriptorPool) -> None:
    options = JsonOptions(use_proto_names=True, emit_unpopulated=True)
    details = render_details(status_bin(packed(bad_request())), pool, options=options)
    assert details == [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "field_violations": [{"field": "name", "description": "empty", "reason": ""}],
        }
    ]


@pytest.mark.parametrize(
    "trailer", [None, b"", b"\xff\xff\xff", b"\x0a\x05abc", b"\x1a\x03\x0a\x01"]
)
def test_nothing_or_garbage_is_no_details(pool: DescriptorPool, trailer: bytes | None) -> None:
    assert render_details(trailer, pool) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_never_raises(pool: DescriptorPool, trailer: bytes) -> None:
    details = render_details(trailer, pool)
    assert isinstance(details, list)
    assert all("@type" in d for d in details)


def test_the_bridges_own_details_pack_into_a_status_that_renders_back_alike() -> None:
    bad_request = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "name", "description": "must not be empty"}],
    }
    unknown = {"@type": "type.googleapis.com/no.such.Type", "x": 1}
    data = own_status_bin(3, "bad", [bad_request, unknown, "not a detail"])
    assert data is not None
    # What a gRPC-Web client reads from grpc-status-details-bin: the known detail, as sent.
    assert render_details(data, None) == [bad_request]
    assert own_status_bin(3, "bad", []) is None
    # A message echoing undecodable header bytes (surrogateescape) still packs.
    assert own_status_bin(3, "bad \udcff", [bad_request]) is not None
