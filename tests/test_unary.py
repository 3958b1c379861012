"""Unary calls on the generic route, end to end: real upstream, real bridge, real HTTP."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest
from bridgetest.v1 import common_pb2, kitchen_pb2
from google.protobuf import json_format, timestamp_pb2

from tests.helpers.harness import EDGES, MakeBridge, RunningBridge
from tests.helpers.servers import RunningServer

ECHO = "/bridgetest.v1.TestService/Echo"
LOOKUP = "/bridgetest.v1.TestService/Lookup"
FAIL = "/bridgetest.v1.TestService/Fail"
SLEEP = "/bridgetest.v1.TestService/Sleep"
META = "/bridgetest.v1.TestService/EchoMetadata"


#: Unary JSON calls, their errors and metadata: the lean edge serves them, aiohttp too.
pytestmark = pytest.mark.both_edges


def full_kitchen() -> kitchen_pb2.Kitchen:
    k = kitchen_pb2.Kitchen(
        f_double=1.5,
        f_float=-2.25,
        f_int32=-(2**31),
        f_int64=2**63 - 1,
        f_uint32=2**32 - 1,
        f_uint64=2**64 - 1,
        f_sint32=-7,
        f_sint64=-(2**63),
        f_fixed32=7,
        f_fixed64=2**64 - 2,
        f_sfixed32=-8,
        f_sfixed64=-9,
        f_bool=True,
        f_string="héllo ✓",
        f_bytes=b"\x00\xff\xfe binary",
        color=common_pb2.GREEN,
        nested=common_pb2.Nested(name="n", value=1, child=common_pb2.Nested(name="c")),
        r_int32=[1, -2, 3],
        r_string=["a", "b"],
        r_nested=[common_pb2.Nested(name="x"), common_pb2.Nested(value=2)],
        r_color=[common_pb2.RED, common_pb2.BLUE],
        m_str_int={"a": 1, "b": -2},
        m_int_nested={-5: common_pb2.Nested(name="neg"), 2**40: common_pb2.Nested(name="big")},
        m_bool_str={True: "yes", False: "no"},
        o_nested=common_pb2.Nested(name="oneof"),
        opt_int32=0,
        opt_string="",
    )
    k.ts.FromJsonString("2024-02-29T12:34:56.789Z")
    k.dur.FromJsonString("-3.5s")
    k.st.update({"a": [1, "two", None, {"b": True}], "n": None})
    k.val.list_value.extend([1, "x"])
    k.any.Pack(timestamp_pb2.Timestamp(seconds=5))
    k.w_int32.value = 0
    k.w_string.value = "w"
    k.w_bool.value = False
    k.w_int64.value = -(2**62)
    k.w_bytes.value = b"\x01"
    k.w_double.value = float("inf")
    k.w_uint64.value = 2**64 - 1
    k.w_float.value = float("-inf")
    k.w_uint32.value = 3
    k.mask.paths.extend(["f_int32", "nested.name"])
    k.empty.SetInParent()
    k.lv.extend([1.5, "s", False])
    k.r_ts.add(seconds=1, nanos=5000)
    k.m_values["k"].string_value = "v"
    return k


def expected(msg: Any, **options: Any) -> Any:
    return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True, **options)


async def test_the_bridge_runs_the_edge_its_test_id_names(
    bridge: RunningBridge, edge: str, hand_overs: list[bytes]
) -> None:
    """conftest.py's ``bridge`` follows ``edge``: only the lean edge hands HEAD to aiohttp."""
    assert bridge.server.bridge.settings.listen.fast_path is EDGES[edge]
    status, _, _ = await bridge.post(ECHO, {})
    async with bridge.session.head(f"{bridge.url}{LOOKUP}") as resp:
        assert (status, resp.status) == (200, 200)
    assert len(hand_overs) == (1 if edge == "lean" else 0)


async def test_round_trip_every_field_type(bridge: RunningBridge) -> None:
    kitchen = full_kitchen()
    status, body, headers = await bridge.post(ECHO, json_format.MessageToJson(kitchen))
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert body == expected(kitchen)
    # And what came back parses to the same message.
    assert json_format.ParseDict(body, kitchen_pb2.Kitchen()) == kitchen


