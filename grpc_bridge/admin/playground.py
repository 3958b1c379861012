"""The admin listener's playground: a page to call methods, and the endpoint it calls through.

``GET /playground`` serves one self-contained page (``playground.html``, read
once at import: inline CSS and JS, no external assets, for clusters without
internet). The page lists methods from ``/v1/services``, and sends calls to
``POST /playground/call/{service}/{method}``, which this module forwards to the
proxy listener's generic route ``POST /{service}/{method}`` over loopback and
pipes the answer back as it arrives.

Why forward over loopback rather than anything else:

- *Same path as every client.* The call enters the proxy listener as an
  ordinary HTTP request, so the fast path or aiohttp, routing, transcoding,
  the metadata allowlist, deadlines, errors, logs and metrics are the ones a
  curl or browser client gets, with no second implementation to drift. Calling
  the proxy's handlers in-process would skip the fast path and the listener's
  middleware, or need a fake request.
- *No CORS.* The page talks only to its own origin (the admin port), so the
  proxy needs no ``cors.allowed_origins`` entry for it, and the proxy port
  need not even be reachable from the browser (``kubectl port-forward`` of the
  admin port alone is enough).
- *Where the proxy listens.* ``listen.host`` ``0.0.0.0`` / ``""`` is reached
  on ``127.0.0.1``, ``::`` on ``::1``, a specific address or name as is (a
  proxy bound to one interface is not on loopback). The proxy listener is TCP
  only (no unix sockets in ``listen``), plain HTTP (no TLS).
- *Workers.* With ``--workers`` the parent serves the playground itself
  (admin/workers.py) and forwards to the shared proxy port, where the
  kernel picks a worker as for any client: one hop, like the single process.

What is forwarded: the body, streamed (with its ``Content-Length`` when the
browser sent one, so a plain call is the fast path's as it would be from
curl), the query string, and only the request headers the proxy reads
(``Content-Type``, ``Accept``, ``Authorization``, ``Grpc-Metadata-*``,
``Grpc-Timeout``, ``Connect-Timeout-Ms``, ``metadata.forward_headers``);
``X-Forwarded-For`` gets the browser's address appended, as a proxy hop
should. Never the admin origin's cookies or ``Origin``. The answer comes back
byte for byte with the proxy's status and headers (hop-by-hop ones dropped),
written as it arrives, so a stream shows message by message; a stream the
proxy cuts short is cut short here too (the connection is aborted rather than
ended cleanly).

The endpoint invokes real methods, so it refuses cross-origin browser
requests (``Sec-Fetch-Site`` / ``Origin``, as Go's CrossOriginProtection
does): a page on another site can't make an operator's browser call it. The
admin port must still never be public.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from grpc_bridge.edge.listen import loopback_host
from grpc_bridge.log import get_logger
from grpc_bridge.settings import Settings
from grpc_bridge.status import Code, status_body

log = get_logger("grpc_bridge.playground")

PAGE_PATH = "/playground"
CALL_PREFIX = "/playground/call"

PAGE = resources.files("grpc_bridge.admin").joinpath("playground.html").read_bytes()


def _csp(page: bytes) -> str:
    """A policy that runs only the page's own inline script and style (by their hashes)."""

    def hashes(tag: bytes) -> str:
        blocks = re.findall(rb"^<%s>(.*?)</%s>" % (tag, tag), page, re.S | re.M)
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(b).digest()).decode()}'" for b in blocks
        )

    return (
        f"default-src 'none'; script-src {hashes(b'script')}; style-src {hashes(b'style')}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


_PAGE_HEADERS = {
    "Content-Security-Policy": _csp(PAGE),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# Full service names and method names as protobuf allows them; anything else could
# make the forwarded path something other than a generic route.
_SERVICE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_METHOD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Request headers the proxy listener reads (spec §6 and §7), besides forward_headers.
# Accept-Encoding: the answer is piped back as the proxy encoded it (auto_decompress=False).
# Content-Encoding: the body goes on as sent (the admin listener doesn't inflate it),
# and the proxy inflates it under its own bounds (pipeline/inflate.py).
_REQUEST_HEADERS = frozenset(
    {
        "content-type",
        "content-encoding",
        "accept",
        "accept-encoding",
        "authorization",
        "grpc-timeout",
        "connect-timeout-ms",
    }
)
# Hop-by-hop response headers, and the two aiohttp writes for every response itself.
_DROPPED_RESPONSE_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
    | {"proxy-authenticate", "server", "date"}
)
# No total deadline: streams last as long as the proxy lets them (its own deadlines
# and stream idle timeout apply); only connecting to a local listener is bounded.
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5)


