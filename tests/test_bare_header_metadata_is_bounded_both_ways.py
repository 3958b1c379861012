"""Attack repros: metadata as bare headers on gRPC-Web and Connect (both directions)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.h2peer import HostilePeer, descriptor_set
from tests.helpers.raw_http import bridge_on, response_to

ECHO = "/bridgetest.v1.TestService/Echo"
APP = "https://app.example"
EVIL = "https://evil.example"
FRAME = struct.pack(">BI", 0, 0)


@pytest.fixture
async def peer() -> AsyncIterator[HostilePeer]:
    hostile = await HostilePeer().start()
    try:
        yield hostile
    finally:
        await hostile.stop()


def config(peer: HostilePeer, tmp_path: Path) -> dict[str, Any]:
    upstream = {
        "name": "hostile",
        "targets": [peer.target],
        "reflection": False,
        "descriptor_sets": [str(descriptor_set(tmp_path))],
    }
    return {"upstreams": [upstream], "cors": {"allowed_origins": [APP]}}


def grpc_web(*headers: str) -> bytes:
    head = [
        f"POST {ECHO} HTTP/1.1",
        "Host: bridge",
        "Content-Type: application/grpc-web+proto",
        f"Content-Length: {len(FRAME)}",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + FRAME


def connect_unary(*headers: str) -> bytes:
    head = [
        f"POST {ECHO} HTTP/1.1",
        "Host: bridge",
        "Content-Type: application/json",
        "Connect-Protocol-Version: 1",
        "Content-Length: 2",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + b"{}"


REQUESTS = {"grpc-web": grpc_web, "connect": connect_unary}


@pytest.mark.parametrize("protocol", REQUESTS)
async def test_upstream_metadata_cannot_grant_cors_to_a_disallowed_origin(
    peer: HostilePeer, tmp_path: Path, protocol: str
) -> None:
    """Initial metadata goes out as bare headers; cors.decorate() skips an answer that already
    has Access-Control-Allow-Origin, so the upstream's ``*`` reaches an origin not allowed."""
    peer.initial = (
        (b"access-control-allow-origin", b"*"),
        (b"access-control-expose-headers", b"*"),
    )
    async with bridge_on(None, "aiohttp", config=config(peer, tmp_path)) as bridge:
        status, headers, _ = await response_to(bridge, REQUESTS[protocol](f"Origin: {EVIL}"))
        assert status == 200
        assert "access-control-allow-origin" not in headers, headers


@pytest.mark.parametrize("protocol", REQUESTS)
async def test_upstream_metadata_cannot_set_the_answers_content_encoding(
    peer: HostilePeer, tmp_path: Path, protocol: str
) -> None:
    """An answer that says gzip but is not: clients fail to decode it (or worse, a cache
    stores it so)."""
    peer.initial = ((b"content-encoding", b"gzip"),)
    async with bridge_on(None, "aiohttp", config=config(peer, tmp_path)) as bridge:
        status, headers, body = await response_to(bridge, REQUESTS[protocol]())
        assert status == 200
        assert "content-encoding" not in headers, (headers, body)


@pytest.mark.parametrize("protocol", REQUESTS)
@pytest.mark.parametrize(
    "header",
    ["Forwarded: for=6.6.6.6", "X-Real-IP: 6.6.6.6", "True-Client-IP: 6.6.6.6"],
)
async def test_client_cannot_spoof_its_address_on_bare_header_protocols(
    peer: HostilePeer, tmp_path: Path, protocol: str, header: str
) -> None:
    """X-Forwarded-For from the client is dropped (trust_forwarded_for off), but its siblings
    naming the client's address pass as metadata on gRPC-Web and Connect."""
    async with bridge_on(None, "aiohttp", config=config(peer, tmp_path)) as bridge:
        status, _, body = await response_to(
            bridge, REQUESTS[protocol]("X-Forwarded-For: 6.6.6.6", header)
        )
        assert status == 200, body
    sent = {name: value for name, value in peer.calls[-1]}
    assert sent.get(b"x-forwarded-for") == b"127.0.0.1"  # the XFF spoof is refused
    name = header.partition(":")[0].lower().encode()
    assert name not in sent, sent


@pytest.mark.parametrize("protocol", REQUESTS)
async def test_the_generated_request_id_is_forwarded_upstream(
    peer: HostilePeer, tmp_path: Path, protocol: str
) -> None:
    """docs/metadata.md: every response's X-Request-Id, generated when the client sent none,
    is "also forwarded upstream as x-request-id"; on gRPC-Web and Connect it is not."""
    async with bridge_on(None, "aiohttp", config=config(peer, tmp_path)) as bridge:
        status, headers, body = await response_to(bridge, REQUESTS[protocol]())
        assert status == 200, body
    sent = {name: value for name, value in peer.calls[-1]}
    assert sent.get(b"x-request-id") == headers["x-request-id"][0].encode(), sent


@pytest.mark.parametrize("protocol", REQUESTS)
async def test_client_envoy_control_headers_are_not_forwarded(
    peer: HostilePeer, tmp_path: Path, protocol: str
) -> None:
    """An Envoy behind the bridge sees the bridge as an internal peer and obeys x-envoy-*
    request headers (retries, upstream timeout past the bridge's clamp); an edge Envoy strips
    them from external clients. On gRPC-Web and Connect the bridge forwards them as metadata."""
    async with bridge_on(None, "aiohttp", config=config(peer, tmp_path)) as bridge:
        status, _, body = await response_to(
            bridge,
            REQUESTS[protocol](
                "X-Envoy-Upstream-Rq-Timeout-Ms: 99999999",
                "X-Envoy-Max-Retries: 10",
                "X-Envoy-Retry-On: 5xx,reset",
            ),
        )
        assert status == 200, body
    sent = [name for name, _ in peer.calls[-1] if name.startswith(b"x-envoy-")]
    assert sent == [], sent
