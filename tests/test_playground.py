"""The admin playground: the page, its off-switch, and calls forwarded to the proxy listener.

Every call through ``POST /playground/call/{service}/{method}`` must answer
what the proxy port answers for the same request: same status, same body
bytes, same metadata headers, as it goes through the very same listener.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
from typing import Any

import orjson
import pytest

from grpc_bridge.admin.playground import PAGE
from grpc_bridge.edge.listen import loopback_host
from grpc_bridge.settings import load_settings
from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.servers import TEST_SERVICE, RunningServer

SVC = f"/{TEST_SERVICE}"
CALL = f"/playground/call/{TEST_SERVICE}"
# Headers that differ between any two responses, wherever they come from.
_VOLATILE = {"date", "server", "connection", "keep-alive", "transfer-encoding"}


async def both(
    b: RunningBridge, method: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[tuple[int, bytes, dict[str, str]], tuple[int, bytes, dict[str, str]]]:
    """The same POST to the proxy port and through the playground: (status, body, headers) each."""
    sent = {"Content-Type": "application/json", "X-Request-Id": "fixed-id", **(headers or {})}
    answers = []
    for url in (f"{b.url}{SVC}/{method}", f"{b.admin_url}{CALL}/{method}"):
        # BytesIO: aiohttp warns (an error here) about large raw bytes bodies.
        async with b.session.post(url, data=io.BytesIO(body), headers=sent) as resp:
            kept = {k.lower(): v for k, v in resp.headers.items() if k.lower() not in _VOLATILE}
            answers.append((resp.status, await resp.read(), kept))
    return answers[0], answers[1]


async def test_the_page_is_served_self_contained(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        async with b.session.get(f"{b.admin_url}/playground") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            html = await resp.read()
            csp = resp.headers["Content-Security-Policy"]
            assert resp.headers["Cache-Control"] == "no-store"
        # Never on the proxy port.
        async with b.session.get(f"{b.url}/playground") as resp:
            assert resp.status == 404
    assert html == PAGE
    assert b"grpc-bridge playground" in html
    # No external asset: every src/href is inline data or relative.
    assert not re.search(rb"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    # The policy runs exactly the page's own inline script and style.
    for tag in (b"script", b"style"):
        (block,) = re.findall(rb"^<%s>(.*?)</%s>" % (tag, tag), html, re.S | re.M)
        digest = base64.b64encode(hashlib.sha256(block).digest()).decode()
        assert f"{tag.decode()}-src 'sha256-{digest}'" in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp


async def test_playground_off_is_a_404_like_any_unknown_admin_path(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target, admin={"playground": False}) as b:
        for method, path in (
            ("GET", "/playground"),
            ("POST", f"{CALL}/Echo"),
            ("GET", "/no-such-admin-path"),
        ):
            async with b.session.request(method, f"{b.admin_url}{path}") as resp:
                assert resp.status == 404, path
                assert (await resp.json())["code"] == 5
        async with b.session.get(f"{b.admin_url}/healthz") as resp:
            assert resp.status == 200


def test_the_setting_comes_from_yaml_env_and_defaults_to_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    assert load_settings(None, {"upstream": "127.0.0.1:1"}).admin.playground is True
    config = tmp_path / "bridge.yaml"
    config.write_text("upstream: 127.0.0.1:1\nadmin: {playground: false}\n")
    assert load_settings(config).admin.playground is False
    monkeypatch.setenv("GRPC_BRIDGE_ADMIN__PLAYGROUND", "true")
    assert load_settings(config).admin.playground is True


async def test_a_unary_call_answers_the_proxy_ports_bytes(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        body = orjson.dumps({"fString": "hi", "fInt64": "7", "color": "RED", "rString": ["a"]})
        direct, played = await both(b, "Echo", body)
    assert direct[0] == played[0] == 200
    assert played[1] == direct[1]
    assert orjson.loads(played[1])["fString"] == "hi"
    assert played[2] == direct[2]
    assert played[2]["x-request-id"] == "fixed-id"


async def test_metadata_goes_through_the_proxys_allowlist(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        direct, played = await both(
            b,
            "EchoMetadata",
            b"{}",
            {
                "Grpc-Metadata-Tenant": "acme",
                "Authorization": "Bearer t",
                "Cookie": "session=admin",  # never forwarded
                "X-Custom": "no",  # not in metadata.forward_headers
            },
        )
    assert played[0] == direct[0] == 200
    received = orjson.loads(played[1])["received"]
    assert received["tenant"] == "acme"
    assert received["authorization"] == "Bearer t"
    assert "cookie" not in received and "x-custom" not in received
    # The playground's hop: the proxy keeps a client's X-Forwarded-For only when
    # metadata.trust_forwarded_for is on (off by default).
    assert received["x-forwarded-for"] == "127.0.0.1"
    # The host the browser used (the admin port's), not the loopback hop's.
    assert received["x-forwarded-host"] == f"127.0.0.1:{b.server.admin_port}"
    assert direct[1] and orjson.loads(direct[1])["received"]["x-forwarded-host"] == (
        f"127.0.0.1:{b.server.proxy_port}"
    )
    # Initial metadata and trailers come back as the proxy sends them.
    assert played[2]["grpc-metadata-x-initial"] == "yes"
    assert played[2]["grpc-trailer-x-trailer"] == "done"
    assert {k for k in played[2] if k.startswith("grpc-")} == {
        k for k in direct[2] if k.startswith("grpc-")
    }


async def test_an_error_status_passes_through(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        body = orjson.dumps(
            {"code": 5, "message": "no such item", "withDetails": True, "trailers": {"x-t": "1"}}
        )
        direct, played = await both(b, "Fail", body)
        bad_json = await both(b, "Echo", b'{"fString": ')
        unknown_field = await both(b, "Echo", b'{"bogus": 1}')
        no_method = await both(b, "NoSuchMethod", b"{}")
    assert played == direct
    assert played[0] == 404
    status = orjson.loads(played[1])
    assert status["code"] == 5 and status["message"] == "no such item"
    assert status["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert played[2]["grpc-trailer-x-t"] == "1"
    for direct_answer, played_answer in (bad_json, unknown_field, no_method):
        assert played_answer == direct_answer
    assert bad_json[1][0] == 400 and orjson.loads(bad_json[1][1])["code"] == 3
    assert "bogus" in orjson.loads(unknown_field[1][1])["message"]
    assert no_method[1][0] == 404


async def test_the_deadline_header_is_the_proxys(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        started = asyncio.get_running_loop().time()
        async with b.session.post(
            f"{b.admin_url}{CALL}/Sleep",
            json={"duration": "5s", "tag": "deadline"},
            headers={"Grpc-Timeout": "200m"},
        ) as resp:
            assert resp.status == 504
            assert (await resp.json())["code"] == 4
        assert asyncio.get_running_loop().time() - started < 3
        await upstream.test.wait_for("cancelled", "deadline")


async def test_a_server_stream_arrives_message_by_message(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        body = orjson.dumps({"count": 3, "interval": "0.3s", "tag": "played"})
        async with b.session.post(
            f"{b.admin_url}{CALL}/ServerStream",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/x-ndjson"
            first = await resp.content.readline()
            # The first message is here while the upstream is still sending the rest.
            assert orjson.loads(first) == {"result": {"index": 0, "text": "played-0"}}
            assert "played" not in upstream.test.completed
            played = first + await resp.read()
        direct, through = await both(
            b,
            "ServerStream",
            orjson.dumps({"count": 3, "tag": "same", "failCode": 9, "failAfter": 2}),
        )
    assert [orjson.loads(line)["result"]["text"] for line in played.splitlines()] == [
        "played-0",
        "played-1",
        "played-2",
    ]
    # An in-band error after the first message, byte for byte as on the proxy port.
    assert through == direct
    assert orjson.loads(through[1].splitlines()[-1])["error"]["code"] == 9


async def test_request_streams_and_sse_go_through(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        body = orjson.dumps([{"text": "a"}, {"text": "b"}])
        client_stream = await both(b, "ClientStream", body)
        bidi = await both(b, "Bidi", body)
        ndjson = await both(
            b,
            "ClientStream",
            b'{"text": "x"}\n{"text": "y"}\n',
            {"Content-Type": "application/x-ndjson"},
        )
        sse = await both(
            b,
            "ServerStream",
            orjson.dumps({"count": 2, "tag": "s"}),
            {"Accept": "text/event-stream"},
        )
    assert client_stream[1] == client_stream[0]
    assert orjson.loads(client_stream[1][1]) == {"count": 2, "texts": ["a", "b"]}
    assert bidi[1] == bidi[0] and bidi[1][0] == 200
    assert ndjson[1] == ndjson[0] and orjson.loads(ndjson[1][1])["texts"] == ["x", "y"]
    assert sse[1] == sse[0]
    assert sse[1][2]["content-type"].startswith("text/event-stream")
    assert b"event: end" in sse[1][1]


async def test_a_browser_that_leaves_cancels_the_upstream_call(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        resp = await b.session.post(
            f"{b.admin_url}{CALL}/ServerStream",
            json={"count": 100, "interval": "0.1s", "tag": "left"},
        )
        assert orjson.loads(await resp.content.readline())["result"]["text"] == "left-0"
        resp.close()  # drops the connection
        await upstream.test.wait_for("cancelled", "left")


async def test_bad_requests_to_the_endpoint(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        admin = b.admin_url

        async def answer(method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
            async with b.session.request(method, f"{admin}{path}", **kwargs) as resp:
                return resp.status, await resp.json(), resp.headers

        status, body, headers = await answer("GET", f"{CALL}/Echo")
        assert (status, body["code"], headers["Allow"]) == (405, 12, "POST")
        for path in (
            "/playground/call/bad..name/Echo",
            "/playground/call/1pkg.Svc/Echo",
            f"{CALL}/Echo%2FMore",
            "/playground/call/pkg.Svc/Me-thod",
        ):
            status, body, _ = await answer("POST", path, json={})
            assert (status, body["code"]) == (400, 3), path
        # A page of another origin can't make the operator's browser call methods.
        for headers in (
            {"Origin": "http://evil.example"},
            {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
            {"Sec-Fetch-Site": "same-site"},
        ):
            status, body, _ = await answer("POST", f"{CALL}/Echo", json={}, headers=headers)
            assert (status, body["code"]) == (403, 7), headers
        same_origin = {"Origin": admin, "Sec-Fetch-Site": "same-origin"}
        status, body, _ = await answer("POST", f"{CALL}/Echo", json={}, headers=same_origin)
        assert status == 200
        status, body, _ = await answer("POST", f"{CALL}/Echo", json={}, headers={"Origin": admin})
        assert status == 200


async def test_an_unreachable_proxy_listener_is_a_503(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        await b.server.proxy_runner.cleanup()
        async with b.session.post(f"{b.admin_url}{CALL}/Echo", json={}) as resp:
            assert resp.status == 503
            body = await resp.json()
    assert body["code"] == 14 and "not reachable" in body["message"]


def test_the_proxy_is_reached_on_loopback_when_bound_to_every_address() -> None:
    assert loopback_host("0.0.0.0") == "127.0.0.1"
    assert loopback_host("") == "127.0.0.1"
    assert loopback_host("::") == "::1"
    assert loopback_host("10.1.2.3") == "10.1.2.3"
    assert loopback_host("[::1]") == "::1"
    assert loopback_host("localhost") == "localhost"


async def test_a_proxy_bound_to_every_address_is_reached(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target, listen={"host": "0.0.0.0"}) as b:
        status, body, _ = await b.post("/bridgetest.v1.TestService/Echo", {"fString": "x"})
        assert (status, body["fString"]) == (200, "x")  # the proxy port itself
        async with b.session.post(f"{b.admin_url}{CALL}/Echo", json={"fString": "x"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["fString"] == "x"


async def test_a_large_body_keeps_the_proxys_limit(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target, limits={"max_request_bytes": 2_000_000}) as b:
        text = "x" * 1_500_000  # over aiohttp's 1 MiB default: streamed, not read whole
        fits = orjson.dumps({"fString": text})
        direct, played = await both(b, "Echo", fits)
        over = await both(b, "Echo", orjson.dumps({"fString": text * 2}))
    assert played == direct and played[0] == 200
    assert over[1] == over[0] and over[1][0] == 413
