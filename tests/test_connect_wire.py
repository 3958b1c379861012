"""The Connect protocol on the wire: which requests are Connect's, statuses, errors, GET, envelopes.

Requests are written by hand (tests/helpers/connect_tools.py), hostile ones included:
every failure of a Connect request, the bridge's own refusals too, is a
Connect error (JSON with the status of Connect's table for unary calls; HTTP
200 and an end-of-stream envelope for streams), and every bound holds as
bytes arrive.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2

from tests.helpers.connect_tools import (
    CONNECT,
    CONNECT_STATUS,
    JSON_STREAM,
    JSON_UNARY,
    PROTO_STREAM,
    PROTO_UNARY,
    TEST,
    connect_bridge,
    end_of_stream,
    envelope,
    envelopes,
    get,
    post,
)
from tests.helpers.harness import MakeBridge, RunningBridge, running_bridge
from tests.helpers.js_clients import CODE_NAMES
from tests.helpers.process import free_port
from tests.helpers.raw_http import bridge_on, exchange, next_request_log, read_answer, wait_ready
from tests.helpers.servers import RunningServer

LIMIT = 64 * 1024
#: Every test with the ``bridge`` fixture runs on both HTTP/1.1 edges: the lean one
#: serves unary POSTs with the protocol's own steps, aiohttp the rest.
pytestmark = pytest.mark.both_edges


@pytest.fixture
async def bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(upstream.target, limits={"max_request_bytes": LIMIT})


def _fail(code: int, **more: Any) -> dict[str, Any]:
    return {"code": code, "message": f"m{code}", **more}


@pytest.mark.parametrize(
    ("headers", "connect"),
    [
        ({"Content-Type": "application/json"}, False),
        (JSON_UNARY, True),
        ({"Content-Type": "application/json", "connect-protocol-version": "1"}, True),
    ],
    ids=["plain-json", "json+header", "lower-case-header"],
)
async def test_only_requests_with_connects_header_leave_the_json_routes(
    bridge: RunningBridge, headers: dict[str, str], connect: bool
) -> None:
    answer = await post(bridge, f"{TEST}/Fail", orjson.dumps(_fail(5)), headers)
    assert answer.status == 404
    assert answer.json()["code"] == ("not_found" if connect else 5)


@pytest.mark.parametrize("code", range(1, 17), ids=lambda c: CODE_NAMES[c])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "proto"])
async def test_unary_errors_take_connects_status_table_and_code_names(
    bridge: RunningBridge, code: int, binary: bool
) -> None:
    request = kitchen_pb2.FailRequest(code=code, message=f"m{code}")
    body = request.SerializeToString() if binary else orjson.dumps(_fail(code))
    answer = await post(bridge, f"{TEST}/Fail", body, PROTO_UNARY if binary else JSON_UNARY)
    assert answer.status == CONNECT_STATUS[code]
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"code": CODE_NAMES[code], "message": f"m{code}"}


async def test_error_details_are_bare_type_names_unpadded_base64_and_debug_json(
    bridge: RunningBridge,
) -> None:
    answer = await post(
        bridge, f"{TEST}/Fail", orjson.dumps(_fail(3, withDetails=True)), JSON_UNARY
    )
    details = answer.json()["details"]
    assert [d["type"] for d in details] == [
        "google.rpc.BadRequest",
        "bridgetest.v1.CustomDetail",
        "unknown.v1.Mystery",
    ]
    assert all("=" not in d["value"] for d in details)
    assert base64.b64decode(details[2]["value"] + "=") == b"\x01\x02\x03"
    assert details[1]["debug"] == {"reason": "flaky", "attempt": 3}
    assert "debug" not in details[2]  # a type no pool knows: its bytes only


async def test_unary_answers_carry_leading_metadata_bare_and_trailers_prefixed(
    bridge: RunningBridge,
) -> None:
    ok = await post(bridge, f"{TEST}/EchoMetadata", b"{}", JSON_UNARY)
    assert ok.status == 200 and ok.headers["Content-Type"] == "application/json"
    assert ok.headers["x-initial"] == "yes"
    assert base64.b64decode(ok.headers["x-initial-bin"]) == b"\x00\x01"
    assert ok.headers["trailer-x-trailer"] == "done"
    assert not [name for name in ok.headers if name.lower().startswith("grpc-")]
    failed = await post(
        bridge, f"{TEST}/Fail", orjson.dumps(_fail(7, trailers={"x-why": "no"})), JSON_UNARY
    )
    assert failed.headers["trailer-x-why"] == "no"
    assert "Grpc-Trailer-X-Why" not in failed.headers


def _refusals() -> list[tuple[str, str, bytes, dict[str, str], int, str, str]]:
    """(id, method, body, headers, unary status, code, message fragment)."""
    echo = f"{TEST}/Echo"
    return [
        ("no-route", "nope.v1.Svc/Method", b"{}", JSON_UNARY, 404, "unimplemented", "no route"),
        ("bad-json", echo, b"{", JSON_UNARY, 400, "invalid_argument", "JSON"),
        ("version-2", echo, b"{}", {**JSON_UNARY, "Connect-Protocol-Version": "2"}, 400,
         "invalid_argument", "Connect-Protocol-Version"),
        ("bad-timeout", echo, b"{}", {**JSON_UNARY, "Connect-Timeout-Ms": "soon"}, 400,
         "invalid_argument", "Connect-Timeout-Ms"),
        ("text-plain", echo, b"{}", {**CONNECT, "Content-Type": "text/plain"}, 415,
         "invalid_argument", "Content-Type"),
        ("unknown-codec", echo, b"{}", {"Content-Type": "application/connect+cbor"}, 415,
         "invalid_argument", "application/connect+json"),
        ("brotli-body", echo, b"{}", {**JSON_UNARY, "Content-Encoding": "br"}, 501,
         "unimplemented", "gzip"),
        ("too-large", echo, b" " * (LIMIT + 1), JSON_UNARY, 413, "resource_exhausted",
         "limits.max_request_bytes"),
        ("stream-method", f"{TEST}/ServerStream", b"{}", JSON_UNARY, 415, "invalid_argument",
         "server-stream"),
        ("bad-metadata", echo, b"{}", {**JSON_UNARY, "x-bin-bin": "%%%"}, 400,
         "invalid_argument", "base64"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "body", "headers", "status", "code", "fragment"),
    [case[1:] for case in _refusals()],
    ids=[case[0] for case in _refusals()],
)
async def test_the_bridges_own_refusals_are_connect_errors(
    bridge: RunningBridge,
    method: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
    fragment: str,
) -> None:
    answer = await post(bridge, method, body, headers)
    assert (answer.status, answer.headers["Content-Type"]) == (status, "application/json")
    error = answer.json()
    assert error["code"] == code and fragment in error["message"], error


async def test_get_on_a_method_with_side_effects_is_a_connect_405(bridge: RunningBridge) -> None:
    answer = await get(bridge, f"/{TEST}/Echo?connect=v1&encoding=json&message=%7B%7D")
    assert answer.status == 405 and answer.headers["Allow"] == "POST"
    assert answer.json()["code"] == "unimplemented"


async def test_a_deadline_is_a_connect_504(bridge: RunningBridge) -> None:
    body = orjson.dumps({"duration": "5s", "tag": "late"})
    answer = await post(bridge, f"{TEST}/Sleep", body, {**JSON_UNARY, "Connect-Timeout-Ms": "100"})
    assert answer.status == 504 and answer.json()["code"] == "deadline_exceeded"


async def test_an_upstream_not_discovered_yet_is_a_connect_503() -> None:
    async with running_bridge(
        f"shop=127.0.0.1:{free_port()}", ready=False, listen={"fast_path": False}
    ) as b:
        answer = await post(b, f"{TEST}/Echo", b"{}", JSON_UNARY)
        assert answer.status == 503
        assert answer.json()["code"] == "unavailable" and "shop" in answer.json()["message"]
        stream = await post(b, f"{TEST}/ServerStream", envelope(b"{}"), JSON_STREAM)
        assert stream.status == 200
        assert end_of_stream(stream.body)["error"]["code"] == "unavailable"


@pytest.mark.parametrize(
    ("method", "body", "code", "fragment"),
    [
        ("nope.v1.Svc/Method", envelope(b"{}"), "unimplemented", "no route"),
        (f"{TEST}/Echo", envelope(b"{}"), "invalid_argument", "unary"),
        (f"{TEST}/ServerStream", b"", "invalid_argument", "has none"),
        (f"{TEST}/ServerStream", envelope(b"{}") * 2, "invalid_argument", "envelope 2"),
        (f"{TEST}/ServerStream", envelope(b"{}")[:-1], "invalid_argument", "ends inside"),
        (f"{TEST}/ServerStream", envelope(b"{}", 0x02), "invalid_argument", "end-of-stream"),
        (f"{TEST}/ServerStream", envelope(b"{}", 0x80), "invalid_argument", "unknown flags"),
        (f"{TEST}/ServerStream", envelope(b"{}", 0x01), "invalid_argument", "compressed"),
        (f"{TEST}/ServerStream", envelope(b" " * (LIMIT + 1)), "resource_exhausted", "envelope 1"),
        (
            f"{TEST}/ClientStream",
            envelope(b"{}") + envelope(b"[", 0),
            "invalid_argument",
            "envelope 2",
        ),
        (
            f"{TEST}/ServerStream",
            envelope(b'{"count": 1, "failCode": 5}'),
            "not_found",
            "failing after 0",
        ),
    ],
    ids=[
        "no-route",
        "unary-method",
        "no-message",
        "two-messages",
        "truncated",
        "end-flag",
        "unknown-flag",
        "compressed-unannounced",
        "too-large",
        "bad-second-message",
        "upstream-error",
    ],
)
async def test_stream_errors_are_http_200_and_an_end_of_stream_envelope(
    bridge: RunningBridge, method: str, body: bytes, code: str, fragment: str
) -> None:
    answer = await post(bridge, method, body, JSON_STREAM)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/connect+json"
    assert len(envelopes(answer.body)) == 1
    error = end_of_stream(answer.body)["error"]
    assert error["code"] == code and fragment in error["message"], error


async def test_a_too_large_envelope_is_refused_from_its_length_before_its_bytes(
    bridge: RunningBridge,
) -> None:
    port = int(bridge.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (
            f"POST /{TEST}/ClientStream HTTP/1.1\r\nHost: b\r\n"
            "Content-Type: application/connect+proto\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        first = envelope(b"\x12\x01a") + b"\x00\x7f\xff\xff\xff"  # then 2 GiB never sent
        writer.write(head.encode() + f"{len(first):x}\r\n".encode() + first + b"\r\n")
        async with asyncio.timeout(10):
            status, headers, body = await read_answer(reader)
    finally:
        writer.close()
    assert status == 200 and headers["content-type"] == "application/connect+proto"
    error = end_of_stream(body)["error"]
    assert error["code"] == "resource_exhausted" and "envelope 2" in error["message"]


async def test_streams_frame_each_message_and_end_with_the_trailers(
    bridge: RunningBridge,
) -> None:
    request = kitchen_pb2.StreamRequest(count=3, tag="p").SerializeToString()
    answer = await post(bridge, f"{TEST}/ServerStream", envelope(request), PROTO_STREAM)
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/connect+proto"
    frames = envelopes(answer.body)
    assert [kitchen_pb2.StreamReply.FromString(m).text for _, m in frames[:-1]] == [
        "p-0",
        "p-1",
        "p-2",
    ]
    assert frames[-1] == (0x02, b"{}")
    texts = b"".join(envelope(orjson.dumps({"text": t})) for t in ("a", "b"))
    summary = await post(bridge, f"{TEST}/ClientStream", texts, JSON_STREAM)
    frames = envelopes(summary.body)
    assert orjson.loads(frames[0][1]) == {"count": 2, "texts": ["a", "b"]}
    assert end_of_stream(summary.body) == {"metadata": {"x-count": ["2"]}}


async def test_gzip_travels_in_envelopes_both_ways_and_inflation_is_bounded(
    bridge: RunningBridge,
) -> None:
    texts = ["x" * 800, "y" * 800]
    body = b"".join(envelope(gzip.compress(orjson.dumps({"text": t})), 0x01) for t in texts)
    headers = {**JSON_STREAM, "Connect-Content-Encoding": "gzip", "Connect-Accept-Encoding": "gzip"}
    answer = await post(bridge, f"{TEST}/ClientStream", body, headers)
    assert answer.headers["Connect-Content-Encoding"] == "gzip"
    (flags, message), end = envelopes(answer.body)
    assert flags == 0x01  # over compression.min_bytes: compressed
    assert orjson.loads(gzip.decompress(message))["texts"] == texts
    assert end == (0x02, b'{"metadata":{"x-count":["2"]}}')
    bomb = envelope(gzip.compress(b"{}" + b" " * (LIMIT * 4)), 0x01)
    refused = await post(bridge, f"{TEST}/ServerStream", bomb, headers)
    assert end_of_stream(refused.body)["error"]["code"] == "resource_exhausted"
    brotli = await post(
        bridge,
        f"{TEST}/ServerStream",
        envelope(b"{}"),
        {**JSON_STREAM, "Connect-Content-Encoding": "br"},
    )
    assert end_of_stream(brotli.body)["error"]["code"] == "unimplemented"


async def test_a_gzipped_unary_body_is_inflated_within_the_limit(bridge: RunningBridge) -> None:
    headers = {**JSON_UNARY, "Content-Encoding": "gzip"}
    ok = await post(bridge, f"{TEST}/Echo", gzip.compress(b'{"fString": "z"}'), headers)
    assert ok.status == 200 and orjson.loads(ok.body)["fString"] == "z"
    bomb = await post(bridge, f"{TEST}/Echo", gzip.compress(b" " * (LIMIT * 4)), headers)
    assert bomb.status == 413 and bomb.json()["code"] == "resource_exhausted"


def _b64(data: bytes, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return quote(text) if padded else text.rstrip("=")


_LOOKUP = kitchen_pb2.Kitchen(f_string="got?", r_int32=[1, 2], f_bytes=b"\xff\xfe")
_LOOKUP_JSON = b'{"fString": "got?", "rInt32": [1, 2], "fBytes": "//4="}'


def _gets() -> dict[str, str]:
    proto = _LOOKUP.SerializeToString()
    return {
        "json": f"connect=v1&encoding=json&message={quote(_LOOKUP_JSON)}",
        "json-any-order": f"message={quote(_LOOKUP_JSON)}&encoding=json&connect=v1",
        "json-base64": f"encoding=json&base64=1&message={_b64(_LOOKUP_JSON)}&connect=v1",
        "proto-base64": f"connect=v1&encoding=proto&base64=1&message={_b64(proto)}",
        "proto-padded": f"connect=v1&encoding=proto&base64=1&message={_b64(proto, True)}",
        "proto-gzip": "connect=v1&encoding=proto&base64=1&compression=gzip&message="
        + _b64(gzip.compress(proto)),
        "unknown-params": f"cache=1&connect=v1&encoding=proto&base64=1&message={_b64(proto)}&z",
    }


@pytest.mark.parametrize("query", list(_gets().values()), ids=list(_gets()))
async def test_get_answers_what_the_post_answers(bridge: RunningBridge, query: str) -> None:
    binary = "encoding=proto" in query
    posted = await post(
        bridge,
        f"{TEST}/Lookup",
        _LOOKUP.SerializeToString() if binary else _LOOKUP_JSON,
        PROTO_UNARY if binary else JSON_UNARY,
    )
    got = await get(bridge, f"/{TEST}/Lookup?{query}")
    assert (got.status, got.body) == (200, posted.body)
    assert got.headers["Content-Type"] == posted.headers["Content-Type"]


@pytest.mark.parametrize(
    ("query", "status", "code", "fragment"),
    [
        ("connect=v1&message=%7B%7D", 400, "invalid_argument", "'encoding'"),
        ("connect=v1&encoding=json", 400, "invalid_argument", "'message'"),
        ("connect=v1&encoding=cbor&message=x", 415, "invalid_argument", "encoding"),
        ("connect=v1&encoding=proto&base64=1&message=%21%21", 400, "invalid_argument", "base64"),
        ("connect=v1&encoding=json&compression=br&message=x", 501, "unimplemented", "gzip"),
        (
            "connect=v1&encoding=json&compression=gzip&base64=1&message=AAAA",
            400,
            "invalid_argument",
            "gzip",
        ),
        (
            "connect=v1&encoding=json&encoding=json&message=%7B%7D",
            400,
            "invalid_argument",
            "repeated",
        ),
        ("connect=v1&encoding=json&message=%7B", 400, "invalid_argument", "JSON"),
    ],
    ids=[
        "no-encoding",
        "no-message",
        "unknown-encoding",
        "bad-base64",
        "brotli",
        "bad-gzip",
        "repeated",
        "bad-json",
    ],
)
async def test_bad_get_parameters_are_named_in_connect_errors(
    bridge: RunningBridge, query: str, status: int, code: str, fragment: str
) -> None:
    answer = await get(bridge, f"/{TEST}/Lookup?{query}")
    assert answer.status == status, answer.body
    assert answer.json()["code"] == code and fragment in answer.json()["message"]


@pytest.mark.parametrize(
    "query",
    [
        "connect=v1&encoding=json&message=" + "a" * 2000,
        "connect=v1&encoding=json&base64=1&compression=gzip&message="
        + _b64(gzip.compress(b" " * (1024 * 1024))),
    ],
    ids=["long", "gzip-bomb"],
)
async def test_a_get_message_is_bounded_like_a_body(upstream: RunningServer, query: str) -> None:
    async with connect_bridge(upstream.target, limits={"max_request_bytes": 1024}) as bridge:
        answer = await get(bridge, f"/{TEST}/Lookup?{query}")
    assert answer.status == 413
    assert answer.json()["code"] == "resource_exhausted"
    assert "limits.max_request_bytes" in answer.json()["message"]


def _cors_bridge(upstream: RunningServer) -> Any:
    return connect_bridge(
        upstream.target,
        cors={"allowed_origins": ["https://app.example"], "allowed_headers": ["x-test"]},
    )


async def test_cors_allows_connects_headers_and_exposes_metadata_and_trailers(
    upstream: RunningServer,
) -> None:
    async with _cors_bridge(upstream) as bridge:
        asked = "connect-protocol-version, connect-timeout-ms, content-type, x-test"
        async with bridge.session.options(
            f"{bridge.url}/{TEST}/EchoMetadata",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": asked,
            },
        ) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Headers"] == asked
        answer = await post(
            bridge, f"{TEST}/EchoMetadata", b"{}", {**JSON_UNARY, "Origin": "https://app.example"}
        )
        exposed = {
            name.strip().lower()
            for name in answer.headers["Access-Control-Expose-Headers"].split(",")
        }
        assert {"x-initial", "x-initial-bin", "trailer-x-trailer", "x-request-id"} <= exposed
        stream = await post(
            bridge,
            f"{TEST}/ServerStream",
            envelope(b'{"count": 1}'),
            {**JSON_STREAM, "Origin": "https://app.example"},
        )
        assert "connect-accept-encoding" in stream.headers["Access-Control-Expose-Headers"].lower()


async def test_the_request_line_names_the_connect_protocol_and_framing(
    upstream: RunningServer,
) -> None:
    async with bridge_on(upstream.target, "aiohttp") as process:
        await wait_ready(process)
        body = envelope(b'{"count": 1}')
        request = (
            f"POST /{TEST}/ServerStream HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
            f"Content-Type: application/connect+json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        answer = await exchange(process.proxy_port, request)
        assert not isinstance(answer, str) and answer[0] == 200
        line = await next_request_log(process)
    assert (line["protocol"], line["framing"], line["grpc_code"]) == ("connect", "connect", "OK")


@pytest.mark.parametrize("method", ["ServerStream", "ClientStream"])
async def test_an_envelope_that_stalls_is_timed_out_and_the_upstream_call_cancelled(
    upstream: RunningServer, method: str
) -> None:
    async with connect_bridge(upstream.target, limits={"body_read_timeout_s": 0.5}) as bridge:
        port = int(bridge.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = (
                f"POST /{TEST}/{method} HTTP/1.1\r\nHost: b\r\n"
                "Content-Type: application/connect+json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            first = envelope(b'{"text": "stalled"}') if method == "ClientStream" else b""
            started = first + envelope(b'{"text": "never ends"}')[:8]
            writer.write(head.encode() + f"{len(started):x}\r\n".encode() + started + b"\r\n")
            async with asyncio.timeout(10):
                status, _, body = await read_answer(reader)
        finally:
            writer.close()
        assert status == 200
        error = end_of_stream(body)["error"]
        assert error["code"] == "deadline_exceeded"
        assert "limits.body_read_timeout_s" in error["message"]
        if method == "ClientStream":
            await upstream.test.wait_for("cancelled", "stalled")


async def test_the_admin_port_says_how_connect_clients_call_each_method(
    bridge: RunningBridge,
) -> None:
    async with bridge.session.get(f"{bridge.admin_url}/v1/services/{TEST}") as resp:
        methods = {m["name"]: m["connect"] for m in (await resp.json())["methods"]}
    unary = ["application/json", "application/proto"]
    stream = ["application/connect+json", "application/connect+proto"]
    assert methods["Echo"] == {"content_types": unary, "get": False, "available": True}
    assert methods["Lookup"] == {"content_types": unary, "get": True, "available": True}
    assert methods["ServerStream"] == {"content_types": stream, "get": False, "available": True}
    assert methods["ClientStream"]["available"] is True
    assert methods["Bidi"] == {"content_types": stream, "get": False, "available": False}
