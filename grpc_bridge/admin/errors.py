"""The admin listeners' refusals in the Status body, like every other error the bridge makes.

aiohttp's router answers an unknown admin path or a wrong method with a plain
text ``404: Not Found`` / ``405: Method Not Allowed``; the middleware here
turns those into the ``google.rpc.Status`` JSON the proxy port answers with
(``Allow`` kept). ``router_refusal`` gives the same answer for a method token
aiohttp's parser refuses outright (``FOO /readyz``), which no handler sees
(edge/parse_errors.py).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from grpc_bridge.edge.parse_errors import RefuseMethod
from grpc_bridge.errors import BridgeError, MethodNotAllowed, RouteNotFound
from grpc_bridge.pipeline.responses import error_response, json_response
from grpc_bridge.routing.trie import sort_methods
from grpc_bridge.status import Code, status_body


@web.middleware
async def admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        allowed = sort_methods(exc.allowed_methods)
        return error_response(_not_allowed(request.method, request.path, allowed))
    except web.HTTPNotFound:
        return error_response(RouteNotFound(f"no admin endpoint {request.path}"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = Code.RESOURCE_EXHAUSTED if exc.status == 413 else Code.INVALID_ARGUMENT
        return json_response(status_body(code, exc.reason), status=exc.status)


def _not_allowed(method: str, path: str, allowed: tuple[str, ...]) -> MethodNotAllowed:
    return MethodNotAllowed(
        f"{method} is not allowed on {path}; use {' or '.join(allowed)}", allowed=allowed
    )


def router_refusal(app: web.Application, fallback: tuple[str, ...] = ()) -> RefuseMethod:
    """For a method the parser refused: 405 with the path's methods (by ``app``'s router), or 404.

    ``fallback``: the methods of a path only a catch-all ``*`` route takes (the
    workers' parent forwards those to a worker's admin endpoints).
    """

    def refuse(method: str, target: str) -> BridgeError:
        path = target.partition("?")[0]
        allowed: set[str] = set()
        for resource in app.router.resources():
            info = resource.get_info()
            pattern = info.get("pattern")
            if info.get("path") == path or (pattern is not None and pattern.fullmatch(path)):
                allowed.update(route.method for route in resource)
        if allowed == {"*"}:
            allowed = set(fallback)
        # A "*" next to named methods answers the others with a 405 of its own.
        allowed.discard("*")
        if not allowed:
            return RouteNotFound(f"no admin endpoint {path}")
        return _not_allowed(method, path, sort_methods(allowed))

    return refuse
