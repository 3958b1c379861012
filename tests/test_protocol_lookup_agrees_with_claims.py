"""A request's protocol looked up by its Content-Type is the one all claimants asked find.

``Protocols.of`` (protocol/select.py) finds a protocol by the Content-Type as
sent and asks only that one, or for no Content-Type and the JSON family's
only the protocols that claim by a header or the query. Here it answers as
``asked`` (every claimant in turn, JSON last) over content types that name a
protocol, the same ones spelled otherwise, types no protocol names, each with
every method and with and without Connect's version header and GET query.
"""

from __future__ import annotations

import itertools

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from grpc_bridge.protocol.base import WireProtocol
from grpc_bridge.protocol.select import Protocols, build_protocols, forward_all_policy
from grpc_bridge.settings import load_settings

CONTENT_TYPES = [
    None,
    "",
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/proto",
    "application/proto; charset=utf-8",
    "APPLICATION/PROTO",
    "application/connect+json",
    "application/connect+proto",
    "application/connect+json;charset=utf-8",
    "Application/Connect+Proto",
    " application/connect+json",
    "application/connect+xml",
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web+json",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
    "application/grpc-web+thrift",
    "APPLICATION/GRPC-WEB",
    " application/grpc-web",
    "application/grpc-webx",
    "application/grpc",
]
METHODS = ["POST", "GET", "PUT"]
QUERIES = ["", "?connect=v1&encoding=json&message=%7B%7D", "?xconnect=v1"]


def _protocols() -> Protocols:
    settings = load_settings(None, {"upstream": "127.0.0.1:50051"})
    return build_protocols(settings, forward_all_policy(settings))


def _request(method: str, query: str, content_type: str | None, versioned: bool) -> web.Request:
    headers: CIMultiDict[str] = CIMultiDict()
    if content_type is not None:
        headers["Content-Type"] = content_type
    if versioned:
        headers["Connect-Protocol-Version"] = "1"
    return make_mocked_request(method, "/bridgetest.v1.TestService/Echo" + query, headers=headers)


def _asked(protocols: Protocols, request: web.Request) -> WireProtocol:
    return protocols.asked(request.method, request.headers, request.rel_url.raw_query_string)


CASES = list(itertools.product(CONTENT_TYPES, METHODS, QUERIES, [False, True]))


@pytest.mark.parametrize(("content_type", "method", "query", "versioned"), CASES)
def test_the_lookup_finds_what_the_claimants_find(
    content_type: str | None, method: str, query: str, versioned: bool
) -> None:
    protocols = _protocols()
    looked_up = protocols.of(_request(method, query, content_type, versioned))
    asked = _asked(protocols, _request(method, query, content_type, versioned))
    assert looked_up is asked


def test_the_lookup_tells_every_protocol_apart() -> None:
    protocols = _protocols()
    found = {
        protocols.of(_request(method, query, content_type, versioned)).name
        for content_type, method, query, versioned in CASES
    }
    assert found == {"json", "grpc-web", "connect"}
    streams = {
        protocols.of(_request("POST", "", media, False))
        for media in ("application/connect+json", "application/connect+proto")
    }
    assert len(streams) == 2
