"""@connectrpc/connect-node's Connect transport (JSON and binary) calls through the bridge.

The client is the one users have (tests/helpers/js_clients.py): unary, GET, server and
client streaming, every status code and error details, metadata both ways,
deadlines and cancellation. Its answers are what the same call gives over the
bridge's JSON routes.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from tests.helpers.connect_tools import TEST, connect_bridge
from tests.helpers.harness import RunningBridge, scrape, value
from tests.helpers.js_clients import CODE_NAMES, connect_node_call, decode_bin_header
from tests.helpers.servers import CLIENT_DEADLINE_MS, RunningServer

ENCODINGS = pytest.mark.parametrize("binary", [False, True], ids=["json", "proto"])


@pytest.fixture
async def bridge(upstream: RunningServer) -> AsyncIterator[RunningBridge]:
    async with connect_bridge(upstream.target) as running:
        yield running


#: (method, request or requests, response message type): calls made both ways and compared.
CASES: list[tuple[str, Any, type[Message]]] = [
    ("Echo", {}, kitchen_pb2.Kitchen),
    (
        "Echo",
        {"fString": "héllo", "fInt64": "-9007199254740993", "fBool": True},
        kitchen_pb2.Kitchen,
    ),
    ("Echo", {"fDouble": 1.5, "fBytes": "AAEC/w==", "color": "RED"}, kitchen_pb2.Kitchen),
    ("Echo", {"rInt32": [1, 2, 3], "rString": ["a", ""], "mStrInt": {"k": 7}}, kitchen_pb2.Kitchen),
    ("Echo", {"nested": {"name": "n", "value": 3}, "oString": "one-of"}, kitchen_pb2.Kitchen),
    (
        "Echo",
        {"ts": "2026-01-01T12:00:00Z", "dur": "1.5s", "st": {"a": [1, "b"]}},
        kitchen_pb2.Kitchen,
    ),
    ("Echo", {"wInt32": 0, "wString": "", "mask": "a.b,c"}, kitchen_pb2.Kitchen),
    ("Lookup", {"fUint64": "18446744073709551615"}, kitchen_pb2.Kitchen),
    ("ServerStream", {"count": 3, "tag": "s"}, kitchen_pb2.StreamReply),
    ("ServerStream", {"count": 0, "tag": "none"}, kitchen_pb2.StreamReply),
    ("ClientStream", [{"text": "a"}, {"text": "b", "index": 2}], kitchen_pb2.StreamSummary),
    ("ClientStream", [], kitchen_pb2.StreamSummary),
    # Over compression.min_bytes: a gzipped answer (unary) and gzipped envelopes (stream).
    ("Echo", {"fString": "big " * 2000}, kitchen_pb2.Kitchen),
    ("ServerStream", {"count": 2, "tag": "big" * 1000}, kitchen_pb2.StreamReply),
]


async def _json_route(bridge: RunningBridge, method: str, request: Any) -> list[Any]:
    """The same call over the JSON routes: its response messages as JSON values."""
    if isinstance(request, list):
        body = b"\n".join(orjson.dumps(r) for r in request)
        status, answer, _ = await bridge.post(
            f"/{TEST}/{method}", body, headers={"Content-Type": "application/x-ndjson"}
        )
    else:
        status, answer, _ = await bridge.post(f"/{TEST}/{method}", request)
    assert status == 200, answer
    if isinstance(answer, str):  # NDJSON
        return [orjson.loads(line)["result"] for line in answer.splitlines() if line]
    return [answer]


def _parsed(values: list[Any], message_type: type[Message]) -> list[Message]:
    return [json_format.ParseDict(v, message_type()) for v in values]


@ENCODINGS
@pytest.mark.parametrize(
    ("method", "request_", "message_type"),
    CASES,
    ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)],
)
async def test_answers_equal_the_same_call_over_the_json_routes(
    bridge: RunningBridge, binary: bool, method: str, request_: Any, message_type: type[Message]
) -> None:
    streams_in = isinstance(request_, list)
    result = await connect_node_call(
        bridge.url,
        f"{TEST}/{method}",
        None if streams_in else request_,
        requests=request_ if streams_in else None,
        binary=binary,
    )
    assert result.error is None, result.error
    expected = await _json_route(bridge, method, request_)
    assert _parsed(result.messages, message_type) == _parsed(expected, message_type)


@ENCODINGS
async def test_every_status_code_reaches_connect_node_by_its_name(
    bridge: RunningBridge, binary: bool
) -> None:
    async def fail(code: int) -> tuple[str, int, str]:
        result = await connect_node_call(
            bridge.url, f"{TEST}/Fail", {"code": code, "message": f"m{code}"}, binary=binary
        )
        assert result.error is not None
        return result.error.code, result.error.code_number, result.error.message

    got = await asyncio.gather(*(fail(code) for code in range(1, 17)))
    assert got == [(CODE_NAMES[code], code, f"m{code}") for code in range(1, 17)]


@ENCODINGS
@pytest.mark.parametrize("method", ["Fail", "ServerStream"])
async def test_error_details_and_trailers_reach_connect_node_decoded(
    bridge: RunningBridge, binary: bool, method: str
) -> None:
    request = (
        {"code": 9, "message": "nope", "withDetails": True, "trailers": {"x-why": "because"}}
        if method == "Fail"
        else {"count": 2, "failCode": 9, "failAfter": 2, "tag": "f"}
    )
    result = await connect_node_call(bridge.url, f"{TEST}/{method}", request, binary=binary)
    assert result.error is not None
    assert result.error.code == "failed_precondition"
    if method == "ServerStream":
        assert [m["text"] for m in result.messages] == ["f-0", "f-1"]
        assert result.error.message == "failing after 2"
        return
    assert result.error.metadata["x-why"] == "because"
    assert [(d["type"], d.get("json")) for d in result.error.details] == [
        (
            "google.rpc.BadRequest",
            {"fieldViolations": [{"field": "name", "description": "must not be empty"}]},
        ),
        ("bridgetest.v1.CustomDetail", {"reason": "flaky", "attempt": 3}),
        ("unknown.v1.Mystery", None),  # in no descriptor set: its bytes are kept
    ]
    assert base64.b64decode(result.error.details[2]["value"]) == b"\x01\x02\x03"


@ENCODINGS
@pytest.mark.parametrize("method", ["EchoMetadata", "ClientStream"])
async def test_metadata_goes_out_as_headers_and_comes_back_as_headers_and_trailers(
    bridge: RunningBridge, binary: bool, method: str
) -> None:
    headers = {"x-test": "one", "x-test-bin": base64.b64encode(b"\x00\xff").decode()}
    if method == "ClientStream":
        result = await connect_node_call(
            bridge.url, f"{TEST}/{method}", requests=[{"text": "a"}], binary=binary, headers=headers
        )
        assert result.error is None and result.trailers is not None
        assert result.trailers["x-count"] == "1"
        return
    result = await connect_node_call(bridge.url, f"{TEST}/{method}", binary=binary, headers=headers)
    assert result.error is None
    received = result.messages[0]["received"]
    assert received["x-test"] == "one"
    assert base64.b64decode(received["x-test-bin"]) == b"\x00\xff"
    # The protocol's own headers are not metadata.
    assert not [key for key in received if key.startswith(("connect-", "content-", "accept"))]
    assert result.headers is not None and result.trailers is not None
    assert result.headers["x-initial"] == "yes"
    assert decode_bin_header(result.headers["x-initial-bin"]) == b"\x00\x01"
    assert result.trailers["x-trailer"] == "done"
    assert decode_bin_header(result.trailers["x-trailer-bin"]) == b"\xff"


@ENCODINGS
@pytest.mark.parametrize("method", ["Sleep", "ServerStream"])
async def test_the_deadline_reaches_the_upstream(
    bridge: RunningBridge, upstream: RunningServer, binary: bool, method: str
) -> None:
    tag = f"deadline-{method}-{binary}"
    request = (
        {"duration": "30s", "tag": tag}
        if method == "Sleep"
        else {"count": 1000, "interval": "0.100s", "tag": tag}
    )
    result = await connect_node_call(
        bridge.url, f"{TEST}/{method}", request, binary=binary, timeout_ms=CLIENT_DEADLINE_MS
    )
    assert result.error is not None and result.error.code == "deadline_exceeded"
    await upstream.test.wait_for("cancelled", tag, within=30)
    assert tag not in upstream.test.completed


@ENCODINGS
async def test_a_cancelled_stream_cancels_the_upstream_call(
    bridge: RunningBridge, upstream: RunningServer, binary: bool
) -> None:
    tag = f"cancel-{binary}"
    result = await connect_node_call(
        bridge.url,
        f"{TEST}/ServerStream",
        {"count": 1000, "interval": "0.050s", "tag": tag},
        binary=binary,
        cancel_after=2,
    )
    assert result.cancelled and result.error is None
    assert [m["text"] for m in result.messages] == [f"{tag}-0", f"{tag}-1"]
    await upstream.test.wait_for("cancelled", tag, within=30)
    assert tag not in upstream.test.completed


@ENCODINGS
async def test_connect_node_uses_get_for_no_side_effects_methods(
    bridge: RunningBridge, binary: bool
) -> None:
    route = f"/{TEST}/Lookup"
    before = value(
        await scrape(bridge),
        "grpc_bridge_http_requests_total",
        route=route,
        method="GET",
        status_class="2xx",
    )
    result = await connect_node_call(
        bridge.url,
        f"{TEST}/Lookup",
        {"fString": "cached?", "rInt32": [5]},
        binary=binary,
        use_http_get=True,
    )
    assert result.error is None
    assert result.messages == [{"fString": "cached?", "rInt32": [5]}]
    after = value(
        await scrape(bridge),
        "grpc_bridge_http_requests_total",
        route=route,
        method="GET",
        status_class="2xx",
    )
    assert after == before + 1


@ENCODINGS
async def test_bidi_over_http11_is_refused_saying_it_needs_http2(
    bridge: RunningBridge, upstream: RunningServer, binary: bool
) -> None:
    result = await connect_node_call(
        bridge.url, f"{TEST}/Bidi", requests=[{"text": "bidi"}], binary=binary
    )
    assert result.error is not None and result.error.code == "unimplemented"
    assert "needs HTTP/2 end to end" in result.error.message
    assert "bidi" not in upstream.test.received


async def test_calls_are_counted_as_connect_and_streams_by_the_connect_framing(
    bridge: RunningBridge,
) -> None:
    before = value(await scrape(bridge), "grpc_bridge_protocol_requests_total", protocol="connect")
    await connect_node_call(bridge.url, f"{TEST}/Echo", {})
    await connect_node_call(bridge.url, f"{TEST}/ServerStream", {"count": 1})
    samples = await scrape(bridge)
    assert value(samples, "grpc_bridge_protocol_requests_total", protocol="connect") == before + 2
    assert ("grpc_bridge_streams_open", frozenset({("framing", "connect")})) in samples
