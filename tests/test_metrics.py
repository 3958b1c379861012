"""A Prometheus scrape after known traffic shows exact counts, codes and labels."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.helpers.harness import RunningBridge, running_bridge, scrape, value
from tests.helpers.servers import RunningServer

SVC = "bridgetest.v1.TestService"


def grpc_labels(kind: str, method: str) -> dict[str, str]:
    return {"grpc_type": kind, "grpc_service": SVC, "grpc_method": method}


async def ndjson_lines(b: RunningBridge, path: str, body: Any) -> list[bytes]:
    async with b.session.post(f"{b.url}{path}", json=body) as resp:
        return (await resp.read()).splitlines()


async def test_scrape_after_mixed_traffic(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        for _ in range(3):
            assert (await b.post(f"/{SVC}/Echo", {"fInt32": 1}))[0] == 200
        assert (await b.post(f"/{SVC}/Fail", {"code": 5, "message": "gone"}))[0] == 404
        assert (await b.post(f"/{SVC}/Fail", {"code": 14, "message": "down"}))[0] == 503
        assert (await b.post("/no/such/path", {}))[0] == 404
        assert (await b.post(f"/{SVC}/Echo", b"{"))[0] == 400
        assert (await b.post(f"/{SVC}/Echo", {}, headers={"Grpc-Timeout": "x"}))[0] == 400
        lines = await ndjson_lines(b, f"/{SVC}/ServerStream", {"count": 4})
        assert len(lines) == 4
        async with b.session.post(
            f"{b.url}/{SVC}/ClientStream",
            data=b'{"text": "a"}\n{"text": "b"}\n',
            headers={"Content-Type": "application/x-ndjson"},
        ) as resp:
            assert resp.status == 200
        async with b.session.ws_connect(f"{b.url}/{SVC}/Bidi") as ws:
            for i in range(2):
                await ws.send_str(f'{{"index": {i}}}')
                await ws.receive()
            await ws.send_str("")
            closed = await ws.receive()
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

        await asyncio.sleep(0.1)  # let the server-side handlers finish their bookkeeping
        m = await scrape(b)

    echo = grpc_labels("unary", "Echo")
    assert value(m, "grpc_client_started_total", **echo) == 3
    assert value(m, "grpc_client_handled_total", **echo, grpc_code="OK") == 3
    assert value(m, "grpc_client_msg_sent_total", **echo) == 3
    assert value(m, "grpc_client_msg_received_total", **echo) == 3
    assert value(m, "grpc_client_handling_seconds_count", **echo) == 3
    fail = grpc_labels("unary", "Fail")
    assert value(m, "grpc_client_handled_total", **fail, grpc_code="NOT_FOUND") == 1
    assert value(m, "grpc_client_handled_total", **fail, grpc_code="UNAVAILABLE") == 1
    assert value(m, "grpc_client_msg_received_total", **fail) == 0

    stream = grpc_labels("server_stream", "ServerStream")
    assert value(m, "grpc_client_started_total", **stream) == 1
    assert value(m, "grpc_client_msg_received_total", **stream) == 4
    assert value(m, "grpc_client_msg_sent_total", **stream) == 1
    assert value(m, "grpc_client_handled_total", **stream, grpc_code="OK") == 1
    client = grpc_labels("client_stream", "ClientStream")
    assert value(m, "grpc_client_msg_sent_total", **client) == 2
    assert value(m, "grpc_client_msg_received_total", **client) == 1
    assert value(m, "grpc_client_handled_total", **client, grpc_code="OK") == 1
    bidi = grpc_labels("bidi_stream", "Bidi")
    assert value(m, "grpc_client_msg_sent_total", **bidi) == 2
    assert value(m, "grpc_client_msg_received_total", **bidi) == 2
    assert value(m, "grpc_client_handled_total", **bidi, grpc_code="OK") == 1

    route = f"/{SVC}/Echo"
    # 3 OK, 1 bad JSON, 1 bad timeout.
    assert (
        value(m, "grpc_bridge_http_requests_total", route=route, method="POST", status_class="2xx")
        == 3
    )
    assert (
        value(m, "grpc_bridge_http_requests_total", route=route, method="POST", status_class="4xx")
        == 2
    )
    assert value(m, "grpc_bridge_http_request_duration_seconds_count", route=route) == 5
    assert (
        value(
            m,
            "grpc_bridge_http_requests_total",
            route="unmatched",
            method="POST",
            status_class="4xx",
        )
        == 1
    )
    assert not any("/no/such/path" in str(labels) for _, labels in m)
    assert value(m, "grpc_bridge_rejected_requests_total", reason="unknown_route") == 1
    assert value(m, "grpc_bridge_rejected_requests_total", reason="bad_request") == 1
    assert value(m, "grpc_bridge_rejected_requests_total", reason="bad_timeout") == 1
    assert value(m, "grpc_bridge_http_requests_in_flight") == 0  # admin requests are not counted
    for framing in ("ndjson", "sse", "websocket"):
        assert value(m, "grpc_bridge_streams_open", framing=framing) == 0
    assert value(m, "grpc_bridge_upstream_ready", upstream="default") == 1
    assert (
        value(m, "grpc_bridge_discovery_refreshes_total", upstream="default", result="success") == 1
    )
    assert value(m, "grpc_bridge_draining") == 0
    build = [labels for name, labels in m if name == "grpc_bridge_build_info"]
    assert build and ("version", "0.1.0") in build[0]


async def test_open_streams_and_cancellation_are_counted(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        resp = await b.session.post(
            f"{b.url}/{SVC}/ServerStream",
            json={"count": 100, "interval": "0.05s", "tag": "counted"},
            headers={"Accept": "text/event-stream"},
        )
        await resp.content.readline()
        m = await scrape(b)
        assert value(m, "grpc_bridge_streams_open", framing="sse") == 1
        resp.close()
        await upstream.test.wait_for("cancelled", "counted")
        await asyncio.sleep(0.1)
        m = await scrape(b)
        assert value(m, "grpc_bridge_streams_open", framing="sse") == 0
        stream = grpc_labels("server_stream", "ServerStream")
        assert value(m, "grpc_client_handled_total", **stream, grpc_code="CANCELLED") == 1
