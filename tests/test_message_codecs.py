"""Each protocol's messages go through the codec its media type names (codec/message.py).

- The protobuf codec passes the bytes through: what a client sends reaches
  the upstream, and what the upstream answers reaches the client, byte for
  byte, unknown fields and field order included, whether or not they parse.
- The JSON codec prints and reads messages as json_format does (the
  reference), and a message printed by it comes back from an echoing upstream
  as it was sent.
- Through a real bridge in front of an upstream that echoes the request's
  message bytes as they arrived: gRPC-Web's ``+proto`` (bare and text too),
  Connect's ``application/proto`` and ``connect+proto`` (and the GET's
  ``encoding=proto``) answer the very bytes sent; ``+json``,
  ``application/json``, ``connect+json`` and the plain JSON route answer the
  JSON codec's print of what the upstream got. On both HTTP/1.1 edges.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.codec.message import CODECS, JSON_CODEC, PROTO_CODEC, Codec
from grpc_bridge.discovery.loader import load_descriptor_sets
from grpc_bridge.routing.plan import MethodPlan, UpstreamLimits, plans_for
from tests.helpers.codec_tools import serialized
from tests.helpers.connect_tools import (
    JSON_STREAM,
    JSON_UNARY,
    PROTO_STREAM,
    PROTO_UNARY,
    envelope,
    envelopes,
    get,
    post,
)
from tests.helpers.grpc_web_tools import frame, split_frames, text_decode, trailer_lines
from tests.helpers.h2peer import HostilePeer, descriptor_set
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.message_strategies import kitchens

pytestmark = pytest.mark.both_edges

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEST = "bridgetest.v1.TestService"
#: What an ``Any`` may hold here: types the test service's own descriptors have.
ANY_TYPES = ("bridgetest.v1.Nested", "google.protobuf.Timestamp")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


#: Field 999 (no field of any bridgetest message), varint 42: an unknown field.
UNKNOWN_FIELD = _varint(999 << 3) + _varint(42)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> MethodPlan:
    """``TestService/Echo`` (Kitchen in, Kitchen out) as discovery plans it: a private pool."""
    path = descriptor_set(tmp_path_factory.mktemp("sets"))
    schema = load_descriptor_sets("u", [path])
    plans = plans_for(schema, JsonOptions(), UpstreamLimits(30, 300))
    return next(p for p in plans if p.full_name == f"{TEST}/Echo")


def printed(plan: MethodPlan, message: Message) -> dict[str, Any]:
    """The reference print of ``message`` with the bridge's default ``json.*`` options."""
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, descriptor_pool=plan.pool
    )


def strict(value: Any) -> bytes:
    """Canonical text: equal only if every key and value is (-0.0 and 0.0 differ)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def through_echo(codec: Codec, plan: MethodPlan, sent: bytes) -> bytes:
    """``sent`` decoded by ``codec``, sent upstream, echoed back and encoded for the client,
    as the transports serialise and parse the method's messages (upstream/invoker.py)."""
    request = codec.decode(plan, sent)
    info = codec.info(plan)
    reply = info.output_class.FromString(request.SerializeToString())
    return codec.encoder(plan)(reply)


# -- the codecs on their own ------------------------------------------------------------------


def _client_bytes(codec: Codec, plan: MethodPlan, message: Message) -> bytes:
    """How a client of ``codec`` writes ``message``: JSON as json_format prints it, protobuf
    with an unknown field ahead of the known ones (a re-encode would move it last)."""
    if codec is JSON_CODEC:
        return orjson.dumps(printed(plan, message))
    return UNKNOWN_FIELD + message.SerializeToString()


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS)
@PROPERTY
@given(data=st.data())
def test_a_message_comes_back_from_an_echoing_upstream_as_the_client_sent_it(
    plan: MethodPlan, codec: Codec, data: st.DataObject
) -> None:
    message = data.draw(kitchens(plan.pool, any_types=ANY_TYPES))
    sent = _client_bytes(codec, plan, message)
    answered = through_echo(codec, plan, sent)
    if codec.binary:
        assert answered == sent
    else:
        assert strict(orjson.loads(answered)) == strict(orjson.loads(sent))


@PROPERTY
@given(data=st.binary(max_size=64))
def test_the_proto_codec_passes_any_bytes_through_unchanged(plan: MethodPlan, data: bytes) -> None:
    # Whether the bytes parse is the upstream's (and the client's) to say, not the bridge's.
    message = PROTO_CODEC.decode(plan, data)
    assert message.SerializeToString() == data
    info = PROTO_CODEC.info(plan)
    assert PROTO_CODEC.encoder(plan)(info.output_class.FromString(data)) == data
    assert through_echo(PROTO_CODEC, plan, UNKNOWN_FIELD + data) == UNKNOWN_FIELD + data


