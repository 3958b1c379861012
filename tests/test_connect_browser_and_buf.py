"""connect-web in headless Chromium and ``buf curl --protocol connect`` call through the bridge.

The page is on its own origin (tests/helpers/js_browser.py), so every call is
cross-origin: the bridge's CORS preflight must allow Connect's headers and its
answers expose the metadata headers, or the browser hides them. buf curl is
connect-go inside, over HTTP/1.1 with the schema from a descriptor set (its
``--reflect`` needs h2c, which the listener does not speak).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers.connect_tools import TEST, connect_bridge
from tests.helpers.harness import RunningBridge
from tests.helpers.js_browser import JsBrowser, js_browser
from tests.helpers.js_clients import buf_curl
from tests.helpers.servers import CLIENT_DEADLINE_MS, CLIENT_DEADLINE_S, RunningServer

RICH_DETAILS = [
    (
        "google.rpc.BadRequest",
        {"fieldViolations": [{"field": "name", "description": "must not be empty"}]},
    ),
    ("bridgetest.v1.CustomDetail", {"reason": "flaky", "attempt": 3}),
    ("unknown.v1.Mystery", None),
]


@pytest.fixture
async def browser_and_bridge(
    upstream: RunningServer,
) -> AsyncIterator[tuple[JsBrowser, RunningBridge]]:
    async with (
        js_browser() as browser,
        connect_bridge(
            upstream.target,
            cors={"allowed_origins": [browser.origin], "allowed_headers": ["x-test"]},
        ) as bridge,
    ):
        yield browser, bridge


@pytest.mark.browser
@pytest.mark.parametrize("binary", [False, True], ids=["json", "proto"])
async def test_connect_web_calls_streams_and_reads_errors_and_metadata(
    browser_and_bridge: tuple[JsBrowser, RunningBridge], binary: bool
) -> None:
    browser, bridge = browser_and_bridge
    call = browser.connect_web
    unary = await call(bridge.url, f"{TEST}/Echo", {"fString": "hi", "fInt64": "5"}, binary=binary)
    assert (unary.error, unary.messages) == (None, [{"fString": "hi", "fInt64": "5"}])

    got = await call(
        bridge.url, f"{TEST}/Lookup", {"fString": "g"}, binary=binary, use_http_get=True
    )
    assert (got.error, got.messages) == (None, [{"fString": "g"}])

    stream = await call(
        bridge.url,
        f"{TEST}/ServerStream",
        {"count": 3, "tag": "s"},
        binary=binary,
        emit_defaults=True,
    )
    assert stream.error is None
    assert stream.messages == [{"index": i, "text": f"s-{i}"} for i in range(3)]

    failed = await call(
        bridge.url,
        f"{TEST}/Fail",
        {"code": 5, "message": "nope", "withDetails": True},
        binary=binary,
    )
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == ("not_found", "nope")
    assert [(d["type"], d.get("json")) for d in failed.error.details] == RICH_DETAILS

    echoed = await call(
        bridge.url, f"{TEST}/EchoMetadata", headers={"x-test": "web"}, binary=binary
    )
    assert echoed.error is None
    assert echoed.messages[0]["received"]["x-test"] == "web"
    assert echoed.headers is not None and echoed.headers["x-initial"] == "yes"
    assert echoed.trailers is not None and echoed.trailers["x-trailer"] == "done"
    assert not [line for line in browser.console if "error" in line.lower()], browser.console


@pytest.mark.browser
async def test_connect_web_sends_deadlines_and_cancels_streams(
    browser_and_bridge: tuple[JsBrowser, RunningBridge], upstream: RunningServer
) -> None:
    browser, bridge = browser_and_bridge
    slept = await browser.connect_web(
        bridge.url,
        f"{TEST}/Sleep",
        {"duration": "30s", "tag": "web-deadline"},
        timeout_ms=CLIENT_DEADLINE_MS,
    )
    assert slept.error is not None and slept.error.code == "deadline_exceeded"
    await upstream.test.wait_for("cancelled", "web-deadline", within=30)

    stream = await browser.connect_web(
        bridge.url,
        f"{TEST}/ServerStream",
        {"count": 1000, "interval": "0.050s", "tag": "web-cancel"},
        cancel_after=2,
    )
    assert stream.cancelled and stream.error is None
    assert [m["text"] for m in stream.messages] == ["web-cancel-0", "web-cancel-1"]
    await upstream.test.wait_for("cancelled", "web-cancel", within=30)
    assert "web-cancel" not in upstream.test.completed


async def test_buf_curl_speaks_connect_to_the_bridge(upstream: RunningServer) -> None:
    async with connect_bridge(upstream.target) as bridge:
        unary = await buf_curl(
            bridge.url, f"{TEST}/EchoMetadata", {}, reflect=False, headers={"x-test": "buf"}
        )
        assert unary.error is None
        assert unary.messages[0]["received"]["x-test"] == "buf"
        assert unary.trailers is not None and unary.trailers["x-trailer"] == "done"

        stream = await buf_curl(
            bridge.url, f"{TEST}/ServerStream", {"count": 2, "tag": "b"}, reflect=False
        )
        assert (stream.error, stream.messages) == (
            None,
            [{"text": "b-0"}, {"index": 1, "text": "b-1"}],
        )

        failed = await buf_curl(
            bridge.url,
            f"{TEST}/Fail",
            {"code": 9, "message": "nope", "withDetails": True},
            reflect=False,
        )
        assert failed.error is not None
        assert (failed.error.code, failed.error.message) == ("failed_precondition", "nope")
        assert failed.raw["status"] == 400  # Connect's current table (Envoy 1.40 says 412)

        late = await buf_curl(
            bridge.url,
            f"{TEST}/Sleep",
            {"duration": "30s", "tag": "buf-late"},
            reflect=False,
            timeout_s=CLIENT_DEADLINE_S,
        )
        assert late.error is not None and late.error.code == "deadline_exceeded"
        await upstream.test.wait_for("cancelled", "buf-late", within=30)
