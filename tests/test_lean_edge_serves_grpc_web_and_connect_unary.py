"""The lean HTTP/1.1 edge serves the unary calls of gRPC-Web and Connect with its protocols' steps.

The same bytes as the aiohttp edge (which a bridge with ``listen.fast_path``
off answers with), with no hand-over, for the calls and their upstream
errors; requests of those protocols it does not serve (Connect's GET and
streams, a frame that is refused before the call, binary gRPC, another JSON
charset) go to aiohttp at their head.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.harness import RunningBridge
from tests.helpers.lean_path import comparable, connection, read_response, rest_bridges
from tests.helpers.raw_http import ECHO, FAIL, request
from tests.helpers.servers import StartServer


async def exchange(b: RunningBridge, data: bytes) -> Any:
    async with connection(b) as (reader, writer):
        writer.write(data)
        return await read_response(reader)


#: Requests of other protocols (and forms) that the lean edge leaves to aiohttp.
OTHER_PROTOCOLS = {
    "Connect unary, JSON, on a REST route": request(
        "GET", "/v1/things/1", None, "Connect-Protocol-Version: 1"
    ),
    "Connect GET": request(
        "GET", "/bridgetest.v1.TestService/Lookup?connect=v1&encoding=json&message=%7B%7D"
    ),
    "Connect GET, connect last": request(
        "GET", "/bridgetest.v1.TestService/Lookup?encoding=json&message=%7B%7D&connect=v1"
    ),
    "Connect streaming": request(
        "POST", ECHO, b"", "Content-Type: application/connect+json", json=False
    ),
    "gRPC": request("POST", ECHO, b"\0\0\0\0\0", "Content-Type: application/grpc", json=False),
    "JSON with a charset": request(
        "POST", ECHO, b"{}", "Content-Type: application/json; charset=utf-8", json=False
    ),
}


#: Unary calls of the protocols whose steps are on plain values: served lean, the same bytes.
LEAN_PROTOCOLS = {
    "Connect unary, JSON": request(
        "POST", ECHO, b'{"fString": "c"}', "Connect-Protocol-Version: 1"
    ),
    "Connect unary, proto": request(
        "POST", ECHO, b"", "Content-Type: application/proto", json=False
    ),
    "Connect unary, an upstream error": request(
        "POST", FAIL, b'{"code": 5, "message": "gone"}', "Connect-Protocol-Version: 1"
    ),
    "gRPC-Web": request(
        "POST", ECHO, b"\0\0\0\0\0", "Content-Type: application/grpc-web+proto", json=False
    ),
    "gRPC-Web, JSON": request(
        "POST", ECHO, b"\0\0\0\0\2{}", "Content-Type: application/grpc-web+json", json=False
    ),
    "gRPC-Web text": request(
        "POST", ECHO, b"AAAAAAA=", "Content-Type: application/grpc-web-text", json=False
    ),
    "gRPC-Web, an upstream error": request(
        "POST",
        FAIL,
        b"\0\0\0\0\x07\x08\x05\x12\x03abc",
        "Content-Type: application/grpc-web",
        json=False,
    ),
}


@pytest.mark.parametrize("name", list(LEAN_PROTOCOLS))
async def test_unary_calls_of_plain_protocols_are_served_lean(
    upstream_factory: StartServer, hand_overs: list[bytes], name: str
) -> None:
    data = LEAN_PROTOCOLS[name]
    async with rest_bridges(upstream_factory) as (fast, plain):
        got = await exchange(fast, data)
        want = await exchange(plain, data)
    assert hand_overs == []
    assert comparable(got) == comparable(want)


@pytest.mark.parametrize("name", list(OTHER_PROTOCOLS))
async def test_other_protocols_are_handed_to_aiohttp(
    upstream_factory: StartServer, hand_overs: list[bytes], name: str
) -> None:
    data = OTHER_PROTOCOLS[name]
    async with rest_bridges(upstream_factory) as (fast, plain):
        got = await exchange(fast, data)
        want = await exchange(plain, data)
    assert hand_overs == [b""]  # at the head, before anything was done
    assert comparable(got) == comparable(want)


async def test_a_call_refused_before_the_upstream_is_answered_by_aiohttp(
    upstream_factory: StartServer, hand_overs: list[bytes]
) -> None:
    """A frame cut short: the lean edge reads the head, then hands the whole request over."""
    data = request(
        "POST", ECHO, b"\0\0\0\0\2{", "Content-Type: application/grpc-web+proto", json=False
    )
    async with rest_bridges(upstream_factory) as (fast, plain):
        got = await exchange(fast, data)
        want = await exchange(plain, data)
    assert hand_overs == [data]
    assert comparable(got) == comparable(want)
