"""CORS: preflights, headers on every answer (errors and streams too), settings validation."""

from __future__ import annotations

from typing import Any

import pytest

from grpc_bridge.settings import ConfigError, load_settings
from tests.helpers.harness import MakeBridge, RunningBridge, running_bridge
from tests.helpers.servers import RunningServer
from tests.helpers.streamtools import ECHO, META, SERVER_STREAM

APP = "https://app.example"


@pytest.fixture
async def bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(upstream.target, cors={"allowed_origins": [APP]})


async def preflight(
    bridge: RunningBridge, path: str, method: str, origin: str = APP, headers: str | None = None
) -> Any:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        request_headers["Access-Control-Request-Headers"] = headers
    async with bridge.session.options(f"{bridge.url}{path}", headers=request_headers) as resp:
        return resp.status, resp.headers, await resp.read()


async def test_preflight_allows_the_route_and_the_headers_the_bridge_reads(
    bridge: RunningBridge,
) -> None:
    status, headers, body = await preflight(
        bridge,
        ECHO,
        "POST",
        headers="Content-Type, Content-Encoding, Grpc-Metadata-Tenant, Grpc-Timeout, X-Custom",
    )
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Origin"] == APP
    assert headers["Access-Control-Allow-Methods"] == "POST"
    # X-Custom is not read by the bridge: left out, so the browser names it.
    assert (
        headers["Access-Control-Allow-Headers"]
        == "content-type, content-encoding, grpc-metadata-tenant, grpc-timeout"
    )
    assert headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in headers


async def test_preflight_for_a_server_stream_allows_get(bridge: RunningBridge) -> None:
    status, headers, _ = await preflight(bridge, SERVER_STREAM, "GET")
    assert status == 204 and headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST"


async def test_preflight_from_another_origin_is_403(bridge: RunningBridge) -> None:
    status, headers, body = await preflight(bridge, ECHO, "POST", origin="https://evil.example")
    assert status == 403 and b"cors.allowed_origins" in body
    assert "Access-Control-Allow-Origin" not in headers


async def test_preflight_for_a_wrong_method_or_path(bridge: RunningBridge) -> None:
    status, headers, _ = await preflight(bridge, ECHO, "DELETE")
    assert status == 405 and headers["Allow"] == "POST"
    assert headers["Access-Control-Allow-Origin"] == APP  # so the page can read the 405
    status, _, _ = await preflight(bridge, "/nope.v1.Nope/Nope", "POST")
    assert status == 404


async def test_plain_options_is_not_a_preflight(bridge: RunningBridge) -> None:
    async with bridge.session.options(f"{bridge.url}{ECHO}") as resp:
        assert resp.status == 405


@pytest.mark.both_edges
async def test_answers_expose_the_metadata_headers_by_name(bridge: RunningBridge) -> None:
    status, _, headers = await bridge.get(META, headers={"Origin": APP})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "Origin" in headers["Vary"]
    exposed = {h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")}
    assert {
        "Grpc-Metadata-x-initial",
        "Grpc-Metadata-x-initial-bin",
        "Grpc-Trailer-x-trailer",
        "Grpc-Trailer-x-trailer-bin",
    } <= exposed
    assert any(h.lower() == "x-request-id" for h in exposed)


@pytest.mark.both_edges
async def test_errors_carry_cors_headers(bridge: RunningBridge) -> None:
    for status, call in (
        (404, bridge.get("/nope.v1.Nope/Nope", headers={"Origin": APP})),
        (400, bridge.post(ECHO, b"{bad", headers={"Origin": APP})),
        (405, bridge.get(ECHO, headers={"Origin": APP})),
    ):
        got, _, headers = await call
        assert got == status
        assert headers["Access-Control-Allow-Origin"] == APP
        assert "X-Request-Id" in headers["Access-Control-Expose-Headers"]


async def test_streams_carry_cors_headers(bridge: RunningBridge) -> None:
    status, _, headers = await bridge.get(
        f"{SERVER_STREAM}?count=1", headers={"Origin": APP, "Accept": "text/event-stream"}
    )
    assert status == 200 and headers["Access-Control-Allow-Origin"] == APP


@pytest.mark.both_edges
async def test_other_origins_are_served_without_cors_headers(bridge: RunningBridge) -> None:
    status, _, headers = await bridge.get(META, headers={"Origin": "https://evil.example"})
    assert status == 200  # the browser, not the bridge, withholds the answer
    assert "Access-Control-Allow-Origin" not in headers
    assert headers["Vary"] == "Accept-Encoding, Origin"


async def test_cors_off_by_default(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as bridge:
        status, _, headers = await bridge.get(META, headers={"Origin": APP})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers
        status, _, body = await preflight(bridge, ECHO, "POST")
        assert status == 403 and b"cors.allowed_origins is empty" in body


async def test_wildcard_and_credentials(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target, cors={"allowed_origins": ["*"]}) as bridge:
        _, _, headers = await bridge.get(META, headers={"Origin": "https://any.example"})
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "Origin" not in headers.get("Vary", "")  # the same answer for every origin
    async with running_bridge(
        upstream.target, cors={"allowed_origins": ["*"], "allow_credentials": True}
    ) as bridge:
        # "*" can't go with credentials: the origin is echoed.
        _, _, headers = await bridge.get(META, headers={"Origin": "https://any.example"})
        assert headers["Access-Control-Allow-Origin"] == "https://any.example"
        assert headers["Access-Control-Allow-Credentials"] == "true"
        status, headers, _ = await preflight(bridge, ECHO, "POST", origin="https://any.example")
        assert status == 204 and headers["Access-Control-Allow-Credentials"] == "true"


async def test_extra_allowed_headers_and_max_age(upstream: RunningServer) -> None:
    async with running_bridge(
        upstream.target,
        cors={"allowed_origins": [APP], "allowed_headers": ["X-Custom"], "max_age_s": 30},
    ) as bridge:
        status, headers, _ = await preflight(bridge, ECHO, "POST", headers="x-custom")
        assert status == 204
        assert headers["Access-Control-Allow-Headers"] == "x-custom"
        assert headers["Access-Control-Max-Age"] == "30"


@pytest.mark.parametrize(
    "origin", ["https://app.example/", "app.example", "https://App.example", "https://a/b"]
)
def test_origins_are_validated(origin: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"upstream": "127.0.0.1:1", "cors": {"allowed_origins": [origin]}})
    assert info.value.problems[0].startswith("cors.allowed_origins: ")


def test_streams_settings_defaults() -> None:
    settings = load_settings(None, {"upstream": "127.0.0.1:1"})
    assert settings.streams.idle_timeout_s == 300
    assert settings.cors.max_age_s == 600 and settings.cors.allowed_headers == []
