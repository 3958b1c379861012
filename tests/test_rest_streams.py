"""Streaming methods on REST paths: path and query reach every request message, HttpBody streams.

RestService's streaming methods (tests/protos/bridgetest/v1/rest.proto) answer
with what they were sent, so each test sees the request messages the bridge
built from the URL and the streamed bodies or frames.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import orjson
import pytest

from tests.helpers.harness import MakeBridge, RunningBridge, scrape, value
from tests.helpers.servers import StartServer
from tests.helpers.streamtools import NDJSON, sse_events

ND = {"Content-Type": NDJSON}
REST = "bridgetest.v1.RestService"


@pytest.fixture
async def bridge(upstream_factory: StartServer, make_bridge: MakeBridge) -> RunningBridge:
    server = await upstream_factory(services=("rest",))
    return await make_bridge(server.target)


def started(samples: dict[Any, float], method: str, kind: str) -> float:
    labels = {"grpc_type": kind, "grpc_service": REST, "grpc_method": method}
    return value(samples, "grpc_client_started_total", **labels)


async def ndjson(b: RunningBridge, path: str, body: bytes, **headers: str) -> Any:
    async with b.session.post(f"{b.url}{path}", data=body, headers={**ND, **headers}) as resp:
        raw = await resp.read()
        if resp.content_type == "application/json":
            return resp.status, orjson.loads(raw)
        return resp.status, [orjson.loads(line) for line in raw.splitlines()]


def results(frames: list[Any], *keys: str) -> list[Any]:
    """The ``keys`` of each result frame (the bridge also emits unpopulated fields)."""
    return [{k: f["result"][k] for k in keys if k in f["result"]} for f in frames]


async def ws_frames(b: RunningBridge, path: str, *frames: str) -> tuple[list[Any], int | None]:
    async with b.session.ws_connect(f"{b.url}{path}") as ws:
        for frame in frames:
            await ws.send_str(frame)
        got = []
        async with asyncio.timeout(5):
            async for msg in ws:
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                got.append(orjson.loads(msg.data))
        return got, ws.close_code


# --- client streaming (body: "*") -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"name": "a"}\n{"name": "b", "num": "2"}\n', ND),
        (b'[{"name": "a"}, {"name": "b", "num": 2}]', {"Content-Type": "application/json"}),
    ],
)
async def test_client_stream_merges_the_path_into_every_message(
    bridge: RunningBridge, body: bytes, headers: dict[str, str]
) -> None:
    status, got, _ = await bridge.post("/v1/things/7/collect", body, headers=headers)
    assert status == 200, got
    assert got["tags"] == ["7|a|0", "7|b|2"]


async def test_client_stream_message_setting_a_path_field_is_400(bridge: RunningBridge) -> None:
    status, got = await ndjson(bridge, "/v1/things/7/collect", b'{"name": "a"}\n{"id": "8"}\n')
    assert status == 400
    assert got["message"] == (
        'line 2: field "id" is bound by the path and cannot be set by the request body'
    )


async def test_body_star_stream_refuses_a_query_before_the_call(bridge: RunningBridge) -> None:
    before = started(await scrape(bridge), "Collect", "client_stream")
    status, got = await ndjson(bridge, "/v1/things/7/collect?name=q", b'{"num": 1}\n')
    assert status == 400
    assert got["message"].startswith('unknown query parameter "name": this route (body: "*")')
    assert started(await scrape(bridge), "Collect", "client_stream") == before


# --- bidi (body: "nested", query allowed) -------------------------------------------


async def test_bidi_stream_merges_path_and_query_into_every_message(
    bridge: RunningBridge,
) -> None:
    status, got = await ndjson(
        bridge, "/v1/things/7/converse?name=q&num=3", b'{"name": "n1"}\n{}\n'
    )
    assert status == 200, got
    assert results(got, "id", "name", "num", "nested") == [
        {"id": "7", "name": "q", "num": "3", "nested": {"name": "n1", "value": 0}},
        {"id": "7", "name": "q", "num": "3", "nested": {"name": "", "value": 0}},
    ]


async def test_bidi_stream_bad_query_is_400_before_the_call(bridge: RunningBridge) -> None:
    before = started(await scrape(bridge), "Converse", "bidi_stream")
    status, got = await ndjson(bridge, "/v1/things/7/converse?num=x", b"{}\n")
    assert status == 400
    assert got["message"] == 'invalid value "x" for query parameter "num": not an integer'
    assert started(await scrape(bridge), "Converse", "bidi_stream") == before


# --- WebSocket ----------------------------------------------------------------------


async def test_websocket_unary_takes_path_and_query(bridge: RunningBridge) -> None:
    got, code = await ws_frames(bridge, "/v1/things/2?name=q", "{}")
    assert code == 1000
    assert results(got, "id", "name") == [{"id": "2", "name": "q"}]


async def test_websocket_unary_frame_cannot_rebind_the_path(bridge: RunningBridge) -> None:
    got, code = await ws_frames(bridge, "/v1/things/2", '{"id": "1"}')
    assert code == 4003
    assert got[0]["error"]["code"] == 3
    assert "no request body" in got[0]["error"]["message"]


async def test_websocket_server_stream_takes_path_and_query(bridge: RunningBridge) -> None:
    got, code = await ws_frames(bridge, "/v1/things/5/watch?tags=a&tags=b", "{}")
    assert code == 1000
    assert results(got, "id", "tags") == [{"id": "5", "tags": ["a", "b"]}] * 2


async def test_websocket_bidi_merges_path_into_every_frame(bridge: RunningBridge) -> None:
    got, code = await ws_frames(
        bridge, "/v1/things/7/converse?num=4", '{"name": "x"}', '{"name": "y"}', ""
    )
    assert code == 1000
    assert results(got, "id", "num", "nested") == [
        {"id": "7", "num": "4", "nested": {"name": "x", "value": 0}},
        {"id": "7", "num": "4", "nested": {"name": "y", "value": 0}},
    ]


async def test_websocket_client_stream_frame_rebinding_the_path_is_an_error_frame(
    bridge: RunningBridge,
) -> None:
    got, code = await ws_frames(bridge, "/v1/things/7/collect", '{"name": "a"}', '{"id": "9"}')
    assert code == 4003
    assert got == [
        {
            "error": {
                "code": 3,
                "message": 'frame 2: field "id" is bound by the path '
                "and cannot be set by the request body",
                "details": [],
            }
        }
    ]


async def test_websocket_upgrade_with_a_bad_query_is_400(bridge: RunningBridge) -> None:
    async with bridge.session.get(
        f"{bridge.url}/v1/things/7/collect?name=q",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as resp:
        assert resp.status == 400
        assert "unknown query parameter" in (await resp.json())["message"]


# --- HttpBody responses in streams (#2) --------------------------------------------


def _chunk(tag: str) -> dict[str, str]:
    data = base64.b64encode(f'{tag},"x"\n'.encode()).decode()
    return {"contentType": "text/csv", "data": data, "extensions": []}


async def test_http_body_stream_is_json_in_ndjson(bridge: RunningBridge) -> None:
    status, got, headers = await bridge.get("/v1/things/1/chunks?tags=a&tags=b")
    assert status == 200
    assert headers["Content-Type"].startswith(NDJSON)
    assert [orjson.loads(line) for line in got.splitlines()] == [
        {"result": _chunk("a")},
        {"result": _chunk("b")},
    ]


async def test_http_body_stream_is_json_in_sse(bridge: RunningBridge) -> None:
    status, got, _ = await bridge.get(
        "/v1/things/1/chunks?tags=a", headers={"Accept": "text/event-stream"}
    )
    assert status == 200
    assert sse_events(got) == [
        ("message", _chunk("a")),
        ("end", {"code": 0, "message": "", "details": []}),
    ]


async def test_http_body_stream_is_json_on_websocket(bridge: RunningBridge) -> None:
    got, code = await ws_frames(bridge, "/v1/things/1/chunks?tags=z", "{}")
    assert code == 1000
    assert got == [{"result": _chunk("z")}]
