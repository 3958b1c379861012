"""A Connect unary answer is gzipped when the request's ``Accept-Encoding`` asks for it.

docs/connect.md: "answers are compressed as ``Accept-Encoding`` asks"; issue 15:
compression by ``Content-Encoding`` / ``Accept-Encoding`` for unary, gzip at
least; protocol/connect.py: "Unary answers negotiate Content-Encoding here
(connect_unary.py)". The JSON route's same call is the control.
"""

from __future__ import annotations

import gzip

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2

from tests.helpers.connect_tools import JSON_UNARY, PROTO_UNARY
from tests.helpers.harness import MakeBridge
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.both_edges

ECHO = "/bridgetest.v1.TestService/Echo"
LONG = "x" * 4096


@pytest.mark.parametrize("codec", ["json", "proto"])
async def test_a_connect_unary_answer_is_gzipped_when_accept_encoding_names_gzip(
    upstream: RunningServer, make_bridge: MakeBridge, codec: str
) -> None:
    if codec == "json":
        headers, body = JSON_UNARY, orjson.dumps({"fString": LONG})
    else:
        headers, body = PROTO_UNARY, kitchen_pb2.Kitchen(f_string=LONG).SerializeToString()
    b = await make_bridge(upstream.target, compression={"min_bytes": 0})
    async with (
        b.session.post(
            f"{b.url}{ECHO}",
            data=body,
            headers={**headers, "Accept-Encoding": "gzip"},
            auto_decompress=False,
        ) as resp,
    ):
        raw = await resp.read()
        assert resp.status == 200
        assert resp.headers.get("Content-Encoding") == "gzip", resp.headers
        assert LONG.encode() in gzip.decompress(raw)
