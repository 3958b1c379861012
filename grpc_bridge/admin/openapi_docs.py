"""``GET /v1/openapi.json`` and ``/v1/openapi.yaml`` on the admin listener.

The document (grpc_bridge/openapi/) is built once per route table: discovery
swaps the table whole when a refresh changes anything, so the table's
identity is the cache key and a request never rebuilds it. ``?upstream=NAME``
narrows it to one upstream's methods (404 for a name not configured).

Its ``servers`` entry is the proxy listener as this request reaches the
admin one: the same host (when the proxy listens on every address and the
request's Host is a plain name or address; else 127.0.0.1) with the proxy's
port. The document is rendered once per table; the URL is swapped in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from grpc_bridge.bridge import Bridge
from grpc_bridge.edge.listen import loopback_host, url_host
from grpc_bridge.openapi import build_document, render
from grpc_bridge.openapi.render import Format
from grpc_bridge.pipeline.context import BRIDGE
from grpc_bridge.routing.table import RouteTable
from grpc_bridge.status import Code, status_body

__all__ = ["JSON_PATH", "OPENAPI_CACHE", "YAML_PATH", "add_openapi"]

JSON_PATH = "/v1/openapi.json"
YAML_PATH = "/v1/openapi.yaml"
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_MEDIA = {"json": "application/json", "yaml": "application/yaml"}
# Rendered once per table, upstream and format with this in place of the server
# URL, which each request swaps in (a bytes replace): a new Host costs no render.
_PLACEHOLDER = "http://server.grpc-bridge.invalid:1"
_PLACEHOLDER_BYTES = _PLACEHOLDER.encode()
# A Host that is not a plain name or address is not written into the document.
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|[0-9A-Fa-f:.]{2,45}")


@dataclass
class _Cache:
    proxy_port: Callable[[], int]
    table: RouteTable | None = None
    documents: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    rendered: dict[tuple[str | None, str], bytes] = field(default_factory=dict)

    def body(self, bridge: Bridge, upstream: str | None, fmt: Format, server: str) -> bytes:
        table = bridge.routes
        if table is not self.table:
            self.table, self.documents, self.rendered = table, {}, {}
        key = (upstream, fmt)
        out = self.rendered.get(key)
        if out is None:
            document = self.documents.get(upstream)
            if document is None:
                files = [s.schema.files for s in bridge.upstreams.values() if s.schema is not None]
                document = build_document(
                    table, bridge.json_options, upstream=upstream, files=files
                )
                self.documents[upstream] = document
            out = self.rendered[key] = render(_with_server(document, _PLACEHOLDER), fmt)
        return out.replace(_PLACEHOLDER_BYTES, server.encode(), 1)


OPENAPI_CACHE = web.AppKey("openapi_cache", _Cache)


def add_openapi(app: web.Application, proxy_port: Callable[[], int]) -> None:
    app[OPENAPI_CACHE] = _Cache(proxy_port)
    app.router.add_get(JSON_PATH, _handler("json"))
    app.router.add_get(YAML_PATH, _handler("yaml"))


def _handler(fmt: Format) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        bridge = request.app[BRIDGE]
        upstream = request.query.get("upstream") or None
        if upstream is not None and upstream not in bridge.upstreams:
            known = ", ".join(sorted(bridge.upstreams))
            return web.Response(
                body=status_body(
                    Code.NOT_FOUND, f"no upstream named {upstream!r} (configured: {known})"
                ),
                status=404,
                content_type="application/json",
            )
        cache = request.app[OPENAPI_CACHE]
        body = cache.body(bridge, upstream, fmt, _server_url(request, bridge, cache.proxy_port()))
        return web.Response(body=body, content_type=_MEDIA[fmt], charset="utf-8")

    return handle


def _server_url(request: web.Request, bridge: Bridge, port: int) -> str:
    listen = bridge.settings.listen.host
    host = loopback_host(listen)
    if listen in _WILDCARDS:
        asked = request.url.host
        host = asked if asked and _HOST.fullmatch(asked) else "127.0.0.1"
    return f"http://{url_host(host)}:{port}"


def _with_server(document: dict[str, Any], url: str) -> dict[str, Any]:
    """The document with ``servers`` placed after ``info``, as generators print it."""
    out: dict[str, Any] = {}
    for key, value in document.items():
        out[key] = value
        if key == "info":
            out["servers"] = [{"url": url, "description": "the bridge's proxy listener"}]
    return out
