"""Header ↔ metadata allowlist and deadline parsing (pure functions)."""

from __future__ import annotations

import os
import uuid

import pytest
import structlog

from grpc_bridge.errors import HeadersTooLarge, InvalidArgument
from grpc_bridge.upstream.deadlines import effective_timeout, parse_timeout
from grpc_bridge.upstream.metadata import (
    ClientInfo,
    MetadataPolicy,
    new_request_id,
    to_headers,
    to_metadata,
)

POLICY = MetadataPolicy(frozenset({"x-request-id", "traceparent", "tracestate"}), 8192)
CLIENT = ClientInfo(peer="10.1.2.3", host="api.example:8080", scheme="http")


def md(headers: list[tuple[str, str]], policy: MetadataPolicy = POLICY) -> dict[str, object]:
    return dict(to_metadata(headers, policy, CLIENT, "rid-1"))


def test_allowlist() -> None:
    out = md(
        [
            ("Authorization", "Bearer t"),
            ("Grpc-Metadata-Tenant", "acme"),
            ("traceparent", "00-abc-def-01"),
            ("Cookie", "secret"),
            ("User-Agent", "curl"),
            ("Grpc-Metadata-Grpc-Timeout", "1S"),
            ("Grpc-Metadata-Content-Type", "x"),
            ("Grpc-Timeout", "1S"),
            ("Host", "h"),
        ]
    )
    assert out == {
        "authorization": "Bearer t",
        "tenant": "acme",
        "traceparent": "00-abc-def-01",
        "x-request-id": "rid-1",
        "x-forwarded-for": "10.1.2.3",
        "x-forwarded-host": "api.example:8080",
        "x-forwarded-proto": "http",
    }


def test_forwarded_for_is_the_peer_unless_trusted_and_host_proto_are_set() -> None:
    spoofed = [
        ("X-Forwarded-For", "1.1.1.1"),
        ("X-Forwarded-Proto", "ftp"),
        ("X-Forwarded-Host", "evil"),
    ]
    out = md(spoofed)
    assert out["x-forwarded-for"] == "10.1.2.3"
    assert out["x-forwarded-proto"] == "http" and out["x-forwarded-host"] == "api.example:8080"
    trusting = MetadataPolicy(POLICY.forward_headers, 8192, trust_forwarded_for=True)
    out = md(spoofed, trusting)
    assert out["x-forwarded-for"] == "1.1.1.1, 10.1.2.3"
    assert out["x-forwarded-proto"] == "http" and out["x-forwarded-host"] == "api.example:8080"


def test_client_request_id_is_kept() -> None:
    assert md([("X-Request-Id", "abc")])["x-request-id"] == "abc"


def test_request_ids_are_random_uuid4s_never_shared_with_a_forked_worker() -> None:
    new_request_id()  # random numbers are drawn in batches: one is pending now
    ids = [new_request_id() for _ in range(300)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.hex == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id must not be the parent's next one
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != new_request_id()


def test_bin_values_are_decoded() -> None:
    out = md(
        [
            ("Grpc-Metadata-Token-Bin", "AAEC"),
            ("Grpc-Metadata-Url-Bin", "-_8"),
            ("Grpc-Metadata-Nopad-Bin", "AAE"),
        ]
    )
    assert out["token-bin"] == b"\x00\x01\x02"
    assert out["url-bin"] == b"\xfb\xff"
    assert out["nopad-bin"] == b"\x00\x01"


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("Grpc-Metadata-Token-Bin", "not base64!", "not valid base64"),
        ("Grpc-Metadata-Note", "tab\there", "control or non-ASCII"),
        ("Grpc-Metadata-Note", "caf\u00e9", "control or non-ASCII"),
        ("Authorization", "a\x7fb", "control or non-ASCII"),
        ("Grpc-Metadata-Bad Key", "v", "not a valid metadata key"),
    ],
)
def test_bad_header_values(header: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        md([(header, value)])
    assert header in info.value.message


def test_metadata_size_limit() -> None:
    small = MetadataPolicy(POLICY.forward_headers, 64)
    with pytest.raises(HeadersTooLarge, match="over the limit of 64"):
        md([("Grpc-Metadata-Big", "x" * 100)], small)


def test_response_headers() -> None:
    headers = to_headers(
        [("x-initial", "yes"), ("x-initial-bin", b"\x00\x01"), ("grpc-accept-encoding", "gzip")],
        [("x-trailer", "done"), ("grpc-status-details-bin", b"zz")],
    )
    assert headers == [
        ("Grpc-Metadata-x-initial", "yes"),
        ("Grpc-Metadata-x-initial-bin", "AAE="),
        ("Grpc-Trailer-x-trailer", "done"),
    ]


@pytest.mark.parametrize(
    ("grpc_timeout", "connect_ms", "expected"),
    [
        ("1H", None, 3600.0),
        ("2M", None, 120.0),
        ("3S", None, 3.0),
        ("500m", None, 0.5),
        ("250000u", None, 0.25),
        ("99999999n", None, 0.099999999),
        (None, "1500", 1.5),
        ("1S", "99999", 1.0),
        (None, None, None),
    ],
)
def test_timeouts(grpc_timeout: str | None, connect_ms: str | None, expected: float | None) -> None:
    assert parse_timeout(grpc_timeout, connect_ms) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["", "1", "S", "123456789S", "1.5S", "-1S", "1s", "1 S", "1SS"])
