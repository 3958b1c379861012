"""CORS for browsers (``cors.*`` settings): preflights, and the headers every response carries.

- Origins match exactly (``scheme://host[:port]``, as browsers send them), or
  ``"*"`` allows every origin.
- A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
  on a route answers 204 with the route's methods, the requested headers the
  bridge accepts, and ``Access-Control-Max-Age``. From an origin that is not
  allowed it answers 403 with a Status body; a requested header the bridge
  would not read is left out of ``Access-Control-Allow-Headers``, so the
  browser's console names it.
- Every response to an allowed origin — errors, streams and WebSocket
  handshakes included, since a browser hides the body of an answer without
  them — carries ``Access-Control-Allow-Origin`` (the origin itself; ``*``
  when ``"*"`` is allowed without credentials), ``Vary: Origin``,
  ``Access-Control-Allow-Credentials`` when configured, and
  ``Access-Control-Expose-Headers`` listing, by name, the response's own
  headers that its protocol's clients read (``Grpc-Metadata-*``,
  ``Grpc-Trailer-*`` and ``X-Request-Id`` for JSON; see protocol/*.py): a
  ``*`` there would not cover them on credentialed requests. The headers a
  preflight allows are what the protocols read, ``metadata.forward_headers``
  and ``cors.allowed_headers``.
- Other requests from an origin that is not allowed are served without CORS
  headers, as a server without CORS would: the browser withholds the answer.
  WebSocket upgrades are the exception (browsers don't apply CORS to them),
  see ``websocket.check_origin``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from aiohttp import web
from multidict import CIMultiDict

from grpc_bridge.errors import OriginNotAllowed
from grpc_bridge.settings import Cors

ALLOW_ORIGIN = "Access-Control-Allow-Origin"
_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def is_preflight(request: web.Request) -> bool:
    headers = request.headers
    return (
        request.method == "OPTIONS"
        and "Origin" in headers
        and "Access-Control-Request-Method" in headers
    )


def _add_vary(headers: CIMultiDict[str], names: str) -> None:
    current = headers.get("Vary")
    headers["Vary"] = f"{current}, {names}" if current else names


class CorsPolicy:
    def __init__(
        self,
        cors: Cors,
        forward_headers: Iterable[str],
        protocol_headers: Iterable[str],
    ) -> None:
        self._origins = frozenset(cors.allowed_origins)
        self._credentials = cors.allow_credentials
        # With credentials the spec forbids "*": the origin is echoed instead.
        self._wildcard = "*" in self._origins and not self._credentials
        # What the protocols' clients send (protocol/*.py), forwarded metadata, and more.
        self._headers = (
            frozenset(protocol_headers) | frozenset(forward_headers) | set(cors.allowed_headers)
        )
        self._max_age = str(cors.max_age_s)

    @property
    def enabled(self) -> bool:
        """Some origin is allowed: responses get CORS headers (or Vary: Origin)."""
        return bool(self._origins)

    def allows(self, origin: str) -> bool:
        return "*" in self._origins or origin in self._origins

    def _header_allowed(self, name: str) -> bool:
        return name in self._headers or name.startswith("grpc-metadata-")

    def _allow(self, headers: CIMultiDict[str], origin: str) -> None:
        headers[ALLOW_ORIGIN] = "*" if self._wildcard else origin
        if self._credentials:
            headers["Access-Control-Allow-Credentials"] = "true"

    def preflight(self, request: web.Request, methods: Sequence[str]) -> web.Response:
        origin = request.headers["Origin"]
        if not self.allows(origin):
            raise OriginNotAllowed(
                f"origin {origin!r} is not allowed: add it to cors.allowed_origins"
                if self._origins
                else "CORS is off: cors.allowed_origins is empty"
            )
        requested = request.headers.get("Access-Control-Request-Headers", "")
        names = [n.strip().lower() for n in requested.split(",") if n.strip()]
        response = web.Response(status=204)
        self._allow(response.headers, origin)
        response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        allowed = [n for n in names if self._header_allowed(n)]
        if allowed:
            response.headers["Access-Control-Allow-Headers"] = ", ".join(allowed)
        response.headers["Access-Control-Max-Age"] = self._max_age
        _add_vary(
            response.headers,
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        )
        return response

    def decorate(
        self, headers: CIMultiDict[str], origin: str | None, exposed: Callable[[str], bool]
    ) -> None:
        """CORS headers for any answer about to be sent, added to its ``headers``.

        Both HTTP/1.1 edges call it just before writing the head: aiohttp's
        response-prepare callback (edge/steps.py) and the lean path (edge/fastpath.py).
        ``origin`` is the request's ``Origin`` header; ``exposed`` is its protocol's
        (protocol/*.py): whether its clients read a (lower-case) response header.
        """
        if not self._origins or ALLOW_ORIGIN in headers:
            return
        if not self._wildcard:
            # The answer depends on Origin, allowed or not: caches must keep them apart.
            _add_vary(headers, "Origin")
        if origin is None or not self.allows(origin):
            return
        self._allow(headers, origin)
        names = dict.fromkeys(name for name in headers if exposed(name.lower()))
        if names:
            headers["Access-Control-Expose-Headers"] = ", ".join(names)
