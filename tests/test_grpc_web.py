"""gRPC-Web on the wire (grpc/grpc doc/PROTOCOL-WEB.md), for each form the bridge serves:
binary protobuf, base64 text and JSON frames.

Answers are a message frame per message then the trailer frame; an error before any
message is trailers-only (HTTP 200, the status in the headers, an empty body), the
bridge's own errors included; the body is bounded and checked as it arrives.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib
from collections.abc import AsyncIterator
from urllib.parse import unquote

import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from grpc_bridge.status import Code
from tests.helpers.grpc_web_tools import VARIANTS, Reply, Variant, frame, grpc_web_call
from tests.helpers.harness import MakeBridge, RunningBridge, running_bridge, scrape, value
from tests.helpers.raw_http import exchange
from tests.helpers.servers import RunningServer, rich_status

TEST = "/bridgetest.v1.TestService"
EACH = pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
PROTOBUF = pytest.mark.parametrize(
    "variant", [VARIANTS["binary"], VARIANTS["text"]], ids=["binary", "text"]
)
LIMIT = 64 * 1024
#: Every test with the ``bridge`` fixture runs on both HTTP/1.1 edges: the lean one
#: serves unary calls with the protocol's own steps, aiohttp the rest.
pytestmark = pytest.mark.both_edges


@pytest.fixture
async def bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(
        upstream.target, limits={"max_request_bytes": LIMIT}, cors={"allowed_origins": ["*"]}
    )


async def call(
    bridge: RunningBridge,
    variant: Variant,
    method: str,
    body: Message | bytes | AsyncIterator[bytes],
    headers: dict[str, str] | None = None,
) -> Reply:
    """POST to a TestService method; a message is framed as ``variant`` says."""
    if isinstance(body, Message):
        body = variant.body(body)
    return await grpc_web_call(
        bridge.session, f"{bridge.url}{TEST}/{method}", variant, body, headers
    )


@EACH
async def test_a_unary_answer_is_one_message_frame_then_the_trailer_frame(
    bridge: RunningBridge, variant: Variant
) -> None:
    sent = kitchen_pb2.Kitchen(f_string="hi", f_int64=5, r_int32=[1, 2])
    reply = await call(bridge, variant, "Echo", sent)
    assert reply.status == 200
    assert reply.headers["content-type"] == variant.answer_type
    assert [flag for flag, _ in reply.frames] == [0x00, 0x80]
    assert variant.message(reply.messages[0], kitchen_pb2.Kitchen) == sent
    assert reply.frames[-1][1] == b"grpc-status: 0\r\n"


@EACH
async def test_a_stream_sends_a_frame_per_message_and_its_trailers_last(
    bridge: RunningBridge, variant: Variant
) -> None:
    reply = await call(bridge, variant, "ServerStream", kitchen_pb2.StreamRequest(count=3, tag="s"))
    assert reply.status == 200
    assert reply.headers["content-type"] == variant.answer_type
    assert [variant.message(m, kitchen_pb2.StreamReply) for m in reply.messages] == [
        kitchen_pb2.StreamReply(index=i, text=f"s-{i}") for i in range(3)
    ]
    assert reply.trailers == {"grpc-status": "0"}


@EACH
async def test_a_stream_that_ends_without_messages_still_ends_with_its_trailer_frame(
    bridge: RunningBridge, variant: Variant
) -> None:
    reply = await call(bridge, variant, "ServerStream", kitchen_pb2.StreamRequest(count=0))
    assert reply.status == 200
    assert reply.messages == []
    assert reply.trailers == {"grpc-status": "0"}


@EACH
async def test_text_answers_encode_each_frame_on_its_own(
    bridge: RunningBridge, variant: Variant
) -> None:
    reply = await call(
        bridge,
        variant,
        "ServerStream",
        kitchen_pb2.StreamRequest(count=2, tag="t"),
        headers={"Accept": "application/grpc-web-text"},
    )
    if variant.json:
        # JSON frames are answered as asked: binary frames of JSON.
        assert reply.headers["content-type"] == "application/grpc-web+json"
        return
    assert reply.headers["content-type"] == "application/grpc-web-text+proto"
    pieces = [base64.b64encode(frame(m)) for m in reply.messages]
    pieces.append(base64.b64encode(frame(b"grpc-status: 0\r\n", 0x80)))
    assert reply.body == b"".join(pieces)


@EACH
@pytest.mark.parametrize("method", ["Fail", "ServerStream"])
async def test_an_error_before_any_message_is_trailers_only(
    bridge: RunningBridge, variant: Variant, method: str
) -> None:
    message = "nöpe: 100% wrong\nreally"
    request = (
        kitchen_pb2.FailRequest(
            code=5, message=message, with_details=True, trailers={"x-why": "because"}
        )
        if method == "Fail"
        else kitchen_pb2.StreamRequest(count=0, fail_code=5, fail_after=0)
    )
    reply = await call(bridge, variant, method, request)
    assert (reply.status, reply.body) == (200, b"")
    assert reply.headers["content-type"] == variant.answer_type
    assert reply.headers["grpc-status"] == "5"
    if method == "Fail":
        # Percent-encoded as gRPC does: UTF-8 bytes, controls and '%' escaped.
        assert reply.headers["grpc-message"] == "n%C3%B6pe: 100%25 wrong%0Areally"
        assert unquote(reply.headers["grpc-message"]) == message
        details = base64.b64decode(reply.headers["grpc-status-details-bin"])
        assert details == rich_status(5, message).SerializeToString()
        assert reply.headers["x-why"] == "because"
    else:
        assert reply.headers["grpc-message"] == "failing after 0"


@EACH
async def test_an_error_after_messages_is_the_trailer_frame(
    bridge: RunningBridge, variant: Variant
) -> None:
    reply = await call(
        bridge,
        variant,
        "ServerStream",
        kitchen_pb2.StreamRequest(count=5, tag="f", fail_code=9, fail_after=2),
    )
    assert reply.status == 200
    assert len(reply.messages) == 2
    assert reply.trailers == {"grpc-status": "9", "grpc-message": "failing after 2"}


@EACH
async def test_trailing_metadata_goes_in_the_trailer_frame_and_initial_in_headers(
    bridge: RunningBridge, variant: Variant
) -> None:
    reply = await call(
        bridge,
        variant,
        "EchoMetadata",
        empty_pb2.Empty(),
        headers={"x-test": "v", "x-test-bin": base64.b64encode(b"\x00\xff").decode()},
    )
    received = variant.message(reply.messages[0], kitchen_pb2.MetadataResponse).received
    assert received["x-test"] == "v"
    assert base64.b64decode(received["x-test-bin"]) == b"\x00\xff"
    assert "x-grpc-web" not in received and "x-user-agent" not in received
    assert reply.headers["x-initial"] == "yes"
    assert base64.b64decode(reply.headers["x-initial-bin"]) == b"\x00\x01"
    trailers = reply.trailers
    assert trailers is not None
    assert (trailers["x-trailer"], base64.b64decode(trailers["x-trailer-bin"])) == ("done", b"\xff")
    assert "x-trailer" not in reply.headers


@EACH
async def test_grpc_timeout_is_the_upstream_deadline(
    bridge: RunningBridge, upstream: RunningServer, variant: Variant
) -> None:
    tag = f"deadline-{variant.name}"
    request = kitchen_pb2.SleepRequest(tag=tag)
    request.duration.FromSeconds(30)
    reply = await call(bridge, variant, "Sleep", request, headers={"grpc-timeout": "200m"})
    assert (reply.status, reply.body, reply.headers["grpc-status"]) == (
        200,
        b"",
        str(Code.DEADLINE_EXCEEDED.value),
    )
    await upstream.test.wait_for("cancelled", tag, within=30)


@EACH
@pytest.mark.parametrize(
    ("method", "headers", "code", "message"),
    [
        ("NoSuchMethod", {}, Code.UNIMPLEMENTED, "no route for POST"),
        ("ClientStream", {}, Code.UNIMPLEMENTED, "gRPC-Web has only unary and server-streaming"),
        ("Bidi", {}, Code.UNIMPLEMENTED, "gRPC-Web has only unary and server-streaming"),
        ("Echo", {"grpc-timeout": "soon"}, Code.INVALID_ARGUMENT, "invalid Grpc-Timeout"),
        ("Echo", {"x-bad-bin": "@@@"}, Code.INVALID_ARGUMENT, "not valid base64"),
    ],
    ids=["unknown method", "client streaming", "bidi", "bad timeout", "bad metadata"],
)
async def test_the_bridges_own_errors_are_trailers_only_with_grpc_codes(
    bridge: RunningBridge,
    variant: Variant,
    method: str,
    headers: dict[str, str],
    code: Code,
    message: str,
) -> None:
    reply = await call(bridge, variant, method, kitchen_pb2.Kitchen(), headers=headers)
    assert (reply.status, reply.body) == (200, b"")
    assert reply.headers["content-type"] == variant.answer_type
    assert reply.headers["grpc-status"] == str(code.value)
    assert message in unquote(reply.headers["grpc-message"])


@EACH
async def test_a_frame_longer_than_the_body_limit_is_resource_exhausted(
    bridge: RunningBridge, variant: Variant
) -> None:
    reply = await call(bridge, variant, "Echo", variant.body(b"x" * (LIMIT + 1)))
    assert (reply.status, reply.body, reply.headers["grpc-status"]) == (200, b"", "8")
    assert "limits.max_request_bytes" in unquote(reply.headers["grpc-message"])


async def test_an_oversize_frame_is_refused_from_its_head_before_its_bytes_arrive(
    bridge: RunningBridge,
) -> None:
    head = frame(b"")[:1] + (LIMIT + 1).to_bytes(4, "big")
    request = (
        f"POST {TEST}/Echo HTTP/1.1\r\nHost: b\r\nContent-Type: application/grpc-web\r\n"
        f"Content-Length: {LIMIT + 6}\r\n\r\n"
    ).encode() + head
    answer = await exchange(bridge.server.proxy_port, request, within=10)
    assert not isinstance(answer, str), answer
    status, headers, body = answer
    assert (status, headers["grpc-status"], body) == (200, "8", b"")


async def test_a_server_that_is_not_ready_answers_unavailable() -> None:
    async with running_bridge("127.0.0.1:1", ready=False) as bridge:
        reply = await call(bridge, VARIANTS["binary"], "Echo", kitchen_pb2.Kitchen())
    assert (reply.status, reply.body, reply.headers["grpc-status"]) == (200, b"", "14")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00\x00",
        b"\x00\x00\x00\x00\x09ab",
        frame(b"") + b"\x00",
        frame(b"") + frame(b""),
        frame(b"", 0x80),
        frame(b"", 0x02),
    ],
    ids=["empty", "partial head", "truncated", "trailing byte", "two frames", "trailer", "flag"],
)
@EACH
async def test_a_malformed_body_is_invalid_argument_naming_the_problem(
    bridge: RunningBridge, variant: Variant, body: bytes
) -> None:
    reply = await call(bridge, variant, "Echo", variant.wire(body))
    assert (reply.status, reply.body, reply.headers["grpc-status"]) == (200, b"", "3")
    assert unquote(reply.headers["grpc-message"]).startswith("malformed gRPC-Web request: ")


@pytest.mark.parametrize("body", [b"AAA!", b"AAAAAA", b"A===", b"=AAA"])
async def test_text_that_is_not_base64_is_a_400(bridge: RunningBridge, body: bytes) -> None:
    reply = await call(bridge, VARIANTS["text"], "Echo", body)
    assert (reply.status, reply.body, reply.headers["grpc-status"]) == (400, b"", "3")
    assert "not base64" in unquote(reply.headers["grpc-message"]) or "incomplete" in unquote(
        reply.headers["grpc-message"]
    )


async def test_text_is_decoded_as_it_arrives_in_any_pieces(bridge: RunningBridge) -> None:
    sent = kitchen_pb2.Kitchen(f_string="pieces")
    data = frame(sent.SerializeToString())
    # Padded at a chunk boundary, as a client flushing twice sends it.
    body = base64.b64encode(data[:4]) + base64.b64encode(data[4:])

    async def trickle() -> AsyncIterator[bytes]:
        for i in range(len(body)):
            yield body[i : i + 1]
            await asyncio.sleep(0)

    reply = await call(bridge, VARIANTS["text"], "Echo", trickle())
    assert reply.status == 200
    assert kitchen_pb2.Kitchen.FromString(reply.messages[0]) == sent


@pytest.mark.parametrize(
    "content_type",
    ["application/grpc-web+thrift", "application/grpc-web-text+json", "application/grpc-webx"],
)
async def test_other_grpc_web_subtypes_are_415(bridge: RunningBridge, content_type: str) -> None:
    async with bridge.session.post(
        f"{bridge.url}{TEST}/Echo", data=frame(b""), headers={"Content-Type": content_type}
    ) as resp:
        assert resp.status == 415
        assert resp.headers["grpc-status"] == "3"
        assert "unsupported Content-Type" in unquote(resp.headers["grpc-message"])
        assert await resp.read() == b""


async def test_content_type_parameters_are_ignored(bridge: RunningBridge) -> None:
    variant = VARIANTS["binary"]
    sent = kitchen_pb2.Kitchen(f_string="p")
    reply = await grpc_web_call(
        bridge.session,
        f"{bridge.url}{TEST}/Echo",
        Variant("p", "Application/GRPC-Web+proto; charset=utf-8", "", False, False),
        variant.body(sent),
    )
    assert reply.status == 200
    assert kitchen_pb2.Kitchen.FromString(reply.messages[0]) == sent


@PROTOBUF
@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compressed_message_is_inflated(
    bridge: RunningBridge, variant: Variant, coding: str
) -> None:
    sent = kitchen_pb2.Kitchen(f_string="z" * 1000)
    packed = (gzip.compress if coding == "gzip" else zlib.compress)(sent.SerializeToString())
    body = variant.wire(frame(packed, 0x01))
    reply = await call(bridge, variant, "Echo", body, headers={"grpc-encoding": coding})
    assert reply.status == 200
    assert kitchen_pb2.Kitchen.FromString(reply.messages[0]) == sent


@pytest.mark.parametrize(
    ("encoding", "payload", "code"),
    [
        (None, gzip.compress(b""), Code.INTERNAL),
        ("snappy", b"\x00", Code.UNIMPLEMENTED),
        ("gzip", b"not gzip", Code.INVALID_ARGUMENT),
        ("gzip", gzip.compress(b"\x00" * (LIMIT + 1)), Code.RESOURCE_EXHAUSTED),
    ],
    ids=["no coding", "unsupported coding", "malformed", "over the limit inflated"],
)
async def test_compressed_messages_that_cannot_be_read_are_refused(
    bridge: RunningBridge, encoding: str | None, payload: bytes, code: Code
) -> None:
    headers = {"grpc-encoding": encoding} if encoding else {}
    reply = await call(bridge, VARIANTS["binary"], "Echo", frame(payload, 0x01), headers)
    assert (reply.status, reply.body, reply.headers["grpc-status"]) == (200, b"", str(code.value))


async def test_cors_allows_what_grpc_web_clients_send_and_exposes_status_and_metadata(
    bridge: RunningBridge,
) -> None:
    asked = "x-grpc-web, x-user-agent, grpc-timeout, content-type"
    async with bridge.session.options(
        f"{bridge.url}{TEST}/EchoMetadata",
        headers={
            "Origin": "http://page.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": asked,
        },
    ) as resp:
        assert resp.status == 204
        allowed = {h.strip() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
        assert allowed == {h.strip() for h in asked.split(",")}
    for method, body in [
        ("EchoMetadata", empty_pb2.Empty()),
        ("Fail", kitchen_pb2.FailRequest(code=5, message="m", with_details=True)),
    ]:
        reply = await call(
            bridge, VARIANTS["binary"], method, body, headers={"Origin": "http://page.test"}
        )
        exposed = {h.strip() for h in reply.headers["access-control-expose-headers"].split(",")}
        expected = (
            {"x-initial", "x-initial-bin", "x-request-id"}
            if method == "EchoMetadata"
            else {"grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"}
        )
        assert {e.lower() for e in exposed} == expected


async def test_calls_are_counted_and_streams_gauged_as_grpc_web(bridge: RunningBridge) -> None:
    before = await scrape(bridge)
    gauge = ("grpc_bridge_streams_open", frozenset({("framing", "grpc-web")}))
    assert before[gauge] == 0  # there before any stream: rates read 0
    await call(bridge, VARIANTS["binary"], "Echo", kitchen_pb2.Kitchen())
    request = kitchen_pb2.StreamRequest(count=100, tag="open")
    request.interval.FromMilliseconds(50)
    variant = VARIANTS["text"]
    async with bridge.session.post(
        f"{bridge.url}{TEST}/ServerStream",
        data=variant.body(request),
        headers={"Content-Type": variant.content_type},
    ) as resp:
        await resp.content.readany()  # the first frame: the stream is open
        assert (await scrape(bridge))[gauge] == 1
    for _ in range(100):  # the stream's end is noticed once the client has gone
        if (await scrape(bridge))[gauge] == 0:
            break
        await asyncio.sleep(0.05)
    after = await scrape(bridge)
    assert after[gauge] == 0
    counted = "grpc_bridge_protocol_requests_total"
    assert (
        value(after, counted, protocol="grpc-web") - value(before, counted, protocol="grpc-web")
        == 2
    )


async def test_the_admin_port_says_which_methods_grpc_web_clients_can_call(
    bridge: RunningBridge,
) -> None:
    async with bridge.session.get(
        f"{bridge.admin_url}/v1/services/bridgetest.v1.TestService"
    ) as resp:
        methods = {m["name"]: m["grpc_web"] for m in (await resp.json())["methods"]}
    assert {name: m["available"] for name, m in methods.items()} == {
        "Echo": True,
        "Lookup": True,
        "Fail": True,
        "Sleep": True,
        "EchoMetadata": True,
        "ServerStream": True,
        "ClientStream": False,
        "Bidi": False,
    }
    assert "application/grpc-web-text" in methods["Echo"]["content_types"]


async def test_a_json_post_without_a_grpc_web_type_keeps_its_json_answer(
    bridge: RunningBridge,
) -> None:
    status, body, headers = await bridge.post(f"{TEST}/Echo", {"fString": "j"})
    assert status == 200 and body["fString"] == "j"
    assert headers["Content-Type"] == "application/json"
