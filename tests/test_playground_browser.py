"""The playground page in a real browser: pick a method, send, see the answer, streams included.

Headless Debian ``chromium`` driven by Playwright, launched as in
tests/test_browser.py (same binary, same flags, same skip switch): without
chromium this test fails, unless GRPC_BRIDGE_SKIP_BROWSER=1.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.servers import TEST_SERVICE, RunningServer

pytestmark = pytest.mark.browser

if os.environ.get("GRPC_BRIDGE_SKIP_BROWSER") == "1":
    pytest.skip("GRPC_BRIDGE_SKIP_BROWSER=1", allow_module_level=True)

# One launch recipe for every browser test.
from tests.helpers.browser_tools import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


@asynccontextmanager
async def playground(
    bridge: RunningBridge, fragment: str = ""
) -> AsyncIterator[tuple[Any, list[str]]]:
    """The admin port's /playground open in Chromium, and the console errors it logs."""
    assert shutil.which(CHROMIUM), (
        f"{CHROMIUM} not found: `make test` installs it (apt-get install chromium); "
        "set GRPC_BRIDGE_SKIP_BROWSER=1 to skip this test"
    )
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            # A CSP violation (an inline script or style the policy does not allow) is one.
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{bridge.admin_url}/playground{fragment}")
            yield page, errors
        finally:
            await browser.close()


async def send_and_wait(page: Any) -> None:
    await page.click("#send")
    await page.wait_for_selector('#response[data-state="done"]', timeout=15_000)


