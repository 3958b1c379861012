"""A method the upstream does not have is UNIMPLEMENTED on every gRPC-family protocol.

A gRPC server answers an unknown ``/pkg.Svc/Method`` with UNIMPLEMENTED, and
protocol/grpc_web.py maps the bridge's own "no route" to it for that reason.
Connect clients see the same code from a Connect server (connect-go answers
404, which Connect's HTTP-to-code table reads as ``unimplemented``) and from
Envoy's connect_grpc_bridge in front of a gRPC server (the upstream's
UNIMPLEMENTED). Connect through the bridge must not say ``not_found`` for it:
clients tell "this server has no such method" from "no such resource" by it.
"""

from __future__ import annotations

import orjson
import pytest

from tests.helpers.connect_tools import (
    JSON_STREAM,
    JSON_UNARY,
    PROTO_UNARY,
    end_of_stream,
    envelope,
    post,
)
from tests.helpers.grpc_web_tools import VARIANTS, frame, grpc_web_call
from tests.helpers.harness import running_bridge
from tests.helpers.servers import RunningServer

#: A known service's missing method, and a service the upstream does not have.
MISSING = ["bridgetest.v1.TestService/NoSuchMethod", "nope.v1.Svc/Method"]


@pytest.mark.parametrize("method", MISSING)
async def test_grpc_web_answers_unimplemented_for_a_missing_method(
    upstream: RunningServer, method: str
) -> None:
    # The control: gRPC-Web already answers as a gRPC server would.
    async with running_bridge(upstream.target) as b:
        reply = await grpc_web_call(b.session, f"{b.url}/{method}", VARIANTS["binary"], frame(b""))
        assert reply.status_of()[0] == "12"


@pytest.mark.parametrize("method", MISSING)
@pytest.mark.parametrize(
    "headers", [JSON_UNARY, PROTO_UNARY], ids=["connect-json", "connect-proto"]
)
async def test_connect_unary_answers_unimplemented_for_a_missing_method(
    upstream: RunningServer, method: str, headers: dict[str, str]
) -> None:
    body = b"{}" if headers is JSON_UNARY else b""
    async with running_bridge(upstream.target) as b:
        answer = await post(b, method, body, headers)
        assert answer.json()["code"] == "unimplemented", answer


@pytest.mark.parametrize("method", MISSING)
async def test_connect_stream_answers_unimplemented_for_a_missing_method(
    upstream: RunningServer, method: str
) -> None:
    async with running_bridge(upstream.target) as b:
        answer = await post(b, method, envelope(orjson.dumps({})), JSON_STREAM)
        assert answer.status == 200
        assert end_of_stream(answer.body)["error"]["code"] == "unimplemented", answer