@dataclass(frozen=True)
class ProxyTarget:
    """Where the proxy listener is reached from this process, and what it forwards."""

    host: str
    #: The bound port; a callable because the admin app is built before the proxy binds.
    port: Callable[[], int]
    forward_headers: frozenset[str]

    @classmethod
    def of(cls, settings: Settings, port: Callable[[], int]) -> ProxyTarget:
        return cls(
            loopback_host(settings.listen.host), port, frozenset(settings.metadata.forward_headers)
        )

    def url(self, path: str, query: str) -> URL:
        return URL.build(scheme="http", host=self.host, port=self.port(), path=path, query=query)


_TARGET = web.AppKey("playground_target", ProxyTarget)
_SESSION = web.AppKey("playground_session", aiohttp.ClientSession)


def add_playground(app: web.Application, target: ProxyTarget) -> None:
    """``GET /playground`` and ``POST /playground/call/{service}/{method}`` on ``app``."""
    app[_TARGET] = target
    app.cleanup_ctx.append(_session)
    app.router.add_get(PAGE_PATH, page)
    # Every path under the prefix: one that is not {service}/{method} is the endpoint's
    # 400, not the router's 404; "*" too, so other methods get the endpoint's 405.
    app.router.add_post(CALL_PREFIX + "/{tail:.*}", call)
    app.router.add_route("*", CALL_PREFIX + "/{tail:.*}", call)


async def _session(app: web.Application) -> AsyncIterator[None]:
    # No cookie jar: the proxy's cookies, if any, are the browser's business.
    app[_SESSION] = aiohttp.ClientSession(
        timeout=_TIMEOUT, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    )
    yield
    await app[_SESSION].close()


async def page(request: web.Request) -> web.Response:
    return web.Response(body=PAGE, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)


def _error(code: Code, message: str, status: int, **headers: str) -> web.Response:
    return web.Response(
        body=status_body(code, message),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def cross_origin(request: web.Request) -> bool:
    """A browser request made by a page of another origin (Go's CrossOriginProtection rules)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not a browser, or a same-origin GET: nothing a page can forge
    return urlsplit(origin).netloc.lower() != request.host.lower()


def forwarded_headers(request: web.Request, target: ProxyTarget) -> CIMultiDict[str]:
    """The request headers the proxy reads, the browser's Host, its address in X-Forwarded-For."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if (
            lower in _REQUEST_HEADERS
            or lower in target.forward_headers
            or lower.startswith("grpc-metadata-")
        ):
            out.add(name, value)
    if request.body_exists and request.content_length is not None:
        out["Content-Length"] = str(request.content_length)
    # The host the browser asked for, not the loopback hop: the proxy passes it on as
    # x-forwarded-host, as it would the Host of any client's request.
    out["Host"] = request.host
    if request.remote:
        previous = request.headers.getall("X-Forwarded-For", [])
        out["X-Forwarded-For"] = ", ".join([*previous, request.remote])
    return out


def _response_headers(headers: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    return CIMultiDict(
        (name, value) for name, value in headers if name.lower() not in _DROPPED_RESPONSE_HEADERS
    )


async def call(request: web.Request) -> web.StreamResponse:
    """Forward one call to the proxy listener's generic route and pipe the answer back."""
    if request.method != "POST":
        return _error(
            Code.UNIMPLEMENTED,
            f"{request.method} is not allowed on {CALL_PREFIX}/{{service}}/{{method}}; use POST",
            405,
            Allow="POST",
        )
    if cross_origin(request):
        return _error(
            Code.PERMISSION_DENIED,
            "the playground accepts calls only from its own page (cross-origin request refused)",
            403,
        )
    service, _, method = request.match_info["tail"].partition("/")
    if not _SERVICE.fullmatch(service) or not _METHOD.fullmatch(method):
        return _error(
            Code.INVALID_ARGUMENT,
            f"{request.match_info['tail']!r} is not a full service name and a method name "
            "(like pkg.v1.Service/Method)",
            400,
        )
    target = request.app[_TARGET]
    url = target.url(f"/{service}/{method}", request.query_string)
    try:
        upstream = await request.app[_SESSION].post(
            url,
            data=request.content.iter_any() if request.body_exists else None,
            headers=forwarded_headers(request, target),
            # Exactly the browser's request: no defaults of aiohttp's client added to it.
            skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type", "User-Agent"),
        )
    except (aiohttp.ClientError, OSError) as exc:
        log.warning("playground_proxy_unreachable", url=str(url), error=str(exc))
        return _error(
            Code.UNAVAILABLE, f"the proxy listener at {url.origin()} is not reachable: {exc}", 503
        )
    async with upstream:
        return await _pipe(request, upstream)


async def _pipe(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    response = web.StreamResponse(
        status=upstream.status,
        reason=upstream.reason,
        headers=_response_headers(upstream.headers.items()),
    )
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except aiohttp.ClientError as exc:
        log.warning("playground_stream_cut", error=str(exc))
        # Ending cleanly would pass a stream the proxy cut short off as complete.
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response
