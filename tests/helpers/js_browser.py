"""The browser clients: @connectrpc/connect-web and grpc-web (text) from a page in Chromium.

tests/js/browser_entry.cjs is bundled with esbuild (from ``make tools``) and
served with a blank page on its own loopback origin, so every call is
cross-origin like a real web app's: the server under test needs CORS for
``JsBrowser.origin``. Headless Debian ``chromium`` is driven by Playwright as
in tests/test_browser.py.

    async with js_browser() as browser:
        async with running_bridge(target, cors={"allowed_origins": [browser.origin]}) as bridge:
            result = await browser.connect_web(bridge.url, "pkg.Svc/Method", {...})
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.helpers.browser_tools import CHROMIUM, CHROMIUM_ARGS
from tests.helpers.js_clients import (
    JS_DIR,
    CallResult,
    Json,
    Protocol,
    call_spec,
    descriptor_set,
    node_modules,
    result_from_json,
)

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>js clients</title>
<script src="/clients.js"></script></head><body></body></html>
"""


async def build_bundle() -> bytes:
    """tests/js/browser_entry.cjs and the npm clients as one browser script."""
    modules = node_modules()
    proc = await asyncio.create_subprocess_exec(
        str(modules / ".bin" / "esbuild"),
        str(JS_DIR / "browser_entry.cjs"),
        "--bundle",
        "--format=iife",
        "--platform=browser",
        "--target=es2022",
        "--log-level=warning",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # esbuild resolves bare imports through NODE_PATH, as node does for require.
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    script, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"esbuild failed: {stderr.decode()}")
    return script


@dataclass
class JsBrowser:
    """A page with ``window.jsClients`` loaded; each method runs one call in it."""

    origin: str
    page: Any  # playwright.async_api.Page
    console: list[str] = field(default_factory=list)
    _descriptors: dict[Path, str] = field(default_factory=dict)

    def _descriptor_b64(self, path: Path | None) -> str:
        path = path or descriptor_set()
        if path not in self._descriptors:
            self._descriptors[path] = base64.b64encode(path.read_bytes()).decode()
        return self._descriptors[path]

    async def _run(self, function: str, payload: Json, timeout: float) -> CallResult:
        try:
            async with asyncio.timeout(timeout):
                data = await self.page.evaluate(f"i => window.jsClients.{function}(i)", payload)
        except TimeoutError:
            raise AssertionError(
                f"{function} did not finish within {timeout}s; console: {self.console}"
            ) from None
        return result_from_json(data)

    async def connect_web(
        self,
        base_url: str,
        method: str,
        request: Json | None = None,
        *,
        protocol: Protocol = "connect",
        binary: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        cancel_after: int | None = None,
        use_http_get: bool = False,
        emit_defaults: bool = False,
        descriptors: Path | None = None,
        timeout: float = 60.0,
    ) -> CallResult:
        """One call with @connectrpc/connect-web (fetch); arguments as connect_node_call's."""
        payload = {
            "descriptorSet": self._descriptor_b64(descriptors),
            "baseUrl": base_url,
            "protocol": protocol,
            "binary": binary,
            "useHttpGet": use_http_get,
            "call": call_spec(
                method, request, None, headers, timeout_ms, cancel_after, emit_defaults
            ),
        }
        return await self._run("connectWeb", payload, timeout)

    async def grpc_web_text(
        self,
        base_url: str,
        method: str,
        request: Json | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        cancel_after: int | None = None,
        emit_defaults: bool = False,
        descriptors: Path | None = None,
        timeout: float = 60.0,
    ) -> CallResult:
        """One unary or server-streaming call with the official grpc-web client, text mode.

        ``timeout_ms`` goes out as grpc-web's ``deadline`` metadata (then
        ``grpc-timeout``); error details are decoded from
        ``grpc-status-details-bin``, which grpc-web itself leaves alone.
        """
        payload = {
            "descriptorSet": self._descriptor_b64(descriptors),
            "baseUrl": base_url,
            "call": call_spec(
                method, request, None, headers, timeout_ms, cancel_after, emit_defaults
            ),
        }
        return await self._run("grpcWebText", payload, timeout)


@asynccontextmanager
async def _page_server(script: bytes) -> AsyncIterator[str]:
    async def page(_: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    async def clients(_: web.Request) -> web.Response:
        return web.Response(body=script, content_type="text/javascript")

    async def no_icon(_: web.Request) -> web.Response:
        return web.Response(status=204)  # not a 404 in the console the errors quote

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/clients.js", clients)
    app.router.add_get("/favicon.ico", no_icon)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def require_browser() -> None:
    """Skip on GRPC_BRIDGE_SKIP_BROWSER=1 (as tests/test_browser.py); fail without chromium."""
    if os.environ.get("GRPC_BRIDGE_SKIP_BROWSER") == "1":
        pytest.skip("GRPC_BRIDGE_SKIP_BROWSER=1")
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} not found: `make test` installs it (apt-get install chromium); "
            "set GRPC_BRIDGE_SKIP_BROWSER=1 to skip browser tests",
            pytrace=False,
        )


@asynccontextmanager
async def js_browser() -> AsyncIterator[JsBrowser]:
    """Chromium with the client page loaded from its own origin (``.origin``)."""
    require_browser()
    from playwright.async_api import async_playwright

    script = await build_bundle()
    async with _page_server(script) as origin, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            js = JsBrowser(origin=origin, page=page)
            page.on("console", lambda message: js.console.append(message.text))
            page.on("pageerror", lambda error: js.console.append(f"pageerror: {error}"))
            await page.goto(f"{origin}/")
            await page.wait_for_function("() => window.jsClients !== undefined")
            yield js
        finally:
            await browser.close()
