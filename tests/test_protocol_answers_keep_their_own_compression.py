"""gRPC-Web answers and Connect streams never take an HTTP Content-Encoding from the edge.

Their clients compress per message (grpc-encoding, Connect-Content-Encoding);
a whole-body gzip added by the JSON routes' response compression would reach
a client that does not undo it. The JSON routes' own answers still get it (the
control), and so do Connect unary answers (tests/test_connect_unary_response_compression.py).
"""

from __future__ import annotations

import orjson
import pytest

from tests.helpers.connect_tools import JSON_STREAM, envelope
from tests.helpers.grpc_web_tools import VARIANTS, frame
from tests.helpers.harness import running_bridge
from tests.helpers.servers import RunningServer

ECHO = "/bridgetest.v1.TestService/Echo"
STREAM = "/bridgetest.v1.TestService/ServerStream"
LONG = "x" * 4096


def _requests() -> list[tuple[str, str, dict[str, str], bytes]]:
    echo = orjson.dumps({"fString": LONG})
    return [
        ("grpc-web+json unary", ECHO, {"Content-Type": VARIANTS["json"].content_type}, frame(echo)),
        (
            "connect stream error",
            STREAM,
            JSON_STREAM,
            envelope(orjson.dumps({"count": 1, "failCode": 5, "failAfter": 0})),
        ),
    ]


@pytest.mark.parametrize("fast_path", [True, False], ids=["lean", "aiohttp"])
async def test_browser_protocol_answers_are_not_http_compressed(
    upstream: RunningServer, fast_path: bool
) -> None:
    # Every answer is big enough to compress (min_bytes 0): only the protocol can say no.
    async with running_bridge(
        upstream.target, listen={"fast_path": fast_path}, compression={"min_bytes": 0}
    ) as b:
        for name, path, headers, body in _requests():
            async with b.session.post(
                f"{b.url}{path}",
                data=body,
                headers={**headers, "Accept-Encoding": "gzip"},
                auto_decompress=False,
            ) as resp:
                raw = await resp.read()
                assert "Content-Encoding" not in resp.headers, name
                assert b"xxxx" in raw or b"failing" in raw, name
        # The control: the same JSON call on the JSON route is compressed.
        async with b.session.post(
            f"{b.url}{ECHO}",
            data=orjson.dumps({"fString": LONG}),
            headers={"Content-Type": "application/json", "Accept-Encoding": "gzip"},
            auto_decompress=False,
        ) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
