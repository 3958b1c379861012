"""Browser gRPC-Web clients call through the bridge from a page on another origin (CORS):
the official grpc-web client in text mode (its only streaming mode) and connect-web's
gRPC-Web transport (fetch, binary), in headless Chromium, with nothing configured for
them but the page's origin and the metadata header the calls send."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.js_browser import JsBrowser, js_browser
from tests.helpers.js_clients import CallResult
from tests.helpers.servers import CLIENT_DEADLINE_MS, RunningServer

pytestmark = pytest.mark.browser

TEST = "bridgetest.v1.TestService"
BrowserCall = Callable[..., Awaitable[CallResult]]


@pytest.fixture
async def browser_and_bridge(
    upstream: RunningServer,
) -> AsyncIterator[tuple[JsBrowser, RunningBridge]]:
    async with (
        js_browser() as browser,
        running_bridge(
            upstream.target,
            cors={"allowed_origins": [browser.origin], "allowed_headers": ["x-test"]},
        ) as bridge,
    ):
        yield browser, bridge


def clients(browser: JsBrowser) -> dict[str, BrowserCall]:
    return {
        "grpc-web text": browser.grpc_web_text,
        "connect-web grpcweb": functools.partial(
            browser.connect_web, protocol="grpcweb", binary=True
        ),
    }


async def test_browser_clients_call_stream_and_read_errors_and_metadata(
    browser_and_bridge: tuple[JsBrowser, RunningBridge],
) -> None:
    browser, bridge = browser_and_bridge
    for name, call in clients(browser).items():
        request = {"fString": "hi", "fInt64": "5"}
        unary = await call(bridge.url, f"{TEST}/Echo", request, emit_defaults=True)
        _, echoed, _ = await bridge.post(f"/{TEST}/Echo", request)
        assert (unary.error, unary.messages) == (None, [echoed]), name

        stream = await call(
            bridge.url, f"{TEST}/ServerStream", {"count": 3, "tag": "s"}, emit_defaults=True
        )
        assert stream.error is None, name
        assert stream.messages == [{"index": i, "text": f"s-{i}"} for i in range(3)], name

        failure = {"code": 5, "message": "nope", "withDetails": True}
        failed = await call(bridge.url, f"{TEST}/Fail", failure)
        _, status, _ = await bridge.post(f"/{TEST}/Fail", failure)
        assert failed.error is not None, name
        assert (failed.error.code_number, failed.error.message) == (
            status["code"],
            status["message"],
        ), name
        assert [d.get("json") for d in failed.error.details] == [
            {k: v for k, v in d.items() if k != "@type"} if "value" not in d else None
            for d in status["details"]
        ], name

        metadata = await call(bridge.url, f"{TEST}/EchoMetadata", headers={"x-test": name})
        assert metadata.error is None, name
        assert metadata.messages[0]["received"]["x-test"] == name
        assert metadata.headers is not None and metadata.headers["x-initial"] == "yes", name
        assert metadata.trailers is not None and metadata.trailers["x-trailer"] == "done", name
    assert not [line for line in browser.console if "error" in line.lower()], browser.console


async def test_browser_clients_send_deadlines_and_cancel_streams(
    browser_and_bridge: tuple[JsBrowser, RunningBridge], upstream: RunningServer
) -> None:
    browser, bridge = browser_and_bridge
    for index, (name, call) in enumerate(clients(browser).items()):
        tag = f"deadline-{index}"
        slept = await call(
            bridge.url,
            f"{TEST}/Sleep",
            {"duration": "30s", "tag": tag},
            timeout_ms=CLIENT_DEADLINE_MS,
        )
        assert slept.error is not None and slept.error.code == "deadline_exceeded", name
        await upstream.test.wait_for("cancelled", tag, within=30)

        tag = f"cancel-{index}"
        stream = await call(
            bridge.url,
            f"{TEST}/ServerStream",
            {"count": 1000, "interval": "0.050s", "tag": tag},
            cancel_after=2,
        )
        assert stream.cancelled and stream.error is None, name
        assert [m["text"] for m in stream.messages] == [f"{tag}-0", f"{tag}-1"], name
        await upstream.test.wait_for("cancelled", tag, within=30)
