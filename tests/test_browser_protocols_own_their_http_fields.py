"""Upstream metadata never sets the HTTP fields the bridge owns on a gRPC-Web or Connect answer.

gRPC-Web and Connect place the upstream's metadata in plain response headers
(upstream/metadata.py ``plain_headers``). The answer's own HTTP fields are the
bridge's: ``Content-Encoding`` says how *this* body is coded, and the
``Access-Control-*`` fields are the CORS policy's (edge/cors.py). An upstream
is as untrusted as a client (architecture guide): a metadata entry that shares
such a name must not become the field, or a client inflates a body that is not
gzip, and a browser page from an origin the policy refuses reads the answer.

The upstream here answers trailers-only (its status and trailers in one
HEADERS frame, the commonest gRPC error), which gRPC-Web turns into a
trailers-only answer: the trailers go in the head as plain headers.
"""

from __future__ import annotations

import orjson
import pytest

from tests.helpers.grpc_web_tools import VARIANTS, frame
from tests.helpers.harness import running_bridge
from tests.helpers.servers import RunningServer

FAIL = "/bridgetest.v1.TestService/Fail"
ALLOWED = "https://app.example"
REFUSED = "https://evil.example"


def _failing_with(trailers: dict[str, str]) -> bytes:
    return frame(orjson.dumps({"code": 5, "message": "nope", "trailers": trailers}))


@pytest.mark.parametrize("fast_path", [True, False], ids=["lean", "aiohttp"])
async def test_a_metadata_entry_named_content_encoding_does_not_code_the_answer(
    upstream: RunningServer, fast_path: bool
) -> None:
    async with (
        running_bridge(upstream.target, listen={"fast_path": fast_path}) as b,
        b.session.post(
            f"{b.url}{FAIL}",
            data=_failing_with({"content-encoding": "gzip"}),
            headers={"Content-Type": VARIANTS["json"].content_type},
            auto_decompress=False,
        ) as resp,
    ):
        await resp.read()
        assert resp.headers["grpc-status"] == "5"
        # The empty body is not gzip: no field may say it is.
        assert "Content-Encoding" not in resp.headers, resp.headers


@pytest.mark.parametrize("fast_path", [True, False], ids=["lean", "aiohttp"])
async def test_upstream_metadata_cannot_open_cors_to_an_origin_the_policy_refuses(
    upstream: RunningServer, fast_path: bool
) -> None:
    async with (
        running_bridge(
            upstream.target,
            listen={"fast_path": fast_path},
            cors={"allowed_origins": [ALLOWED]},
        ) as b,
        b.session.post(
            f"{b.url}{FAIL}",
            data=_failing_with({"access-control-allow-origin": "*"}),
            headers={"Content-Type": VARIANTS["json"].content_type, "Origin": REFUSED},
        ) as resp,
    ):
        await resp.read()
        assert resp.headers["grpc-status"] == "5"
        assert "Access-Control-Allow-Origin" not in resp.headers, resp.headers
        # Caches keep answers to different origins apart (edge/cors.py adds it).
        assert "Origin" in resp.headers.get("Vary", ""), resp.headers
