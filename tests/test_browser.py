"""A real browser against a real bridge: fetch streaming, EventSource and WebSocket, cross-origin.

Headless Debian ``chromium`` driven by Playwright (never ``playwright
install``: the system browser is used). ``make test`` installs chromium when
it is missing; without it this test fails, unless GRPC_BRIDGE_SKIP_BROWSER=1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.helpers.browser_tools import CHROMIUM, CHROMIUM_ARGS
from tests.helpers.harness import running_bridge
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.browser

PAGE = Path(__file__).parent / "browser" / "page.html"

if os.environ.get("GRPC_BRIDGE_SKIP_BROWSER") == "1":
    pytest.skip("GRPC_BRIDGE_SKIP_BROWSER=1", allow_module_level=True)


async def serve_page() -> AsyncIterator[str]:
    """The page on its own origin (another port), so the bridge sees cross-origin calls."""

    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def page_origin() -> AsyncIterator[str]:
    async for origin in serve_page():
        yield origin


async def test_browser_streams_over_fetch_eventsource_and_websocket(
    upstream: RunningServer, page_origin: str
) -> None:
    assert shutil.which(CHROMIUM), (
        f"{CHROMIUM} not found: `make test` installs it (apt-get install chromium); "
        "set GRPC_BRIDGE_SKIP_BROWSER=1 to skip this test"
    )
    from playwright.async_api import async_playwright

    async with (
        running_bridge(upstream.target, cors={"allowed_origins": [page_origin]}) as bridge,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{page_origin}/?bridge={bridge.url}")
            for section in ("fetch", "sse", "ws"):
                await page.wait_for_selector(f"#{section}[data-done]", timeout=15_000)
            shown = {
                section: (
                    await page.locator(f"#{section} li").all_inner_texts(),
                    await page.locator(f"#{section} .status").inner_text(),
                )
                for section in ("fetch", "sse", "ws")
            }
        finally:
            await browser.close()

    assert shown["fetch"] == (
        ["result fetch-0", "result fetch-1", "result fetch-2", "error 9 failing after 3"],
        "http 200 request-id visible",  # exposed through Access-Control-Expose-Headers
    )
    assert shown["sse"] == (
        ["message sse-0", "message sse-1", "message sse-2"],
        "end code 0",
    )
    assert shown["ws"] == (
        ["result echo: one", "result echo: two", "result echo: three"],
        "closed 1000",
    )
    # The EventSource closed on "end": the call ran once, it did not reconnect.
    assert upstream.test.completed.count("sse") == 1
