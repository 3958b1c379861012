"""The JS clients' JSON encodings and Connect GET work, proven against connect-es's server.

Envoy (tests/test_js_clients_against_envoy.py) cannot answer JSON with a
protobuf upstream, so the JSON variants are proven here against connect-es's
own server (tests/helpers/connect_es_server.py), the protocol's reference: Connect
JSON and binary, Connect GET, gRPC-Web JSON and binary, from Node and from a
browser.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import AsyncIterator

import pytest

from tests.helpers.connect_es_server import ConnectEsServer, running_connect_es
from tests.helpers.js_browser import js_browser
from tests.helpers.js_clients import CallResult, Protocol, buf_curl, connect_node_call
from tests.helpers.servers import CLIENT_DEADLINE_MS

TEST = "bridgetest.v1.TestService"
VARIANTS = [(p, b) for p in ("connect", "grpcweb") for b in (False, True)]
IDS = [f"{p}-{'binary' if b else 'json'}" for p, b in VARIANTS]


@pytest.fixture
async def connect_es() -> AsyncIterator[ConnectEsServer]:
    async with running_connect_es() as server:
        yield server


def assert_rich_error(result: CallResult) -> None:
    assert result.messages == []
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("not_found", "nope")
    assert [(d["type"], d.get("json")) for d in result.error.details] == [
        (
            "google.rpc.BadRequest",
            {"fieldViolations": [{"field": "name", "description": "must not be empty"}]},
        ),
        ("bridgetest.v1.CustomDetail", {"reason": "flaky", "attempt": 3}),
        ("unknown.v1.Mystery", None),
    ]


@pytest.mark.parametrize(("protocol", "binary"), VARIANTS, ids=IDS)
async def test_connect_node_in_every_encoding(
    connect_es: ConnectEsServer, protocol: Protocol, binary: bool
) -> None:
    call = functools.partial(connect_node_call, connect_es.url, protocol=protocol, binary=binary)
    unary = await call(f"{TEST}/Echo", {"fString": "hi", "fInt64": "5"})
    assert (unary.error, unary.messages) == (None, [{"fString": "hi", "fInt64": "5"}])

    stream = await call(f"{TEST}/ServerStream", {"count": 3, "tag": "s"}, emit_defaults=True)
    assert stream.error is None
    assert stream.messages == [{"index": i, "text": f"s-{i}"} for i in range(3)]

    assert_rich_error(
        await call(f"{TEST}/Fail", {"code": 5, "message": "nope", "withDetails": True})
    )

    echoed = await call(
        f"{TEST}/EchoMetadata",
        headers={"x-test": "one", "x-test-bin": base64.b64encode(b"\x00\xff").decode()},
    )
    assert echoed.error is None
    assert echoed.messages[0]["received"]["x-test"] == "one"
    assert echoed.headers is not None and echoed.headers["x-initial"] == "yes"
    assert echoed.trailers is not None and echoed.trailers["x-trailer"] == "done"

    tag = f"cancel-{protocol}-{binary}"
    cancelled = await call(
        f"{TEST}/ServerStream", {"count": 1000, "interval": "0.050s", "tag": tag}, cancel_after=2
    )
    assert cancelled.cancelled and len(cancelled.messages) == 2
    await connect_es.wait_for("cancelled", tag)

    tag = f"deadline-{protocol}-{binary}"
    slept = await call(
        f"{TEST}/Sleep", {"duration": "30s", "tag": tag}, timeout_ms=CLIENT_DEADLINE_MS
    )
    assert slept.error is not None and slept.error.code == "deadline_exceeded"
    await connect_es.wait_for("cancelled", tag)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
async def test_connect_node_uses_get_for_methods_without_side_effects(
    connect_es: ConnectEsServer, binary: bool
) -> None:
    # A Connect GET carries no body, so no Content-Type and no protocol header.
    echoed = await connect_node_call(
        connect_es.url, f"{TEST}/EchoMetadata", binary=binary, use_http_get=True
    )
    assert echoed.error is None
    received = echoed.messages[0]["received"]
    assert "content-type" not in received and "connect-protocol-version" not in received
    looked_up = await connect_node_call(
        connect_es.url, f"{TEST}/Lookup", {"fString": "q"}, binary=binary, use_http_get=True
    )
    assert looked_up.messages == [{"fString": "q"}]


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
async def test_buf_curl_against_connect_es(connect_es: ConnectEsServer, protocol: Protocol) -> None:
    stream = await buf_curl(
        connect_es.url,
        f"{TEST}/ServerStream",
        {"count": 2, "tag": "b"},
        protocol=protocol,
        reflect=False,
    )
    assert (stream.error, stream.messages) == (None, [{"text": "b-0"}, {"index": 1, "text": "b-1"}])
    failed = await buf_curl(
        connect_es.url,
        f"{TEST}/Fail",
        {"code": 5, "message": "nope", "withDetails": True},
        protocol=protocol,
        reflect=False,
    )
    assert failed.error is not None and failed.error.code == "not_found"
    if protocol == "connect":
        assert failed.raw["status"] == 404  # Connect's table, from its reference server


@pytest.mark.browser
async def test_connect_web_in_every_encoding(connect_es: ConnectEsServer) -> None:
    async with js_browser() as browser:
        for protocol, binary in VARIANTS:
            call = functools.partial(
                browser.connect_web, connect_es.url, protocol=protocol, binary=binary
            )
            name = f"{protocol} binary={binary}"
            unary = await call(f"{TEST}/Echo", {"fString": "hi"})
            assert (unary.error, unary.messages) == (None, [{"fString": "hi"}]), name
            stream = await call(f"{TEST}/ServerStream", {"count": 2, "tag": "w"})
            assert stream.messages == [{"text": "w-0"}, {"index": 1, "text": "w-1"}], name
            failed = await call(f"{TEST}/Fail", {"code": 5, "message": "nope", "withDetails": True})
            assert_rich_error(failed)
            echoed = await call(f"{TEST}/EchoMetadata", headers={"x-test": name})
            assert echoed.messages[0]["received"]["x-test"] == name
            assert echoed.headers is not None and echoed.headers["x-initial"] == "yes", name
            assert echoed.trailers is not None and echoed.trailers["x-trailer"] == "done", name
        got = await browser.connect_web(
            connect_es.url, f"{TEST}/Lookup", {"fString": "g"}, use_http_get=True
        )
        assert got.messages == [{"fString": "g"}]