@PROPERTY
@given(data=st.data())
def test_the_json_codec_prints_and_reads_messages_as_json_format_does(
    plan: MethodPlan, data: st.DataObject
) -> None:
    message = data.draw(kitchens(plan.pool, any_types=ANY_TYPES))
    body = JSON_CODEC.encoder(plan)(message)
    assert strict(orjson.loads(body)) == strict(printed(plan, message))
    decoded = JSON_CODEC.decode(plan, body)
    # Compared with what json_format reads, not with ``message``: JSON does not tell every
    # message apart (a Value holding nothing prints as null and reads back as a null).
    try:
        reference = json_format.Parse(body, plan.info.input_class(), descriptor_pool=plan.pool)
    except json_format.ParseError:
        assume(False)  # float32's maximum as printed, which json_format itself refuses to read
    else:
        assert serialized(decoded) == serialized(reference)


def test_the_json_codec_calls_the_method_with_its_messages_and_the_proto_codec_with_bytes(
    plan: MethodPlan,
) -> None:
    assert JSON_CODEC.info(plan) is plan.info
    assert PROTO_CODEC.info(plan) is plan.raw_info
    # The raw method reads any bytes: what they mean is the upstream's business.
    assert plan.raw_info.output_class.FromString(b"\xff").SerializeToString() == b"\xff"


# -- each protocol picks the codec its media type names ---------------------------------------

#: A Kitchen whose bytes a pass-through keeps as they are: an unknown field, then the known
#: ones out of field-number order (f_string is 14, f_int32 3): a re-encode changes both.
PROTO_SENT = (
    UNKNOWN_FIELD
    + kitchen_pb2.Kitchen(f_string="codec", r_int32=[1, 2]).SerializeToString()
    + kitchen_pb2.Kitchen(f_int32=7).SerializeToString()
)
JSON_MESSAGE = kitchen_pb2.Kitchen(f_string="codec", f_int32=7, r_int32=[1, 2], f_bytes=b"\xff")
JSON_SENT = json_format.MessageToJson(JSON_MESSAGE, indent=None).encode()
#: The server-streaming method's request; the echo answers its bytes as a StreamReply
#: (count is field 1, as StreamReply's index; tag, field 5, is unknown to StreamReply).
STREAM_MESSAGE = kitchen_pb2.StreamRequest(count=3, tag="t")
STREAM_PROTO_SENT = UNKNOWN_FIELD + STREAM_MESSAGE.SerializeToString()
STREAM_JSON_SENT = json_format.MessageToJson(STREAM_MESSAGE, indent=None).encode()


def _json_answer(message: Message) -> bytes:
    """What the JSON codec answers for ``message``, echoed (the bridge's default options)."""
    return orjson.dumps(
        json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    )


JSON_ANSWER = _json_answer(JSON_MESSAGE)
STREAM_JSON_ANSWER = _json_answer(
    kitchen_pb2.StreamReply.FromString(STREAM_MESSAGE.SerializeToString())
)


@dataclass(frozen=True)
class Form:
    """One request form of a protocol: how it is sent, and the message its answer carries."""

    codec: Codec
    content_type: str
    call: Callable[[RunningBridge], Awaitable[tuple[str, bytes]]]
    expected: bytes


async def _grpc_web(
    b: RunningBridge, method: str, content_type: str, payload: bytes, text: bool = False
) -> tuple[str, bytes]:
    body = frame(payload)
    data = base64.b64encode(body) if text else body
    answer = await post(b, f"{TEST}/{method}", data, {"Content-Type": content_type})
    assert answer.status == 200, answer
    frames = split_frames(text_decode(answer.body) if text else answer.body)
    assert [flag for flag, _ in frames] == [0, 0x80], frames
    assert ("grpc-status", "0") in trailer_lines(frames[1][1]), frames
    return answer.headers["Content-Type"], frames[0][1]


async def _connect_unary(
    b: RunningBridge, headers: dict[str, str], body: bytes
) -> tuple[str, bytes]:
    answer = await post(b, f"{TEST}/Echo", body, headers)
    assert answer.status == 200, answer
    return answer.headers["Content-Type"], answer.body


async def _connect_get(b: RunningBridge, encoding: str, message: str) -> tuple[str, bytes]:
    answer = await get(b, f"/{TEST}/Lookup?connect=v1&encoding={encoding}&{message}")
    assert answer.status == 200, answer
    return answer.headers["Content-Type"], answer.body


