"""A stream's request log line says how many body bytes it sent, as they went on the wire.

``bytes_out`` of a unary answer is its body's length; a stream's was 0 (aiohttp
counts only at EOF, after the line is logged). Every stream framing, compressed
or not, ending well or with an in-band error, and WebSocket (its messages'
bytes), on both edges: the logged figure equals what the client received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from bridgetest.v1 import kitchen_pb2

from tests.helpers.harness import RunningBridge
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.both_edges

SVC = "/bridgetest.v1.TestService"
STREAM = f"{SVC}/ServerStream"
THREE = {"count": 3, "tag": "counted"}
FAILING = {"count": 3, "failCode": 9, "failAfter": 2}


def _envelope(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def _proto(request: dict[str, Any]) -> bytes:
    message = kitchen_pb2.StreamRequest(
        count=request["count"],
        tag=request.get("tag", ""),
        fail_code=request.get("failCode", 0),
        fail_after=request.get("failAfter", 0),
    )
    return message.SerializeToString()


Request = tuple[dict[str, str], bytes]

FORMS: dict[str, Callable[[dict[str, Any]], Request]] = {
    "ndjson": lambda r: ({"Content-Type": "application/json"}, orjson.dumps(r)),
    "sse": lambda r: (
        {"Content-Type": "application/json", "Accept": "text/event-stream"},
        orjson.dumps(r),
    ),
    "ndjson-gzip": lambda r: (
        {"Content-Type": "application/json", "Accept-Encoding": "gzip"},
        orjson.dumps(r),
    ),
    "connect": lambda r: (
        {"Content-Type": "application/connect+json"},
        _envelope(orjson.dumps(r)),
    ),
    "grpc-web": lambda r: (
        {"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"},
        _envelope(_proto(r)),
    ),
}


async def _logged(call: Callable[[], Awaitable[int]]) -> tuple[int, list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as logs:
        received = await call()
        # The server logs once its handler returns, which may be just after the client is done.
        for _ in range(200):
            lines = [e for e in logs if e.get("event") == "request"]
            if lines:
                return received, lines
            await asyncio.sleep(0.01)
    return received, []


@pytest.mark.parametrize("outcome", [THREE, FAILING], ids=["ok", "in-band-error"])
@pytest.mark.parametrize("form", list(FORMS))
async def test_a_streams_bytes_out_is_what_the_client_received(
    upstream: RunningServer,
    make_bridge: Callable[..., Awaitable[RunningBridge]],
    form: str,
    outcome: dict[str, Any],
) -> None:
    bridge = await make_bridge(upstream.target)
    headers, body = FORMS[form](outcome)

    async def call() -> int:
        url = bridge.url + STREAM
        post = bridge.session.post(url, data=body, headers=headers, auto_decompress=False)
        async with post as resp:
            assert resp.status == 200, await resp.text()
            if form == "ndjson-gzip":
                assert resp.headers["Content-Encoding"] == "gzip"
            return len(await resp.read())

    received, lines = await _logged(call)
    assert received > 0
    assert [(e["framing"], e["bytes_out"]) for e in lines] == [(lines[0]["framing"], received)]
    assert lines[0]["framing"] is not None


async def test_a_websockets_bytes_out_is_its_messages_bytes(
    upstream: RunningServer, make_bridge: Callable[..., Awaitable[RunningBridge]]
) -> None:
    bridge = await make_bridge(upstream.target)

    async def call() -> int:
        async with bridge.session.ws_connect(bridge.url + STREAM) as ws:
            await ws.send_str(orjson.dumps(THREE).decode())
            size = 0
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                size += len(message.data.encode())
            return size

    received, lines = await _logged(call)
    assert received > 0
    assert [(e["framing"], e["bytes_out"]) for e in lines] == [("websocket", received)]
