"""The route table: HTTP method + path → a method plan (and REST binding), or why not.

Pure and immutable; built once per discovery snapshot and swapped whole.
Matching returns a kind (none / wrong method / full) so the HTTP layer can
tell 404 from 405 (starlette's Match.NONE/PARTIAL/FULL).

Precedence (spec §2): REST bindings first, matched on a segment trie
(:mod:`grpc_bridge.routing.trie`), then the generic route of every method,
its gRPC path. A path that matches only with other HTTP methods gets the
union of their methods as ``allowed`` (the ``Allow`` header). HEAD matches
wherever GET does (RFC 9110 §9.3.2), unless a binding takes HEAD itself, and
is listed wherever GET is.

``match`` takes the request's *raw* path (``request.rel_url.raw_path``, still
percent-encoded, query string allowed): REST variables decode ``%2F`` per
HttpRule only if they see it. The generic route matches the raw path exactly:
a gRPC path is made of identifier characters only, so an escape in it
(``/pkg.Service%2FMethod``, ``%252F``, ``%45cho``) is a path a front proxy's
ACL may read differently, and it matches nothing (404). Dot segments are not
resolved either (``/pkg.Service/../pkg.Other/M`` is 404).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from grpc_bridge.routing.bindings import Binding, RouteConflict
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.trie import ANY_METHOD, SegmentTrie, sort_methods, with_head

__all__ = [
    "UNMATCHED",
    "Lookup",
    "Match",
    "MatchKind",
    "NoMatch",
    "RouteConflict",
    "RouteTable",
    "generic_methods",
]

#: Route label for requests that matched nothing; metrics never see raw paths.
UNMATCHED = "unmatched"


class MatchKind(enum.Enum):
    NONE = "none"
    WRONG_METHOD = "wrong_method"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class Match:
    """A path that names a method: served with this HTTP method (FULL), or only with
    others (WRONG_METHOD, ``allowed`` says which). Either way the method's plan is known."""

    kind: Literal[MatchKind.FULL, MatchKind.WRONG_METHOD]
    plan: MethodPlan
    #: The route's template (the gRPC path for generic routes), for logs and metrics.
    route: str
    allowed: tuple[str, ...] = ()
    #: REST path variables by field path (``item.id``), still percent-encoded:
    #: how to decode depends on the variable (``transcode.decode_request`` does it).
    path_params: Mapping[str, str] = field(default_factory=dict)
    #: The REST binding matched; None for the generic route.
    binding: Binding | None = None


@dataclass(frozen=True, slots=True)
class NoMatch:
    """A path that names no method (404): no plan, nothing allowed."""

    kind: Literal[MatchKind.NONE] = MatchKind.NONE
    plan: None = None
    route: str = UNMATCHED
    allowed: tuple[str, ...] = ()
    path_params: Mapping[str, str] = field(default_factory=dict)
    binding: None = None


#: What the table answers; ``kind is MatchKind.NONE`` tells the two apart (and narrows the type).
Lookup = Match | NoMatch

_NO_MATCH = NoMatch()


def generic_methods(plan: MethodPlan) -> tuple[str, ...]:
    """HTTP methods of the generic route (spec §2); it serves HEAD too where GET is one."""
    info = plan.info
    if info.no_side_effects or (info.kind.server_streams and not info.kind.client_streams):
        return ("GET", "POST")
    return ("POST",)


@dataclass(frozen=True, slots=True)
class _GenericRoute:
    plan: MethodPlan
    #: In Allow-header order.
    methods: tuple[str, ...]
    full: Match
    #: ``methods`` with POST first: the commonest request finds its method at once.
    accepts: tuple[str, ...]


