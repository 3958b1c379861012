"""Hostile or unusual HTTP input: query escapes, raw header bytes, absolute-form targets, ...

Each case once crashed the error path, reached the upstream, or answered the
wrong thing; they run against a real bridge in front of a real upstream, and
raw sockets send what aiohttp's client refuses to.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from yarl import URL

from grpc_bridge.errors import UpstreamNotReady
from grpc_bridge.metrics import Metrics
from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.invoker import Invoker
from grpc_bridge.upstream.pool import ConnectionPool
from tests.helpers.harness import MakeBridge, RunningBridge, running_bridge, scrape, value
from tests.helpers.servers import StartServer
from tests.helpers.streamtools import CLIENT_STREAM

SVC = "bridgetest.v1.TestService"
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.fixture
async def bridge(upstream_factory: StartServer, make_bridge: MakeBridge) -> RunningBridge:
    server = await upstream_factory(services=("test", "rest"))
    return await make_bridge(server.target)


async def raw_request(
    b: RunningBridge, head: bytes, body: bytes = b""
) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Send ``head`` (request line and headers, no terminator) as is; status line, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", b.server.proxy_port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(5):
            data = await reader.read()
    finally:
        writer.close()
    header_block, _, body = data.partition(b"\r\n\r\n")
    status, *lines = header_block.split(b"\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines)}
    return status, headers, body


def started_total(samples: dict[Any, float], kind: str, method: str) -> float:
    labels = {"grpc_type": kind, "grpc_service": SVC, "grpc_method": method}
    return value(samples, "grpc_client_started_total", **labels)


# --- #3: strict query decoding -------------------------------------------------------


@pytest.mark.both_edges
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{key}=%FF", 'query parameter "{key}": percent-encoded bytes that are not UTF-8'),
        ("{key}=%E2%82", 'query parameter "{key}": percent-encoded bytes that are not UTF-8'),
        ("{key}=%zz", "query parameter \"{key}\": malformed percent-encoding at '%zz'"),
        ("i%zzd=1", "query parameter name 'i%zzd': malformed percent-encoding at '%zz'"),
    ],
)
async def test_malformed_query_escapes_are_400(
    bridge: RunningBridge, query: str, message: str
) -> None:
    for path, key in (("/v1/things/1", "name"), (f"/{SVC}/Lookup", "f_string")):
        # encoded=True: aiohttp's client would otherwise re-quote %zz as %25zz.
        url = URL(f"{bridge.url}{path}?{query.format(key=key)}", encoded=True)
        async with bridge.session.get(url) as resp:
            got = await resp.json()
            assert resp.status == 400, (path, got)
        assert got["message"].startswith(message.format(key=key)), got


@pytest.mark.both_edges
async def test_query_decoding_keeps_plus_order_and_repeats(bridge: RunningBridge) -> None:
    status, got, _ = await bridge.get(
        "/v1/things/1?name=a+b%2Bc&tags=x&tags=%E2%82%AC&&nums=1&nums=2"
    )
    assert status == 200, got
    assert (got["name"], got["tags"], got["nums"]) == ("a b+c", ["x", "€"], [1, 2])


# --- #4: request streams refuse Content-Type and size before the call --------------


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "text/plain"}, b"{}", 415),
        ({"Content-Type": "text/plain", "Accept": "text/event-stream"}, b"{}", 415),
        ({"Content-Type": "application/json"}, b"[" + b" " * 70_000 + b"]", 413),
    ],
)
async def test_request_stream_refusals_start_no_upstream_call(
    upstream_factory: StartServer, headers: dict[str, str], body: bytes, status: int
) -> None:
    server = await upstream_factory()
    async with running_bridge(server.target, limits={"max_request_bytes": 65536}) as b:
        for path, kind, method in (
            (CLIENT_STREAM, "client_stream", "ClientStream"),
            (f"/{SVC}/Bidi", "bidi_stream", "Bidi"),
        ):
            async with b.session.post(f"{b.url}{path}", data=body, headers=headers) as resp:
                assert resp.status == status, await resp.text()
                assert resp.content_type == "application/json"
                assert (await resp.json())["code"] in (3, 8)
            assert started_total(await scrape(b), kind, method) == 0
        assert server.test.received == []


# --- #5: a malformed Origin on a WebSocket upgrade ----------------------------------


@pytest.mark.parametrize("origin", ["http://[", "http://[::1", "http://x]"])
async def test_malformed_origin_on_upgrade_is_403(bridge: RunningBridge, origin: str) -> None:
    async with bridge.session.get(
        f"{bridge.url}/{SVC}/Echo", headers={**UPGRADE, "Origin": origin}
    ) as resp:
        assert resp.status == 403
        assert "may not open WebSockets here" in (await resp.json())["message"]


# --- #6: raw header bytes never break the error path --------------------------------


async def test_preflight_method_with_raw_bytes_gets_a_json_error(bridge: RunningBridge) -> None:
    status, headers, body = await raw_request(
        bridge,
        b"OPTIONS /v1/things/1 HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n"
        b"Access-Control-Request-Method: G\xffT",
    )
    assert status.startswith(b"HTTP/1.1 405"), (status, body)
    assert headers[b"x-request-id"]
    message = orjson.loads(body)["message"]
    assert message.startswith("'G\\udcffT' is not allowed on /v1/things/{id}")


@pytest.mark.both_edges
async def test_non_ascii_request_id_is_replaced(bridge: RunningBridge) -> None:
    # On a route the header is forwarded as metadata, which can't carry it: 400 naming it.
    status, headers, body = await raw_request(
        bridge, b"GET /v1/things/1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\xffb"
    )
    assert status.startswith(b"HTTP/1.1 400"), (status, body)
    assert len(headers[b"x-request-id"]) == 32
    assert "x-request-id" in orjson.loads(body)["message"].lower()
    # Off any route (nothing forwarded) the request gets a fresh id and its log line.
    status, headers, body = await raw_request(
        bridge, b"GET /nowhere HTTP/1.1\r\nHost: x\r\nX-Request-Id: \xe2\x82\xac"
    )
    assert status.startswith(b"HTTP/1.1 404"), (status, body)
    assert len(headers[b"x-request-id"]) == 32


def test_status_body_and_log_renderer_survive_lone_surrogates() -> None:
    from grpc_bridge.log import _dumps
    from grpc_bridge.status import status_body

    assert orjson.loads(status_body(3, "G\udcffT"))["message"] == "G\\udcffT"
    assert b"a\\udcffb" in _dumps({"event": "request", "request_id": "a\udcffb"})


# --- #7: absolute-form request target ------------------------------------------------


@pytest.mark.both_edges
async def test_absolute_form_target_is_routed(bridge: RunningBridge) -> None:
    status, _, body = await raw_request(
        bridge, b"GET http://x/v1/things/a%2Fb?name=n HTTP/1.1\r\nHost: x"
    )
    assert status.startswith(b"HTTP/1.1 200"), (status, body)
    got = orjson.loads(body)
    assert (got["id"], got["name"]) == ("a/b", "n")
    status, _, body = await raw_request(
        bridge,
        b"POST http://x/bridgetest.v1.RestService/Get HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 10",
        b'{"id":"2"}',
    )
    assert status.startswith(b"HTTP/1.1 200"), (status, body)
    assert orjson.loads(body)["id"] == "2"


# --- #8: the depth limit of a JSON-array stream body ---------------------------------


async def test_array_stream_body_names_the_configured_depth(bridge: RunningBridge) -> None:
    status, got, _ = await bridge.post(CLIENT_STREAM, b"[" * 70 + b"]" * 70)
    assert status == 400
    assert got["message"] == "JSON nesting deeper than 64 levels"


# --- #9: GET with a body on the generic route ----------------------------------------


@pytest.mark.both_edges
async def test_get_with_a_body_on_the_generic_route_is_400(bridge: RunningBridge) -> None:
    status, got, _ = await bridge.get(
        f"/{SVC}/Lookup?f_string=a",
        data=b'{"fString": "b"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert got["message"].startswith("this route takes no request body")


# --- #11: started counts only calls that got a channel -------------------------------


@pytest.mark.both_edges
async def test_started_is_not_counted_when_no_channel_can_be_picked(
    bridge: RunningBridge,
) -> None:
    plan = next(p for p in bridge.server.bridge.routes.plans if p.info.name == "Echo")
    metrics = Metrics()
    pool = ConnectionPool(Upstream(targets=["127.0.0.1:1"]))  # never opened: no connection
    invoker = Invoker(pool, metrics)
    request = plan.info.input_class()
    with pytest.raises(UpstreamNotReady):
        await invoker.unary(plan.info, request, metadata=[], timeout=1.0)
    labels = {"grpc_type": "unary", "grpc_service": SVC, "grpc_method": "Echo"}
    assert metrics.registry.get_sample_value("grpc_client_started_total", labels) in (None, 0)
