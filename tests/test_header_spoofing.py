"""Clients can't spoof the metadata the bridge sets itself, by any route.

``Grpc-Metadata-X-Forwarded-Host: evil.example`` must not reach the upstream
beside the bridge's own value: a reader taking the first value (grpc-go's
``md.Get(k)[0]``) would see the client's. A real upstream echoes what it received.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import orjson
import pytest

from tests.helpers.process import run_cli
from tests.helpers.raw_http import PATHS, bridge_on, request, response_to
from tests.helpers.servers import RunningServer
from tests.helpers.slowclients import websocket_text
from tests.helpers.streamtools import META

SPOOFS = (
    "Grpc-Metadata-X-Forwarded-Host: evil.example",
    "Grpc-Metadata-X-Forwarded-Proto: evil",
    "Grpc-Metadata-X-Forwarded-For: 6.6.6.6",
    "Grpc-Metadata-User-Agent: evil",
    "Grpc-Metadata-Content-Type: application/evil",
    "Grpc-Metadata-Te: evil",
    "Grpc-Metadata-Grpc-Timeout: 1n",
    "Grpc-Metadata-Grpc-Encoding: evil",
    "Grpc-Metadata-Host: evil.example",
    "X-Forwarded-Host: evil.example",
    "X-Forwarded-Proto: evil",
    "X-Forwarded-For: 6.6.6.6",
    "Grpc-Metadata-Tenant: acme",
)


def check(received: dict[str, str], forwarded_for: str) -> None:
    assert received["tenant"] == "acme"  # ordinary metadata still goes through
    assert received["x-forwarded-host"] == "bridge"
    assert received["x-forwarded-proto"] == "http"
    assert received["x-forwarded-for"] == forwarded_for
    assert "evil" not in received.get("user-agent", "")
    spoofed = {k: v for k, v in received.items() if "evil" in v or "6.6.6.6" in v}
    if forwarded_for.startswith("6.6.6.6"):
        spoofed.pop("x-forwarded-for")
    assert spoofed == {}


@pytest.mark.parametrize("path", PATHS)
async def test_what_the_bridge_sets_is_never_the_clients(
    upstream: RunningServer, path: str
) -> None:
    async with bridge_on(upstream.target, path) as bridge:
        status, _, body = await response_to(bridge, request("POST", META, b"{}", *SPOOFS))
    assert status == 200, body
    check(orjson.loads(body)["received"], "127.0.0.1")


@pytest.mark.parametrize("path", PATHS)
async def test_a_trusted_forwarded_for_is_appended_to(upstream: RunningServer, path: str) -> None:
    async with bridge_on(
        upstream.target, path, env={"GRPC_BRIDGE_METADATA__TRUST_FORWARDED_FOR": "true"}
    ) as bridge:
        status, _, body = await response_to(bridge, request("POST", META, b"{}", *SPOOFS))
    assert status == 200, body
    check(orjson.loads(body)["received"], "6.6.6.6, 127.0.0.1")


async def test_a_websocket_upgrade_cannot_spoof_them(upstream: RunningServer) -> None:
    async with bridge_on(upstream.target, "lean") as bridge:
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.proxy_port)
        key = base64.b64encode(b"0123456789abcdef").decode()
        upgrade = request(
            "GET",
            META,
            None,
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *SPOOFS,
        )
        writer.write(upgrade + websocket_text(b"{}"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        frame = await reader.readexactly(2)
        size = frame[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        message = orjson.loads(await reader.readexactly(size))
        writer.close()
    check(message["result"]["received"], "127.0.0.1")


@pytest.mark.parametrize("name", ["user-agent", "x-forwarded-for", "x-forwarded-host"])
async def test_forward_headers_cannot_name_them(tmp_path: Path, name: str) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "upstreams: [{name: u, targets: ['127.0.0.1:1']}]\n"
        f"metadata: {{forward_headers: [{name}]}}\n"
    )
    code, _, err = await run_cli("check-config", "--config", str(config))
    assert code != 0
    assert "metadata.forward_headers" in err and "set by the bridge itself" in err
