"""WebSocket on a method's path: every method kind, close codes, half-close, bad frames, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.servers import RunningServer
from tests.helpers.streamtools import BIDI, CLIENT_STREAM, ECHO, SERVER_STREAM

Frames = list[Any]


async def receive_all(ws: aiohttp.ClientWebSocketResponse) -> Frames:
    """Every text frame until the bridge closes, parsed."""
    frames = []
    async with asyncio.timeout(5):
        async for msg in ws:
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            frames.append(orjson.loads(msg.data))
    return frames


async def next_frame(ws: aiohttp.ClientWebSocketResponse, within: float = 2.0) -> Any:
    msg = await ws.receive(timeout=within)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return orjson.loads(msg.data)


def connect(bridge: RunningBridge, path: str, **kwargs: Any) -> Any:
    return bridge.session.ws_connect(f"{bridge.url}{path}", **kwargs)


async def test_bidi_is_full_duplex(bridge: RunningBridge) -> None:
    async with connect(bridge, BIDI) as ws:
        for index, text in enumerate(("one", "two", "three")):
            await ws.send_str(orjson.dumps({"index": index, "text": text}).decode())
            # The reply is here before the next request is sent.
            assert await next_frame(ws) == {"result": {"index": index, "text": f"echo: {text}"}}
        await ws.send_str("")  # half-close: the upstream ends its stream
        assert await receive_all(ws) == []
        assert ws.close_code == 1000


async def test_client_stream_answers_after_the_half_close(bridge: RunningBridge) -> None:
    async with connect(bridge, CLIENT_STREAM) as ws:
        await ws.send_str('{"text": "a"}')
        await ws.send_str('{"text": "b"}')
        await ws.send_str("")
        assert await receive_all(ws) == [{"result": {"count": 2, "texts": ["a", "b"]}}]
        assert ws.close_code == 1000


async def test_server_stream_takes_the_first_frame_as_request(bridge: RunningBridge) -> None:
    async with connect(bridge, SERVER_STREAM) as ws:
        await ws.send_str('{"count": 2, "tag": "w"}')
        assert await receive_all(ws) == [
            {"result": {"index": 0, "text": "w-0"}},
            {"result": {"index": 1, "text": "w-1"}},
        ]
        assert ws.close_code == 1000


async def test_unary_over_websocket(bridge: RunningBridge) -> None:
    async with connect(bridge, ECHO) as ws:
        await ws.send_str('{"fString": "hi"}')
        frames = await receive_all(ws)
        assert frames[0]["result"]["fString"] == "hi" and len(frames) == 1
        assert ws.close_code == 1000


async def test_error_frame_then_close_4000_plus_code(bridge: RunningBridge) -> None:
    async with connect(bridge, SERVER_STREAM) as ws:
        await ws.send_str('{"count": 3, "failCode": 9, "failAfter": 1}')
        assert await receive_all(ws) == [
            {"result": {"index": 0, "text": "-0"}},
            {"error": {"code": 9, "message": "failing after 1", "details": []}},
        ]
        assert ws.close_code == 4009


async def test_error_details_are_rendered(bridge: RunningBridge) -> None:
    path = "/bridgetest.v1.TestService/Fail"
    async with connect(bridge, path) as ws:
        await ws.send_str('{"code": 5, "message": "gone", "withDetails": true}')
        [frame] = await receive_all(ws)
        assert frame["error"]["code"] == 5
        assert frame["error"]["details"][0]["@type"].endswith("google.rpc.BadRequest")
        assert ws.close_code == 4005


@pytest.mark.parametrize(
    ("path", "frame", "starts"),
    [
        (BIDI, "{not json", "frame 1: malformed JSON"),
        (BIDI, '{"index": "x"}', 'frame 1: invalid value for field "index"'),
        (BIDI, "[1, 2]", "frame 1: expected a JSON object"),
        (ECHO, '{"bogus": 1}', 'frame 1: unknown field "bogus"'),
    ],
)
async def test_malformed_frame_ends_the_stream_with_code_3(
    bridge: RunningBridge, path: str, frame: str, starts: str
) -> None:
    async with connect(bridge, path) as ws:
        await ws.send_str(frame)
        [error] = await receive_all(ws)
        assert error["error"]["code"] == 3
        assert error["error"]["message"].startswith(starts), error
        assert ws.close_code == 4003


async def test_binary_frame_is_refused(bridge: RunningBridge, upstream: RunningServer) -> None:
    async with connect(bridge, BIDI) as ws:
        await ws.send_str('{"text": "bin"}')
        await next_frame(ws)
        await ws.send_bytes(b"\x00\x01")
        [error] = await receive_all(ws)
        assert error["error"]["message"].startswith("frame 2 is binary")
        assert ws.close_code == 4003
    await upstream.test.wait_for("cancelled", "bin", within=1.0)


async def test_second_request_for_a_one_request_method(bridge: RunningBridge) -> None:
    async with connect(bridge, SERVER_STREAM) as ws:
        await ws.send_str('{"count": 2, "interval": "5s"}')
        assert (await next_frame(ws))["result"]["index"] == 0
        await ws.send_str('{"count": 1}')
        [error] = await receive_all(ws)
        assert "takes one request message" in error["error"]["message"]
        assert ws.close_code == 4003


async def test_empty_frames_after_the_request_are_harmless(bridge: RunningBridge) -> None:
    async with connect(bridge, SERVER_STREAM) as ws:
        await ws.send_str('{"count": 2, "interval": "0.1s"}')
        await ws.send_str("")  # a generic client half-closing after its one message
        assert len(await receive_all(ws)) == 2
        assert ws.close_code == 1000


async def test_half_close_before_the_request(bridge: RunningBridge) -> None:
    async with connect(bridge, ECHO) as ws:
        await ws.send_str("")
        [error] = await receive_all(ws)
        assert "half-closed before the request" in error["error"]["message"]
        assert ws.close_code == 4003


@pytest.mark.parametrize("how", ["close", "drop"])
async def test_client_leaving_cancels_the_upstream_at_once(
    bridge: RunningBridge, upstream: RunningServer, how: str
) -> None:
    tag = f"ws-{how}"
    ws = await bridge.session.ws_connect(f"{bridge.url}{SERVER_STREAM}")
    await ws.send_str(orjson.dumps({"count": 3, "interval": "10s", "tag": tag}).decode())
    assert (await next_frame(ws))["result"]["index"] == 0
    if how == "close":
        await ws.close()
    else:
        ws._response.connection.transport.abort()  # type: ignore[union-attr]
    await upstream.test.wait_for("cancelled", tag, within=1.0)


async def test_bidi_client_leaving_cancels_the_upstream(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    async with connect(bridge, BIDI) as ws:
        await ws.send_str('{"text": "bye"}')
        await next_frame(ws)
    await upstream.test.wait_for("cancelled", "bye", within=1.0)


async def test_shutdown_closes_with_1001(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as bridge:
        ws = await bridge.session.ws_connect(f"{bridge.url}{SERVER_STREAM}")
        await ws.send_str('{"count": 3, "interval": "10s", "tag": "ws-shut"}')
        await next_frame(ws)
        stopping = asyncio.create_task(bridge.server.drain_and_stop())
        assert await receive_all(ws) == [
            {"error": {"code": 14, "message": "grpc-bridge is shutting down", "details": []}}
        ]
        assert ws.close_code == 1001
        async with asyncio.timeout(5):
            await stopping
    await upstream.test.wait_for("cancelled", "ws-shut", within=1.0)


async def test_idle_stream_closes_with_4004(upstream: RunningServer) -> None:
    async with (
        running_bridge(upstream.target, streams={"idle_timeout_s": 0.3}) as bridge,
        connect(bridge, BIDI) as ws,
    ):
        await ws.send_str('{"text": "idle"}')
        await next_frame(ws)
        [error] = await receive_all(ws)  # nobody says anything for 0.3 s
        assert error["error"]["code"] == 4
        assert ws.close_code == 4004
    await upstream.test.wait_for("cancelled", "idle", within=1.0)


async def test_heartbeat_pings_and_drops_silent_clients(upstream: RunningServer) -> None:
    async with (
        running_bridge(upstream.target, websocket={"heartbeat_s": 0.2}) as bridge,
        connect(bridge, SERVER_STREAM, autoping=False) as ws,
    ):
        await ws.send_str('{"count": 3, "interval": "10s", "tag": "hb"}')
        kinds = []
        async with asyncio.timeout(3):
            async for msg in ws:
                kinds.append(msg.type)
        # A ping arrived; unanswered, the bridge gave up on the client.
        assert aiohttp.WSMsgType.PING in kinds
    await upstream.test.wait_for("cancelled", "hb", within=1.0)


async def test_frame_over_max_message_size_closes_with_1009(upstream: RunningServer) -> None:
    async with (
        running_bridge(upstream.target, websocket={"max_message_size": 1024}) as bridge,
        connect(bridge, BIDI) as ws,
    ):
        await ws.send_str(orjson.dumps({"text": "big"}).decode())
        await next_frame(ws)
        await ws.send_str(orjson.dumps({"text": "x" * 2000}).decode())
        assert await receive_all(ws) == []
        assert ws.close_code == 1009
    await upstream.test.wait_for("cancelled", "big", within=1.0)


async def test_unknown_path_is_404_before_upgrade(bridge: RunningBridge) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await bridge.session.ws_connect(f"{bridge.url}/nope.v1.Nope/Nope")
    assert info.value.status == 404


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser
        ("https://app.example", True),
        ("https://evil.example", False),
        ("null", False),
    ],
)
async def test_origin_is_checked_before_upgrade(
    upstream: RunningServer, origin: str | None, allowed: bool
) -> None:
    async with running_bridge(
        upstream.target, cors={"allowed_origins": ["https://app.example"]}
    ) as bridge:
        headers = {"Origin": origin} if origin else {}
        if allowed:
            async with connect(bridge, ECHO, headers=headers) as ws:
                await ws.send_str("{}")
                await receive_all(ws)
                assert ws.close_code == 1000
            return
        async with bridge.session.get(
            f"{bridge.url}{ECHO}",
            headers={
                **headers,
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        ) as resp:
            assert resp.status == 403
            body = await resp.json()
            assert body["code"] == 7 and "cors.allowed_origins" in body["message"]


async def test_same_origin_page_may_connect(bridge: RunningBridge) -> None:
    async with connect(bridge, ECHO, headers={"Origin": bridge.url}) as ws:
        await ws.send_str("{}")
        await receive_all(ws)
        assert ws.close_code == 1000


async def test_websocket_metadata_comes_from_the_upgrade_request(bridge: RunningBridge) -> None:
    async with connect(
        bridge, "/bridgetest.v1.TestService/EchoMetadata", headers={"Grpc-Metadata-Tenant": "acme"}
    ) as ws:
        await ws.send_str("{}")
        [frame] = await receive_all(ws)
        assert frame["result"]["received"]["tenant"] == "acme"
