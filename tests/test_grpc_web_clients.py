"""A real gRPC-Web client (connect-node's gRPC-Web transport) calls the test upstream through
the bridge, in binary (``application/grpc-web+proto``) and JSON (``+json``), and gets what the
same call gives over the bridge's JSON routes: messages, errors with their details, metadata
both ways, deadlines and cancellation."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.helpers.harness import RunningBridge
from tests.helpers.js_clients import buf_curl, connect_node_call, decode_bin_header
from tests.helpers.servers import CLIENT_DEADLINE_MS, CLIENT_DEADLINE_S, RunningServer

TEST = "bridgetest.v1.TestService"
ENCODINGS = pytest.mark.parametrize("binary", [True, False], ids=["proto", "json"])


@ENCODINGS
async def test_unary_call_answers_what_the_json_route_answers(
    bridge: RunningBridge, binary: bool
) -> None:
    request = {"fString": "hi", "fInt64": "5", "rInt32": [1, 2], "fBool": True}
    result = await connect_node_call(
        bridge.url, f"{TEST}/Echo", request, protocol="grpcweb", binary=binary, emit_defaults=True
    )
    status, body, _ = await bridge.post(f"/{TEST}/Echo", request)
    assert status == 200
    assert result.error is None
    assert result.messages == [body]
    assert {k: body[k] for k in request} == request


@ENCODINGS
async def test_server_stream_delivers_every_message_as_the_ndjson_route_does(
    bridge: RunningBridge, binary: bool
) -> None:
    request = {"count": 4, "tag": "s"}
    result = await connect_node_call(
        bridge.url,
        f"{TEST}/ServerStream",
        request,
        protocol="grpcweb",
        binary=binary,
        emit_defaults=True,
    )
    status, body, _ = await bridge.post(
        f"/{TEST}/ServerStream", request, params={"emit_defaults": "true"}
    )
    assert status == 200
    ndjson = [orjson.loads(line)["result"] for line in body.splitlines()]
    assert result.error is None
    assert result.messages == [{"index": i, "text": f"s-{i}"} for i in range(4)]
    assert [{"index": m.get("index", 0), "text": m["text"]} for m in ndjson] == result.messages


@ENCODINGS
@pytest.mark.parametrize("method", ["Fail", "ServerStream"])
async def test_errors_carry_code_message_and_details_as_the_json_route_shows_them(
    bridge: RunningBridge, binary: bool, method: str
) -> None:
    request = (
        {"code": 5, "message": "nope: 100% ünïcode", "withDetails": True}
        if method == "Fail"
        else {"count": 0, "failCode": 9, "failAfter": 0}
    )
    result = await connect_node_call(
        bridge.url, f"{TEST}/{method}", request, protocol="grpcweb", binary=binary
    )
    status, body, _ = await bridge.post(f"/{TEST}/{method}", request)
    assert status >= 400
    assert result.error is not None
    assert result.error.code_number == body["code"]
    assert result.error.message == body["message"]
    # Each detail: the type the JSON route names, the same fields once decoded.
    assert [d["type"] for d in result.error.details] == [
        d["@type"].rpartition("/")[2] for d in body["details"]
    ]
    known = [
        {k: v for k, v in d.items() if k != "@type"}
        for d in body["details"]
        if "value" not in d  # an unknown type: the JSON route keeps its bytes
    ]
    assert [d["json"] for d in result.error.details if "json" in d] == known


@ENCODINGS
async def test_metadata_goes_out_as_headers_and_comes_back_in_headers_and_trailers(
    bridge: RunningBridge, binary: bool
) -> None:
    result = await connect_node_call(
        bridge.url,
        f"{TEST}/EchoMetadata",
        protocol="grpcweb",
        binary=binary,
        headers={"x-test": "one", "x-test-bin": base64.b64encode(b"\x00\xff").decode()},
    )
    assert result.error is None
    received = result.messages[0]["received"]
    assert received["x-test"] == "one"
    assert base64.b64decode(received["x-test-bin"]) == b"\x00\xff"
    # The protocol's own headers are read, never forwarded.
    assert not {"x-grpc-web", "x-user-agent", "content-type", "grpc-timeout"} & set(received)
    assert result.headers is not None and result.trailers is not None
    assert result.headers["x-initial"] == "yes"
    assert decode_bin_header(result.headers["x-initial-bin"]) == b"\x00\x01"
    assert result.trailers["x-trailer"] == "done"
    assert decode_bin_header(result.trailers["x-trailer-bin"]) == b"\xff"
    assert "x-trailer" not in result.headers


@ENCODINGS
async def test_the_clients_deadline_reaches_the_upstream(
    bridge: RunningBridge, upstream: RunningServer, binary: bool
) -> None:
    tag = f"deadline-{binary}"
    result = await connect_node_call(
        bridge.url,
        f"{TEST}/Sleep",
        {"duration": "30s", "tag": tag},
        protocol="grpcweb",
        binary=binary,
        timeout_ms=CLIENT_DEADLINE_MS,
    )
    assert result.error is not None and result.error.code == "deadline_exceeded"
    await upstream.test.wait_for("cancelled", tag, within=30)


@ENCODINGS
async def test_a_stream_the_client_cancels_is_cancelled_upstream(
    bridge: RunningBridge, upstream: RunningServer, binary: bool
) -> None:
    tag = f"cancel-{binary}"
    result = await connect_node_call(
        bridge.url,
        f"{TEST}/ServerStream",
        {"count": 1000, "interval": "0.050s", "tag": tag},
        protocol="grpcweb",
        binary=binary,
        cancel_after=2,
    )
    assert result.cancelled and result.error is None
    assert [m["text"] for m in result.messages] == [f"{tag}-0", f"{tag}-1"]
    await upstream.test.wait_for("cancelled", tag, within=30)
    assert tag not in upstream.test.completed


@ENCODINGS
async def test_bridge_errors_reach_the_client_with_grpc_codes(
    bridge: RunningBridge, binary: bool
) -> None:
    # The demo's Shop is in the client's descriptors, not served by this upstream.
    unknown = await connect_node_call(
        bridge.url, "demo.v1.Shop/Ping", {}, protocol="grpcweb", binary=binary
    )
    assert unknown.error is not None and unknown.error.code == "unimplemented"
    assert unknown.error.message == "no route for POST /demo.v1.Shop/Ping"
    streaming = await connect_node_call(
        bridge.url,
        f"{TEST}/ClientStream",
        requests=[{"text": "a"}],
        protocol="grpcweb",
        binary=binary,
    )
    assert streaming.error is not None and streaming.error.code == "unimplemented"


async def test_buf_curl_speaks_grpc_web_to_the_bridge(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    # --reflect needs h2c and the reflection service through the bridge: schema from a file.
    unary = await buf_curl(
        bridge.url, f"{TEST}/Echo", {"fString": "hi"}, protocol="grpcweb", reflect=False
    )
    assert (unary.error, unary.messages) == (None, [{"fString": "hi"}])

    stream = await buf_curl(
        bridge.url,
        f"{TEST}/ServerStream",
        {"count": 3, "tag": "s"},
        protocol="grpcweb",
        reflect=False,
        emit_defaults=True,
    )
    assert stream.error is None
    assert stream.messages == [{"index": i, "text": f"s-{i}"} for i in range(3)]

    request = {"code": 5, "message": "nope", "withDetails": True}
    failed = await buf_curl(bridge.url, f"{TEST}/Fail", request, protocol="grpcweb", reflect=False)
    _, status, _ = await bridge.post(f"/{TEST}/Fail", request)
    assert failed.error is not None
    assert (failed.error.code_number, failed.error.message) == (status["code"], status["message"])
    assert [d["type"].rpartition("/")[2] for d in failed.error.details] == [
        d["@type"].rpartition("/")[2] for d in status["details"]
    ]

    echoed = await buf_curl(
        bridge.url,
        f"{TEST}/EchoMetadata",
        protocol="grpcweb",
        reflect=False,
        headers={"x-test": "buf"},
    )
    assert echoed.error is None
    assert echoed.messages[0]["received"]["x-test"] == "buf"
    assert echoed.headers is not None and echoed.headers["x-initial"] == "yes"

    slept = await buf_curl(
        bridge.url,
        f"{TEST}/Sleep",
        {"duration": "30s", "tag": "buf-deadline"},
        protocol="grpcweb",
        reflect=False,
        timeout_s=CLIENT_DEADLINE_S,
    )
    assert slept.error is not None and slept.error.code == "deadline_exceeded"
    await upstream.test.wait_for("cancelled", "buf-deadline", within=30)
