"""Paths are matched as received: an escaped slash, a dot segment or another case is not a route.

A front proxy's path ACL sees the raw path (Envoy keeps ``%2F`` by default):
if the bridge matched a decoded or normalized path, ``/pkg.Service%2FMethod``
would reach a method the proxy never saw being called. Both HTTP paths answer
404, and the request log shows the path exactly as it arrived.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from tests.helpers.process import BridgeProcess
from tests.helpers.raw_http import (
    PATHS,
    bridge_on,
    next_request_log,
    request,
    request_logs,
    response_to,
)
from tests.helpers.servers import RunningServer, StartServer

ECHO = "/bridgetest.v1.TestService/Echo"
BODY = b'{"fString": "reached"}'


@pytest.fixture(params=PATHS)
async def bridge(
    request: pytest.FixtureRequest, upstream: RunningServer
) -> AsyncIterator[BridgeProcess]:
    async with bridge_on(upstream.target, request.param) as b:
        yield b


async def test_the_plain_path_is_the_route(bridge: BridgeProcess) -> None:
    status, _, body = await response_to(bridge, request("POST", ECHO, BODY))
    assert status == 200 and orjson.loads(body)["fString"] == "reached"


#: Each would reach Echo if the path were decoded, normalized or case-folded.
NOT_ROUTES = [
    "/bridgetest.v1.TestService%2FEcho",
    "/bridgetest.v1.TestService%2fEcho",
    "/bridgetest.v1.TestService%252FEcho",
    "/bridgetest.v1.TestService/%45cho",
    "/bridgetest%2Ev1.TestService/Echo",
    "/bridgetest.v1.TestService/Echo%2F",
    "/bridgetest.v1.TestService/../bridgetest.v1.TestService/Echo",
    "/other/../bridgetest.v1.TestService/Echo",
    "/bridgetest.v1.TestService/./Echo",
    "/bridgetest.v1.TestService/%2E%2E/bridgetest.v1.TestService/Echo",
    "//bridgetest.v1.TestService/Echo",
    "/bridgetest.v1.testservice/echo",
    "/BRIDGETEST.V1.TESTSERVICE/ECHO",
]


async def test_an_encoded_or_unnormalized_path_is_no_route(bridge: BridgeProcess) -> None:
    for target in NOT_ROUTES:
        seen = len(request_logs(bridge))
        status, _, body = await response_to(bridge, request("POST", target, BODY))
        assert status == 404, (target, body)
        assert orjson.loads(body)["code"] == 5
        assert "reached" not in body.decode()
        # The log line names the path as it arrived, escapes and all.
        line = await next_request_log(bridge, seen)
        assert (line["http_status"], line["path"], line["route"]) == (404, target, "unmatched")


async def test_streams_and_upgrades_on_an_encoded_path_are_no_route(
    bridge: BridgeProcess,
) -> None:
    upgrade = request(
        "GET",
        "/bridgetest.v1.TestService%2FServerStream",
        None,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    )
    status, _, _ = await response_to(bridge, upgrade)
    assert status == 404
    status, _, _ = await response_to(
        bridge, request("GET", "/bridgetest.v1.TestService%2FServerStream?count=1")
    )
    assert status == 404


@pytest.mark.parametrize("path", PATHS)
async def test_rest_literals_are_matched_per_segment(
    upstream_factory: StartServer, path: str
) -> None:
    server = await upstream_factory(services=("rest",))
    async with bridge_on(server.target, path) as bridge:
        # An escaped slash joins two segments: no template has that literal.
        status, _, _ = await response_to(bridge, request("GET", "/v1/things%2Fspecial"))
        assert status == 404
        status, _, _ = await response_to(bridge, request("GET", "/v1%2Fthings/special"))
        assert status == 404
        # In a variable it is data: the id is "a/b".
        status, _, body = await response_to(bridge, request("GET", "/v1/things/a%2Fb"))
        assert status == 200 and orjson.loads(body)["id"] == "a/b"