class RouteTable:
    def __init__(
        self,
        plans: Iterable[MethodPlan],
        bindings: Iterable[Binding] = (),
        *,
        problems: Iterable[str] = (),
        unlisted: Iterable[MethodPlan] = (),
    ) -> None:
        """Raises :class:`RouteConflict` when two bindings share a method and path shape.

        A binding from YAML ``routes:`` replaces an annotation binding of the
        same gRPC method with the same HTTP method and shape (http.proto: the
        service config overrides the proto). ``problems`` are the rules left
        out of this table (kept so that the next table reports only new ones).
        ``unlisted`` plans are routed on their generic route but listed nowhere
        (``plans``: introspection, OpenAPI): server reflection (routing/reflection.py).
        """
        self.problems = frozenset(problems)
        self._generic: dict[str, _GenericRoute] = {}
        for plan in plans:
            methods = with_head(generic_methods(plan))
            full = Match(MatchKind.FULL, plan, plan.info.path, methods)
            accepts = tuple(sorted(methods, key=lambda m: m != "POST"))
            # First upstream wins a path both serve; the app logs the shadowing.
            self._generic.setdefault(plan.info.path, _GenericRoute(plan, methods, full, accepts))
        self._listed = list(self._generic.values())
        for plan in unlisted:
            methods = with_head(generic_methods(plan))
            full = Match(MatchKind.FULL, plan, plan.info.path, methods)
            accepts = tuple(sorted(methods, key=lambda m: m != "POST"))
            self._generic.setdefault(plan.info.path, _GenericRoute(plan, methods, full, accepts))
        self._trie: SegmentTrie[Binding] = SegmentTrie()
        self._bindings: list[Binding] = []
        # Configured routes first, so that annotations meet them and yield.
        for binding in sorted(bindings, key=lambda b: not b.from_config):
            clash = self._trie.insert(binding.template, binding.http_method, binding)
            if clash is None:
                self._bindings.append(binding)
            elif not (
                clash.from_config
                and not binding.from_config
                and clash.plan.info.path == binding.plan.info.path
            ):
                raise RouteConflict(clash, binding)

    def match(self, method: str, path: str) -> Lookup:
        path = path.partition("?")[0]
        rest = self._match_rest(method, path)
        if rest.kind is MatchKind.FULL:
            return rest
        generic = self._generic.get(path)
        if generic is not None and method in generic.accepts:
            return generic.full
        if generic is None:
            return rest
        if rest.kind is MatchKind.NONE:
            return Match(MatchKind.WRONG_METHOD, generic.plan, generic.full.route, generic.methods)
        allowed = sort_methods((*rest.allowed, *generic.methods))
        return Match(MatchKind.WRONG_METHOD, rest.plan, rest.route, allowed)

    def _match_rest(self, method: str, path: str) -> Lookup:
        if not path.startswith("/") or not self._bindings:
            return _NO_MATCH
        segments = path[1:].split("/")
        if not self._trie.could_match(segments[0]):
            return _NO_MATCH
        allowed: list[str] = []
        first: Binding | None = None
        for leaf, matched in self._trie.lookup(segments):
            binding = leaf.served.get(method) or leaf.served.get(ANY_METHOD)
            if binding is not None:
                return self._full(binding, matched, leaf.allowed)
            allowed.extend(leaf.allowed)
            first = first or next(iter(leaf.methods.values()))
        if first is None:
            return _NO_MATCH
        return Match(MatchKind.WRONG_METHOD, first.plan, first.route, sort_methods(allowed))

    @staticmethod
    def _full(binding: Binding, segments: list[str], allowed: tuple[str, ...]) -> Match:
        return Match(
            MatchKind.FULL,
            binding.plan,
            binding.route,
            allowed,
            binding.template.captures(segments),
            binding,
        )

    def websocket(self, path: str) -> Lookup:
        """WebSocket upgrades are GETs allowed on every method's path, REST bindings' too.

        A REST path bound with several HTTP methods picks its GET binding, else the first.
        """
        path = path.partition("?")[0]
        if path.startswith("/") and self._bindings:
            for leaf, matched in self._trie.lookup(path[1:].split("/")):
                binding = leaf.methods.get("GET") or next(iter(leaf.methods.values()))
                return self._full(binding, matched, leaf.allowed)
        route = self._generic.get(path)
        return _NO_MATCH if route is None else route.full

    @property
    def plans(self) -> list[MethodPlan]:
        return [r.plan for r in self._listed]

    @property
    def upstreams(self) -> frozenset[str]:
        """The upstreams whose methods this table routes."""
        return frozenset(r.plan.upstream for r in self._listed)

    @property
    def bindings(self) -> tuple[Binding, ...]:
        return tuple(self._bindings)

    def bindings_for(self, grpc_path: str) -> list[Binding]:
        """The REST bindings of one method (its gRPC path), in the order they were found."""
        return [b for b in self._bindings if b.plan.info.path == grpc_path]

    def __len__(self) -> int:
        return len(self._listed)