async def test_pick_a_method_send_and_see_the_response(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as bridge, playground(bridge) as (page, errors):
        await page.click(f'button[data-method="{TEST_SERVICE}/Echo"]', timeout=15_000)
        assert await page.inner_text("#method-path") == f"POST /{TEST_SERVICE}/Echo"
        # The editor starts from the method's example request.
        assert "fInt64" in orjson.loads(await page.input_value("#body"))
        await page.fill("#body", '{"fString": "from the browser", "fInt64": "42"}')
        await send_and_wait(page)
        assert await page.inner_text("#http-status") == "HTTP 200 OK"
        assert await page.inner_text("#grpc-status") == "gRPC OK (0)"
        shown = orjson.loads(await page.inner_text("#messages li.message pre"))
        assert (shown["fString"], shown["fInt64"]) == ("from the browser", "42")
        assert "x-request-id" in (await page.inner_text("#response-headers")).lower()

        # Request headers become metadata through the proxy's allowlist.
        await page.click(f'button[data-method="{TEST_SERVICE}/EchoMetadata"]')
        await page.fill("#headers", "Grpc-Metadata-Tenant: browser\nX-Not-Forwarded: 1")
        await send_and_wait(page)
        received = orjson.loads(await page.inner_text("#messages li.message pre"))["received"]
        assert received["tenant"] == "browser" and "x-not-forwarded" not in received
        assert "grpc-metadata-x-initial" in (await page.inner_text("#response-headers")).lower()

        # An error status is shown readably: code name, number and message.
        await page.click(f'button[data-method="{TEST_SERVICE}/Fail"]')
        await page.fill("#headers", "")
        await page.fill("#body", '{"code": 5, "message": "no such thing", "withDetails": true}')
        await send_and_wait(page)
        assert await page.inner_text("#http-status") == "HTTP 404 Not Found"
        assert await page.inner_text("#grpc-status") == "gRPC NOT_FOUND (5)"
        error = await page.locator("#messages li.error pre").all_inner_texts()
        assert error[0] == "NOT_FOUND (5): no such thing"
        assert "google.rpc.BadRequest" in error[1]

        # A request the bridge refuses shows the bridge's own message.
        await page.fill("#body", '{"bogus": 1}')
        await send_and_wait(page)
        assert await page.inner_text("#grpc-status") == "gRPC INVALID_ARGUMENT (3)"
        assert "bogus" in await page.inner_text("#messages li.error pre")
        assert errors == [e for e in errors if "404" in e or "400" in e]  # only failed fetches


async def test_a_server_stream_shows_each_message_as_it_arrives(upstream: RunningServer) -> None:
    async with (
        running_bridge(upstream.target) as bridge,
        playground(bridge, f"#{TEST_SERVICE}/ServerStream") as (page, errors),
    ):
        # The fragment picked the method.
        await page.wait_for_selector(f'button.active[data-method="{TEST_SERVICE}/ServerStream"]')
        await page.fill("#body", '{"count": 3, "interval": "0.4s", "tag": "browser"}')
        await page.click("#send")
        # The first message is on the page while the stream is still running.
        await page.wait_for_selector("#messages li.message", timeout=15_000)
        assert await page.get_attribute("#response", "data-state") == "running"
        assert "browser" not in upstream.test.completed
        await page.wait_for_selector('#response[data-state="done"]', timeout=15_000)
        texts = [
            orjson.loads(t)["text"]
            for t in await page.locator("#messages li.message pre").all_inner_texts()
        ]
        assert texts == ["browser-0", "browser-1", "browser-2"]
        assert await page.inner_text("#grpc-status") == "gRPC OK (0)"

        # A stream failing after its first messages ends with its error shown.
        await page.fill("#body", '{"count": 3, "tag": "f", "failCode": 9, "failAfter": 2}')
        await send_and_wait(page)
        assert await page.locator("#messages li.message").count() == 2
        assert await page.inner_text("#messages li.error pre") == (
            "FAILED_PRECONDITION (9): failing after 2"
        )
        assert await page.inner_text("#grpc-status") == "gRPC FAILED_PRECONDITION (9)"
        assert errors == []


async def test_a_changed_fragment_opens_its_method_without_a_reload(
    upstream: RunningServer,
) -> None:
    async with running_bridge(upstream.target) as bridge, playground(bridge) as (page, errors):
        await page.wait_for_selector(f'button[data-method="{TEST_SERVICE}/Echo"]', timeout=15_000)
        # A marker that a reload would wipe out.
        await page.evaluate("window.notReloaded = true")
        for method in ("ServerStream", "Echo"):
            await page.evaluate(f"location.hash = '#{TEST_SERVICE}/{method}'")
            await page.wait_for_selector(f'button.active[data-method="{TEST_SERVICE}/{method}"]')
            assert await page.inner_text("#method-name") == f"{TEST_SERVICE}/{method}"
        # A link on the page (or pasted address) to a method works the same way.
        await page.evaluate(
            f"""() => {{
                const a = document.createElement("a");
                a.id = "deep-link";
                a.textContent = "EchoMetadata";
                a.href = "#{TEST_SERVICE}/EchoMetadata";
                document.body.prepend(a);
            }}"""
        )
        await page.click("#deep-link")
        await page.wait_for_selector(f'button.active[data-method="{TEST_SERVICE}/EchoMetadata"]')
        # Unknown and malformed fragments leave the open method as it is.
        for fragment in ("#no.such/Method", "#%E0%A4%A"):
            await page.evaluate(f"location.hash = {fragment!r}")
            await page.wait_for_function(f"location.hash === {fragment!r}")
            assert await page.inner_text("#method-name") == f"{TEST_SERVICE}/EchoMetadata"
        assert await page.evaluate("window.notReloaded") is True
        assert errors == []


async def test_the_openapi_document_is_linked_and_each_form_shows_its_request_schema(
    upstream_factory: Any,
) -> None:
    server = await upstream_factory(services=("rest",))
    async with running_bridge(server.target) as bridge, playground(bridge) as (page, errors):
        assert await page.get_attribute("#openapi-json", "href") == "v1/openapi.json"
        assert await page.get_attribute("#openapi-yaml", "href") == "v1/openapi.yaml"
        await page.click('button[data-method="bridgetest.v1.RestService/Update"]', timeout=15_000)
        await page.wait_for_function(
            "document.getElementById('request-schema').textContent.includes('UpdateThingRequest')"
        )
        schema = orjson.loads(await page.inner_text("#request-schema"))
        # The request message and the components it reaches, as the document has them.
        assert set(schema) >= {"bridgetest.v1.UpdateThingRequest", "bridgetest.v1.Thing"}
        assert "updateMask" in schema["bridgetest.v1.UpdateThingRequest"]["properties"]
        routes = await page.inner_text("#method-routes")
        assert "PATCH /v1/things/{id}" in routes
        assert "POST /bridgetest.v1.RestService/Update" in routes
        assert errors == []


async def _run_snippet(command: str) -> tuple[int, bytes]:
    """Run a copied curl line as a shell would split it; its exit status and output."""
    args = shlex.split(command)
    assert args[0] == "curl"
    process = await asyncio.create_subprocess_exec(
        *args, "-w", "\n%{http_code}", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 15)
    body, _, status = out.rpartition(b"\n")
    return int(status), body


@pytest.mark.parametrize("kind", ["curl", "curl-connect"])
async def test_a_copied_curl_snippet_makes_the_call_the_form_would(
    upstream: RunningServer, kind: str
) -> None:
    async with running_bridge(upstream.target) as bridge, playground(bridge) as (page, errors):
        await page.click(f'button[data-method="{TEST_SERVICE}/EchoMetadata"]', timeout=15_000)
        await page.fill("#headers", "Grpc-Metadata-Tenant: it's me")
        await page.click("#snippets summary")
        await page.select_option("#snippet-kind", kind)
        snippet = await page.inner_text("#snippet")
        assert f":{bridge.server.proxy_port}/{TEST_SERVICE}/EchoMetadata" in snippet
        status, body = await _run_snippet(snippet)
        assert status == 200, body
        # The quoting survives the apostrophe; Connect sends the metadata as a bare header.
        assert orjson.loads(body)["received"]["tenant"] == "it's me"
        assert errors == []


async def test_the_connect_web_snippet_names_the_generated_service_and_the_call(
    upstream: RunningServer,
) -> None:
    async with running_bridge(upstream.target) as bridge, playground(bridge) as (page, errors):
        await page.click(f'button[data-method="{TEST_SERVICE}/ServerStream"]', timeout=15_000)
        options = await page.locator("#snippet-kind option").evaluate_all(
            "(nodes) => nodes.map((n) => n.value)"
        )
        if "connect-web" not in options:
            pytest.fail(f"no connect-web snippet offered: {options}")
        await page.click("#snippets summary")
        await page.select_option("#snippet-kind", "connect-web")
        snippet = await page.inner_text("#snippet")
        assert 'import { TestService } from "./gen/' in snippet
        assert "for await (const message of client.serverStream(" in snippet
        assert f'baseUrl: "http://127.0.0.1:{bridge.server.proxy_port}"' in snippet
        # A bidi method has no Connect snippet over HTTP/1.1.
        await page.click(f'button[data-method="{TEST_SERVICE}/Bidi"]')
        options = await page.locator("#snippet-kind option").evaluate_all(
            "(nodes) => nodes.map((n) => n.value)"
        )
        assert options == ["curl"]
        assert errors == []