async def test_proto_field_names_accepted(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.post(ECHO, {"f_int32": 5, "fInt64": "7"})
    assert status == 200, body
    assert body["fInt32"] == 5 and body["fInt64"] == "7"


async def test_empty_body_is_the_empty_message(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.post(ECHO, b"")
    assert status == 200
    assert body == expected(kitchen_pb2.Kitchen())


async def test_no_content_type_is_json(bridge: RunningBridge) -> None:
    async with bridge.session.post(
        f"{bridge.url}{ECHO}", data=b'{"fInt32": 3}', skip_auto_headers=["Content-Type"]
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["fInt32"] == 3


@pytest.mark.parametrize(
    ("json_settings", "key", "value"),
    [
        ({"use_proto_names": True}, "f_int64", "0"),
        ({"enums_as_ints": True}, "color", 0),
        ({"emit_unpopulated": False}, "fInt64", None),
    ],
)
async def test_json_options(
    make_bridge: MakeBridge,
    upstream: RunningServer,
    json_settings: dict[str, Any],
    key: str,
    value: Any,
) -> None:
    b = await make_bridge(upstream.target, json=json_settings)
    status, body, _ = await b.post(ECHO, {})
    assert status == 200
    assert body.get(key) == value


async def test_get_with_query_for_no_side_effects_method(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.get(
        f"{LOOKUP}?f_int32=4&fString=hi&color=BLUE&r_int32=1&r_int32=2&nested.name=x&f_bool=true&ts=2020-01-01T00:00:00Z"
    )
    assert status == 200, body
    assert body["fInt32"] == 4 and body["fString"] == "hi" and body["color"] == "BLUE"
    assert body["rInt32"] == [1, 2] and body["nested"]["name"] == "x" and body["fBool"] is True
    assert body["ts"] == "2020-01-01T00:00:00Z"


async def test_get_query_errors(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.get(f"{LOOKUP}?nope=1")
    assert status == 400 and body["code"] == 3 and "nope" in body["message"]
    status, body, _ = await bridge.get(f"{LOOKUP}?f_int32=abc")
    assert status == 400 and "f_int32" in body["message"]


async def test_get_not_allowed_on_side_effecting_method(bridge: RunningBridge) -> None:
    status, body, headers = await bridge.get(ECHO)
    assert status == 405
    assert headers["Allow"] == "POST"
    assert body["code"] == 12 and "GET" in body["message"]
    async with bridge.session.put(f"{bridge.url}{LOOKUP}") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET, HEAD, POST"


async def test_unknown_route(bridge: RunningBridge) -> None:
    for path in ("/bridgetest.v1.TestService/Nope", "/nope", "/", "/healthz", "/metrics"):
        status, body, _ = await bridge.post(path, {})
        assert status == 404, path
        assert body["code"] == 5 and path in body["message"]


@pytest.mark.parametrize(
    ("content_type", "hint"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "curl -d"),
        ("application/json; charset=latin-1", "charset"),
    ],
)
async def test_unsupported_media_type(bridge: RunningBridge, content_type: str, hint: str) -> None:
    status, body, _ = await bridge.post(ECHO, b"{}", headers={"Content-Type": content_type})
    assert status == 415 and body["code"] == 3 and hint in body["message"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{", "malformed JSON"),
        (b'{"fInt32": 1,}', "malformed JSON"),
        (b'{"bogus": 1}', "bogus"),
        (b'{"fInt32": "abc"}', "fInt32"),
        (b'{"fInt32": 4294967296}', "fInt32"),
        (b'{"fUint32": -1}', "fUint32"),
        (b'{"color": "PURPLE"}', "color"),
        (b'{"oString": "a", "oInt64": "1"}', "o"),
        (b'{"fBytes": "!!!"}', "fBytes"),
        (b'{"ts": "yesterday"}', "ts"),
        (b'{"nested": 5}', "nested"),
        (b"[1, 2]", "Kitchen"),
        (b"\xff\xfe", "JSON"),
        (b"[" * 100 + b"]" * 100, "deeper than 64"),
        (b'{"st": ' + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"}", "deeper than 64"),
    ],
)
async def test_bad_json_is_400_naming_the_problem(
    bridge: RunningBridge, payload: bytes, fragment: str
) -> None:
    status, body, _ = await bridge.post(ECHO, payload)
    assert status == 400, body
    assert body["code"] == 3
    assert fragment in body["message"], body["message"]
    # The daemon keeps serving everyone else.
    status, _, _ = await bridge.post(ECHO, {"fInt32": 1})
    assert status == 200


async def test_unknown_fields_can_be_ignored(
    make_bridge: MakeBridge, upstream: RunningServer
) -> None:
    b = await make_bridge(upstream.target, json={"ignore_unknown_fields": True})
    status, body, _ = await b.post(ECHO, {"bogus": 1, "fInt32": 2})
    assert status == 200 and body["fInt32"] == 2


async def test_body_over_limit_is_413(make_bridge: MakeBridge, upstream: RunningServer) -> None:
    b = await make_bridge(upstream.target, limits={"max_request_bytes": 100})
    status, body, _ = await b.post(ECHO, {"fString": "x" * 200})
    assert status == 413 and body["code"] == 8 and "100 bytes" in body["message"]

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 50

    status, body, _ = await b.post(ECHO, chunks())
    assert status == 413
    status, _, _ = await b.post(ECHO, {"fString": "ok"})
    assert status == 200


async def test_upstream_error_maps_status_and_renders_details(bridge: RunningBridge) -> None:
    status, body, headers = await bridge.post(
        FAIL,
        {
            "code": 9,
            "message": "precondition",
            "withDetails": True,
            "trailers": {"x-why": "because"},
        },
    )
    assert status == 400
    assert body["code"] == 9 and body["message"] == "precondition"
    details = body["details"]
    assert details[0] == {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "name", "description": "must not be empty"}],
    }
    assert details[1] == {
        "@type": "type.googleapis.com/bridgetest.v1.CustomDetail",
        "reason": "flaky",
        "attempt": 3,
    }
    assert details[2] == {
        "@type": "type.googleapis.com/unknown.v1.Mystery",
        "value": base64.b64encode(b"\x01\x02\x03").decode(),
    }
    assert headers["Grpc-Trailer-x-why"] == "because"
    assert "Grpc-Trailer-grpc-status-details-bin" not in headers


@pytest.mark.parametrize(
    ("code", "http"),
    [
        (1, 499),
        (2, 500),
        (3, 400),
        (4, 504),
        (5, 404),
        (6, 409),
        (7, 403),
        (8, 429),
        (9, 400),
        (10, 409),
        (11, 400),
        (12, 501),
        (13, 500),
        (14, 503),
        (15, 500),
        (16, 401),
    ],
)
async def test_code_to_http_status(bridge: RunningBridge, code: int, http: int) -> None:
    status, body, _ = await bridge.post(FAIL, {"code": code, "message": f"failed {code}"})
    assert status == http
    assert body == {"code": code, "message": f"failed {code}", "details": []}


async def test_metadata_forwarding(bridge: RunningBridge) -> None:
    status, body, headers = await bridge.post(
        META,
        {},
        headers={
            "Authorization": "Bearer abc",
            "Grpc-Metadata-Tenant": "acme",
            "Grpc-Metadata-Blob-Bin": base64.b64encode(b"\x00\x01\x02").decode(),
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "Cookie": "session=secret",
            "X-Forwarded-For": "203.0.113.7",
        },
    )
    assert status == 200, body
    received = body["received"]
    assert received["authorization"] == "Bearer abc"
    assert received["tenant"] == "acme"
    assert base64.b64decode(received["blob-bin"]) == b"\x00\x01\x02"
    assert received["traceparent"].startswith("00-4bf9")
    # The client's X-Forwarded-For is not trusted by default: the peer alone.
    assert received["x-forwarded-for"] == "127.0.0.1"
    assert received["x-forwarded-proto"] == "http"
    assert received["x-forwarded-host"].startswith("127.0.0.1:")
    assert "cookie" not in received
    request_id = headers["X-Request-Id"]
    assert received["x-request-id"] == request_id and len(request_id) == 32
    assert headers["Grpc-Metadata-x-initial"] == "yes"
    assert base64.b64decode(headers["Grpc-Metadata-x-initial-bin"]) == b"\x00\x01"
    assert headers["Grpc-Trailer-x-trailer"] == "done"
    assert base64.b64decode(headers["Grpc-Trailer-x-trailer-bin"]) == b"\xff"


async def test_request_id_is_kept(bridge: RunningBridge) -> None:
    status, body, headers = await bridge.post(META, {}, headers={"X-Request-Id": "req-42"})
    assert headers["X-Request-Id"] == "req-42" and body["received"]["x-request-id"] == "req-42"
    status, body, headers = await bridge.post(ECHO, b"{", headers={"X-Request-Id": "req-43"})
    assert status == 400 and headers["X-Request-Id"] == "req-43"


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"Grpc-Metadata-Blob-Bin": "***"}, "not valid base64"),
        ({"Grpc-Metadata-Note": "a\tb"}, "control or non-ASCII"),
        ({"Grpc-Timeout": "soon"}, "invalid Grpc-Timeout"),
        ({"Connect-Timeout-Ms": "-1"}, "invalid Connect-Timeout-Ms"),
    ],
)
async def test_bad_headers_are_400(
    bridge: RunningBridge, headers: dict[str, str], fragment: str
) -> None:
    status, body, _ = await bridge.post(META, {}, headers=headers)
    assert status == 400 and body["code"] == 3 and fragment in body["message"]