def test_bad_grpc_timeout(value: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid Grpc-Timeout"):
        parse_timeout(value, None)


@pytest.mark.parametrize("value", ["", "-5", "1.5", "12345678901", "abc"])
def test_bad_connect_timeout(value: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid Connect-Timeout-Ms"):
        parse_timeout(None, value)


def test_clamping() -> None:
    assert effective_timeout(None, 30, 300) == 30
    assert effective_timeout(1000, 30, 300) == 300
    assert effective_timeout(2, 30, 300) == 2


def test_upstream_metadata_with_control_characters_is_left_out_of_the_headers() -> None:
    headers = to_headers(
        [
            ("x-a", "ok\tfine"),
            ("x-b", "bad\r\nX-Injected: 1"),
            ("x-c", "nul\x00"),
            ("x-d-bin", b"\0"),
        ],
        [("x-t", "del\x7f"), ("x-u", "kept")],
    )
    assert headers == [
        ("Grpc-Metadata-x-a", "ok\tfine"),
        ("Grpc-Metadata-x-d-bin", "AA=="),
        ("Grpc-Trailer-x-u", "kept"),
    ]


def test_upstream_keys_that_are_not_http_tokens_are_left_out_with_one_warning() -> None:
    with structlog.testing.capture_logs() as logs:
        headers = to_headers(
            [("x-good", "1"), ("x evil", "2"), ("x-evil\r\nset-cookie: a=1", "3"), ("x/y", "4")],
            [("x{t}", "5"), ("x-t", "6"), ("GRPC-STATUS", "0")],
        )
    assert headers == [("Grpc-Metadata-x-good", "1"), ("Grpc-Trailer-x-t", "6")]
    (warning,) = [e for e in logs if e["event"] == "upstream_metadata_dropped"]
    assert warning["log_level"] == "warning" and warning["count"] == 4
    assert warning["keys"] == ["x evil", "x-evil\r\nset-cookie: a=1", "x/y", "x{t}"]
    with structlog.testing.capture_logs() as logs:
        to_headers([("x-good", "1")], [])
    assert logs == []


def test_what_the_bridge_sets_cannot_come_from_the_client() -> None:
    out = to_metadata(
        [
            ("Grpc-Metadata-X-Forwarded-Host", "evil"),
            ("Grpc-Metadata-X-Forwarded-Proto", "evil"),
            ("Grpc-Metadata-X-Forwarded-For", "evil"),
            ("Grpc-Metadata-User-Agent", "evil"),
        ],
        POLICY,
        CLIENT,
        "rid-1",
    )
    assert [k for k, v in out if v == "evil"] == []
    assert [k for k, _ in out].count("x-forwarded-host") == 1
