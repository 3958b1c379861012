"""The route table: HTTP method + path → a method plan, or why not.

Pure and immutable; built once per discovery snapshot and swapped whole.
Matching returns a kind (none / wrong method / full) so the HTTP layer can
tell 404 from 405 (starlette's Match.NONE/PARTIAL/FULL).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from grpc_bridge.routing.plan import MethodPlan

#: Route label for requests that matched nothing; metrics never see raw paths.
UNMATCHED = "unmatched"


class MatchKind(enum.Enum):
    NONE = "none"
    WRONG_METHOD = "wrong_method"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class Match:
    kind: MatchKind
    plan: MethodPlan | None = None
    #: The route's template (the gRPC path for generic routes), for logs and metrics.
    route: str = UNMATCHED
    allowed: tuple[str, ...] = ()
    path_params: Mapping[str, str] = field(default_factory=dict)


_NO_MATCH = Match(MatchKind.NONE)


def generic_methods(plan: MethodPlan) -> tuple[str, ...]:
    """HTTP methods the generic route accepts (spec §2)."""
    info = plan.info
    if info.no_side_effects or (info.kind.server_streams and not info.kind.client_streams):
        return ("GET", "POST")
    return ("POST",)


@dataclass(frozen=True, slots=True)
class _GenericRoute:
    plan: MethodPlan
    methods: tuple[str, ...]
    full: Match


class RouteTable:
    def __init__(self, plans: Iterable[MethodPlan]) -> None:
        self._generic: dict[str, _GenericRoute] = {}
        for plan in plans:
            methods = generic_methods(plan)
            full = Match(MatchKind.FULL, plan, plan.info.path, methods)
            # First upstream wins a path both serve; the app logs the shadowing.
            self._generic.setdefault(plan.info.path, _GenericRoute(plan, methods, full))

    def match(self, method: str, path: str) -> Match:
        route = self._generic.get(path)
        if route is None:
            return _NO_MATCH
        if method in route.methods:
            return route.full
        return Match(MatchKind.WRONG_METHOD, route.plan, path, route.methods)

    def websocket(self, path: str) -> Match:
        """WebSocket upgrades are GETs allowed on every method's path."""
        route = self._generic.get(path)
        return _NO_MATCH if route is None else route.full

    @property
    def plans(self) -> list[MethodPlan]:
        return [r.plan for r in self._generic.values()]

    def __len__(self) -> int:
        return len(self._generic)
