"""Upstream metadata that is not HTTP never reaches a response head, on any path or framing.

HTTP/2 lets an upstream send field names HTTP/1.1 has no room for (``x/evil``,
``x,evil``) and values with control characters; a non-conforming one may even
send CR/LF. Each such entry is left out (one warning log line per response),
the rest of the metadata goes through, and the response is whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers.h2peer import HostilePeer, Pairs, descriptor_set
from tests.helpers.process import BridgeProcess
from tests.helpers.raw_http import PATHS, Response, bridge_on, request, response_to
from tests.helpers.streamtools import ECHO, SERVER_STREAM

#: Valid HTTP/2 (RFC 9113 §8.2.1), not valid HTTP/1.1 (RFC 9110 §5.6.2, §5.5).
NOT_HTTP_INITIAL: Pairs = (
    (b"x-good", b"ok"),
    (b"x/evil", b"1"),
    (b"x,evil", b"2"),
    (b"x-ctl", b"a\x01b"),
    (b"x-del", b"a\x7fb"),
)
NOT_HTTP_TRAILING: Pairs = ((b"x-trail", b"t"), (b"x{evil}", b"3"), (b"x-bell", b"\x07"))
#: Not even valid HTTP/2: a name that would inject a header, a name with a space.
INJECTING: Pairs = (
    (b"x-good", b"ok"),
    (b"x-evil\r\nset-cookie: pwned=1", b"v"),
    (b"x evil", b"v"),
    (b"x-crlf", b"a\r\nset-cookie: pwned=2"),
)

STREAM_BODY = b'{"count": 1, "tag": "t"}'
REQUESTS = {
    "unary": request("POST", ECHO, b"{}"),
    "ndjson": request("POST", SERVER_STREAM, STREAM_BODY),
    "sse": request("POST", SERVER_STREAM, STREAM_BODY, "Accept: text/event-stream"),
}


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
    return {"upstreams": [upstream]}


def exposed(response: Response) -> dict[str, list[str]]:
    return {
        name: values
        for name, values in response[1].items()
        if name.startswith(("grpc-metadata-", "grpc-trailer-"))
    }


def dropped_warnings(bridge: BridgeProcess) -> list[dict[str, Any]]:
    return [e for e in bridge.events if e.get("event") == "upstream_metadata_dropped"]


async def answer(bridge: BridgeProcess, kind: str) -> Response:
    before = sum(1 for e in bridge.events if e.get("event") == "request")
    response = await response_to(bridge, REQUESTS[kind])
    await bridge.wait_until(
        lambda events: sum(1 for e in events if e.get("event") == "request") > before
    )
    return response


@pytest.mark.parametrize("path", PATHS)
async def test_names_and_values_that_are_not_http_are_left_out(
    peer: HostilePeer, tmp_path: Path, path: str
) -> None:
    peer.initial, peer.trailing = NOT_HTTP_INITIAL, NOT_HTTP_TRAILING
    async with bridge_on(None, path, config=config(peer, tmp_path)) as bridge:
        for count, kind in enumerate(REQUESTS, start=1):
            response = await answer(bridge, kind)
            status, _, body = response
            assert status == 200, (kind, body)
            if kind == "unary":
                # Trailers of a unary call are headers too.
                assert exposed(response) == {
                    "grpc-metadata-x-good": ["ok"],
                    "grpc-trailer-x-trail": ["t"],
                }
            else:
                # A stream's headers leave before its trailers arrive.
                assert exposed(response) == {"grpc-metadata-x-good": ["ok"]}
                assert b"error" not in body
            # One warning per response, naming the keys left out.
            warnings = dropped_warnings(bridge)
            assert len(warnings) == count, kind
            assert set(warnings[-1]["keys"]) <= {
                "x/evil",
                "x,evil",
                "x-ctl",
                "x-del",
                "x{evil}",
                "x-bell",
            }


@pytest.mark.parametrize("path", PATHS)
async def test_error_answers_leave_them_out_too(
    peer: HostilePeer, tmp_path: Path, path: str
) -> None:
    peer.initial, peer.status = NOT_HTTP_INITIAL, 5
    async with bridge_on(None, path, config=config(peer, tmp_path)) as bridge:
        for kind in REQUESTS:
            response = await answer(bridge, kind)
            status, _, body = response
            if kind == "sse":
                # SSE answers errors in-band, after a 200 that carries no trailers.
                assert status == 200 and b'"code":5' in body, body
                assert exposed(response) == {}
            else:
                assert status == 404, (kind, body)
                assert orjson.loads(body)["code"] == 5
                # Trailers-Only: every entry is a trailer.
                assert exposed(response) == {"grpc-trailer-x-good": ["ok"]}
        assert len(dropped_warnings(bridge)) == len(REQUESTS) - 1


@pytest.mark.parametrize("path", PATHS)
async def test_a_name_that_would_inject_a_header_never_does(
    peer: HostilePeer, tmp_path: Path, path: str
) -> None:
    peer.initial = peer.trailing = INJECTING
    async with bridge_on(None, path, config=config(peer, tmp_path)) as bridge:
        for kind in REQUESTS:
            status, headers, body = await answer(bridge, kind)
            # A whole response: a status line, headers, a JSON body.
            assert "set-cookie" not in headers
            assert all(" " not in name and "\n" not in name for name in headers), headers
            if kind == "unary":
                orjson.loads(body)
            else:
                orjson.loads(body.splitlines()[-1].removeprefix(b"data: ") or b"{}")
            # Either the bridge refuses the malformed answer outright or it
            # leaves the entries out; never a half-written response.
            if status == 200:
                assert exposed((status, headers, body))["grpc-metadata-x-good"] == ["ok"]
            else:
                assert status >= 500
        assert len(dropped_warnings(bridge)) <= len(REQUESTS)
