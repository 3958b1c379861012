"""A 406 names the client's Accept-Encoding bounded, as every other refusal names client text.

pipeline/inflate.py shows a refused Content-Encoding as at most 40 printable
characters; the 406 of an Accept-Encoding that refuses every coding puts the
whole header value (up to the head's limit, ~8 KB) in the answer and in the
``request`` log line's ``error``, once per request.
"""

from __future__ import annotations

import orjson
import pytest

from tests.helpers.raw_http import PATHS, bridge_on, request, request_logs, response_to
from tests.helpers.servers import RunningServer

ECHO = "/bridgetest.v1.TestService/Echo"
#: identity refused, and nothing the bridge can send: 6 KB of unknown codings.
REFUSING = "identity;q=0, " + "x," * 3000


@pytest.mark.parametrize("path", PATHS)
async def test_a_406_names_the_accept_encoding_bounded(upstream: RunningServer, path: str) -> None:
    async with bridge_on(upstream.target, path) as bridge:
        status, _, body = await response_to(
            bridge, request("POST", ECHO, b"{}", f"Accept-Encoding: {REFUSING}")
        )
        assert status == 406, body
        message = orjson.loads(body)["message"]
        await bridge.wait_until(lambda events: len(request_logs(bridge)) >= 1)
        logged = request_logs(bridge)[-1]["error"]
    assert "refuses identity and every coding" in message
    assert len(message) < 300, len(message)
    assert len(logged) < 300, len(logged)
