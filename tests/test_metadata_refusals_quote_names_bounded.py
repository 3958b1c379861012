"""Attack repros: a refusal quotes client text unbounded on gRPC-Web and Connect.

Every request header is metadata there, so a header *name* that is a valid HTTP token but not
a metadata key (``!``) reaches upstream/metadata.py to_metadata, whose InvalidArgument quotes
the raw name and the key with ``!r`` (not ``shown()``): ~12 KB of client text in a
``grpc-message`` header (gRPC-Web) or the error JSON (Connect), and in the log line.
"""

from __future__ import annotations

import struct

import orjson

from tests.helpers.raw_http import bridge_on, request_logs, response_to
from tests.helpers.servers import RunningServer

ECHO = "/bridgetest.v1.TestService/Echo"
FRAME = struct.pack(">BI", 0, 0)
NAME = "x!" + "a" * 6000


def head(content_type: str, length: int, *extra: str) -> bytes:
    lines = [f"POST {ECHO} HTTP/1.1", "Host: b", f"Content-Type: {content_type}"]
    lines += [f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_bad_metadata_name_is_quoted_bounded_on_grpc_web(upstream: RunningServer) -> None:
    async with bridge_on(upstream.target, "aiohttp") as bridge:
        data = head("application/grpc-web", len(FRAME), f"{NAME}: v") + FRAME
        status, headers, _ = await response_to(bridge, data)
        assert status == 200 and headers["grpc-status"] == ["3"], headers
        message = headers["grpc-message"][0]
        await bridge.wait_until(lambda events: len(request_logs(bridge)) >= 1)
        logged = str(request_logs(bridge)[-1].get("error", ""))
    assert len(message) < 300, len(message)
    assert len(logged) < 300, len(logged)


async def test_a_bad_metadata_name_is_quoted_bounded_on_connect(upstream: RunningServer) -> None:
    async with bridge_on(upstream.target, "aiohttp") as bridge:
        data = head("application/json", 2, "Connect-Protocol-Version: 1", f"{NAME}: v") + b"{}"
        status, _, body = await response_to(bridge, data)
        assert status == 400, body
        message = orjson.loads(body)["message"]
    assert len(message) < 300, len(message)