async def _connect_stream(
    b: RunningBridge, headers: dict[str, str], payload: bytes
) -> tuple[str, bytes]:
    answer = await post(b, f"{TEST}/ServerStream", envelope(payload), headers)
    assert answer.status == 200, answer
    frames = envelopes(answer.body)
    assert [flags for flags, _ in frames] == [0, 0x02], frames
    assert orjson.loads(frames[1][1]) == {}, frames  # the end, and no error
    return answer.headers["Content-Type"], frames[0][1]


async def _json_route(b: RunningBridge) -> tuple[str, bytes]:
    answer = await post(b, f"{TEST}/Echo", JSON_SENT, {"Content-Type": "application/json"})
    assert answer.status == 200, answer
    return answer.headers["Content-Type"], answer.body


FORMS = {
    "gRPC-Web +proto": Form(
        PROTO_CODEC, "application/grpc-web+proto",
        lambda b: _grpc_web(b, "Echo", "application/grpc-web+proto", PROTO_SENT), PROTO_SENT,
    ),
    "gRPC-Web, no subtype": Form(
        PROTO_CODEC, "application/grpc-web+proto",
        lambda b: _grpc_web(b, "Echo", "application/grpc-web", PROTO_SENT), PROTO_SENT,
    ),
    "gRPC-Web text": Form(
        PROTO_CODEC, "application/grpc-web-text+proto",
        lambda b: _grpc_web(b, "Echo", "application/grpc-web-text", PROTO_SENT, text=True),
        PROTO_SENT,
    ),
    "gRPC-Web +json": Form(
        JSON_CODEC, "application/grpc-web+json",
        lambda b: _grpc_web(b, "Echo", "application/grpc-web+json", JSON_SENT), JSON_ANSWER,
    ),
    "gRPC-Web +proto stream": Form(
        PROTO_CODEC, "application/grpc-web+proto",
        lambda b: _grpc_web(b, "ServerStream", "application/grpc-web+proto", STREAM_PROTO_SENT),
        STREAM_PROTO_SENT,
    ),
    "gRPC-Web +json stream": Form(
        JSON_CODEC, "application/grpc-web+json",
        lambda b: _grpc_web(b, "ServerStream", "application/grpc-web+json", STREAM_JSON_SENT),
        STREAM_JSON_ANSWER,
    ),
    "Connect proto": Form(
        PROTO_CODEC, "application/proto",
        lambda b: _connect_unary(b, PROTO_UNARY, PROTO_SENT), PROTO_SENT,
    ),
    "Connect json": Form(
        JSON_CODEC, "application/json",
        lambda b: _connect_unary(b, JSON_UNARY, JSON_SENT), JSON_ANSWER,
    ),
    "Connect GET proto": Form(
        PROTO_CODEC, "application/proto",
        lambda b: _connect_get(
            b, "proto", "base64=1&message=" + base64.urlsafe_b64encode(PROTO_SENT).decode()
        ),
        PROTO_SENT,
    ),
    "Connect GET json": Form(
        JSON_CODEC, "application/json",
        lambda b: _connect_get(b, "json", "message=" + quote(JSON_SENT.decode(), safe="")),
        JSON_ANSWER,
    ),
    "Connect connect+proto stream": Form(
        PROTO_CODEC, "application/connect+proto",
        lambda b: _connect_stream(b, PROTO_STREAM, STREAM_PROTO_SENT), STREAM_PROTO_SENT,
    ),
    "Connect connect+json stream": Form(
        JSON_CODEC, "application/connect+json",
        lambda b: _connect_stream(b, JSON_STREAM, STREAM_JSON_SENT), STREAM_JSON_ANSWER,
    ),
    "JSON route": Form(JSON_CODEC, "application/json", _json_route, JSON_ANSWER),
}  # fmt: skip


@pytest.fixture
async def echo_bridge(tmp_path: Path, make_bridge: MakeBridge) -> Any:
    """A bridge in front of an upstream that answers each call with the message it got."""
    async with HostilePeer(echo=True) as peer:
        upstream = {
            "name": "echo",
            "targets": [peer.target],
            "reflection": False,
            "descriptor_sets": [str(descriptor_set(tmp_path))],
        }
        yield await make_bridge(None, upstreams=[upstream])


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
async def test_each_protocol_answers_through_the_codec_its_media_type_names(
    echo_bridge: RunningBridge, form: Form
) -> None:
    content_type, message = await form.call(echo_bridge)
    assert content_type == form.content_type
    if form.codec is PROTO_CODEC:
        # Passed through both ways: the upstream echoed exactly what the client sent.
        assert message == form.expected
    else:
        assert strict(orjson.loads(message)) == strict(orjson.loads(form.expected))


def test_every_codec_is_served_by_some_protocol_form() -> None:
    assert {form.codec for form in FORMS.values()} == set(CODECS.values())