async def test_metadata_over_limit(make_bridge: MakeBridge, upstream: RunningServer) -> None:
    b = await make_bridge(upstream.target, limits={"max_metadata_bytes": 64})
    status, body, _ = await b.post(META, {}, headers={"Grpc-Metadata-Big": "x" * 100})
    assert status == 431 and body["code"] == 8


async def test_deadline_from_header_is_504_and_cancels_upstream(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body, _ = await bridge.post(
        SLEEP, {"duration": "5s", "tag": "t1"}, headers={"Grpc-Timeout": "200m"}
    )
    assert status == 504 and body["code"] == 4
    assert loop.time() - started < 2
    for _ in range(50):
        if "t1" in upstream.test.cancelled:
            break
        await asyncio.sleep(0.02)
    assert "t1" in upstream.test.cancelled


async def test_connect_timeout_header(bridge: RunningBridge) -> None:
    status, _body, _ = await bridge.post(
        SLEEP, {"duration": "5s"}, headers={"Connect-Timeout-Ms": "150"}
    )
    assert status == 504


async def test_default_and_max_timeouts(make_bridge: MakeBridge, upstream: RunningServer) -> None:
    b = await make_bridge(
        None,
        upstreams=[
            {"name": "t", "targets": [upstream.target], "timeout_s": 0.2, "max_timeout_s": 0.3}
        ],
    )
    status, _, _ = await b.post(SLEEP, {"duration": "2s"})
    assert status == 504  # default deadline
    status, _, _ = await b.post(SLEEP, {"duration": "2s"}, headers={"Grpc-Timeout": "10S"})
    assert status == 504  # clamped to max_timeout_s
    status, body, _ = await b.post(SLEEP, {"duration": "0.05s"}, headers={"Grpc-Timeout": "10S"})
    assert status == 200 and body["completed"] is True


async def test_streaming_methods_are_served_on_this_route(bridge: RunningBridge) -> None:
    # A JSON object is a request stream of one (tests/test_streaming_requests.py).
    status, body, _ = await bridge.post("/bridgetest.v1.TestService/ClientStream", {})
    assert status == 200 and body == {"count": 1, "texts": [""]}


async def test_bad_input_never_disturbs_other_requests(bridge: RunningBridge) -> None:
    bad = [b"{", b"[" * 10000, b'{"fInt32": "x"}', b"\x00\x01", b'{"nested": {"child": 1}}']

    async def good(i: int) -> int:
        status, body, _ = await bridge.post(ECHO, {"fInt32": i})
        assert body["fInt32"] == i
        return status

    async def garbage(payload: bytes) -> int:
        status, _, _ = await bridge.post(ECHO, payload)
        return status

    results = await asyncio.gather(*(good(i) for i in range(20)), *(garbage(p) for p in bad * 4))
    assert results[:20] == [200] * 20
    assert set(results[20:]) == {400}


async def test_admin_paths_are_not_on_the_proxy_port(bridge: RunningBridge) -> None:
    status, _, _ = await bridge.get("/readyz")
    assert status == 404
    async with bridge.session.get(f"{bridge.admin_url}/healthz") as resp:
        assert resp.status == 200


async def test_any_and_struct_survive(bridge: RunningBridge) -> None:
    k = kitchen_pb2.Kitchen()
    k.any.Pack(common_pb2.Nested(name="packed"))
    k.st.update({"deep": {"list": [1, 2, {"x": None}]}})
    status, body, _ = await bridge.post(ECHO, json_format.MessageToJson(k))
    assert status == 200
    assert body["any"] == {
        "@type": "type.googleapis.com/bridgetest.v1.Nested",
        "name": "packed",
        "value": 0,
    }
    assert body["st"] == {"deep": {"list": [1, 2, {"x": None}]}}
    assert orjson.loads(orjson.dumps(body)) == body
