"""Review of the lean path's REST bindings (2d23357, 2aa7be5): the defects reproduced.

Each test sends the same bytes to a bridge with the lean path (http/fastpath.py)
and to one with ``listen.fast_path: false``, over raw sockets, against the real
REST test upstream (tests/rest_service.py). They were ``xfail(strict=True)``
until both paths answered alike: HttpBody content types with control characters
are now a 500 on both (codec/rest_response.py), upstream metadata with them is
left out of the headers (upstream/metadata.py), and the aiohttp path's
catch-all route matches paths holding a decoded newline (http/proxy.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import structlog

from tests.harness import RunningBridge, running_bridge
from tests.servers import StartServer
from tests.test_fastpath import ROUTES, comparable, connection, read_response, request

#: YAML routes binding HttpBody's own fields from the query string: EchoBody answers
#: with its request, so the client picks the response's ``content_type``.
ECHO_BODY_ROUTES = [{"method": "bridgetest.v1.RestService/EchoBody", "get": "/v1/eb"}]


@asynccontextmanager
async def both(upstream_factory: StartServer) -> AsyncIterator[tuple[RunningBridge, RunningBridge]]:
    """A lean-path bridge and an aiohttp-only one, same upstream, same routes."""
    server = await upstream_factory(services=("rest", "test"))
    routes = [*ROUTES, *ECHO_BODY_ROUTES]
    async with (
        running_bridge(server.target, routes=routes) as fast,
        running_bridge(server.target, routes=routes, listen={"fast_path": False}) as plain,
    ):
        yield fast, plain


async def answer(b: RunningBridge, data: bytes, within: float = 3.0) -> Any:
    """The first response to ``data`` (Date and X-Request-Id left out), or "eof" / "timeout"."""
    async with connection(b) as (reader, writer):
        writer.write(data)
        try:
            return comparable(await asyncio.wait_for(read_response(reader), within))
        except asyncio.IncompleteReadError:
            return "eof"
        except TimeoutError:
            return "timeout"


@pytest.mark.parametrize("control", ["%01", "%7F", "%0D%0AX-Injected:%201", "%00"])
async def test_httpbody_content_type_with_control_characters_is_answered_alike(
    upstream_factory: StartServer, control: str
) -> None:
    data = request("GET", f"/v1/eb?content_type=text/plain{control}")
    async with both(upstream_factory) as (fast, plain):
        control_answer = request("GET", "/v1/eb?content_type=text/plain")
        # Sanity: a clean content type is served alike.
        assert await answer(fast, control_answer) == await answer(plain, control_answer)
        got = await answer(fast, data)
        want = await answer(plain, data)
    assert got == want
    # Not a header that splits or corrupts the head: the upstream's fault, a 500.
    status, _, body = got
    assert status == 500
    assert orjson.loads(body)["code"] == 13
    assert b"content_type holds control characters" in body


@pytest.mark.parametrize("target", ["/v1/things/a%0Ab", "/v1/files/a%0Ab/c"])
async def test_newline_in_a_path_variable_is_answered_alike(
    upstream_factory: StartServer, target: str
) -> None:
    data = request("GET", target)
    lines = []
    answers = []
    async with both(upstream_factory) as (fast, plain):
        for b in (fast, plain):
            with structlog.testing.capture_logs() as logs:
                answers.append(await answer(b, data))
            lines.append(
                [(e["http_status"], e["route"]) for e in logs if e.get("event") == "request"]
            )
    got, want = answers
    assert got == want
    assert lines[0] == lines[1]
    # Both reach the route table: the binding serves it, "\n" and all.
    assert got[0] == 200, got
