"""Building a route table from a discovery snapshot, and what to do when that fails.

Two callers, two policies:

- :func:`check_static_routes` (``check-config`` and ``serve`` start-up): YAML
  routes and descriptor-set upstreams are known before anything runs, so every
  problem is a configuration error (exit 2): a malformed template, a route
  whose method no descriptor-set upstream serves, a rule that doesn't fit its
  messages, two bindings on one method and path.
- :func:`assemble_routes` (every discovery and refresh): reflection upstreams
  are only known once discovered, so

  * an upstream whose bindings conflict the first time it is routed is left
    out of the table and reported not ready (the message names both
    bindings); discovery keeps refreshing it, and a fixed upstream gets in;
  * a conflict among upstreams already routed (a refresh changed an
    annotation) keeps the previous table whole, and is logged;
  * annotations that can't be used are skipped, YAML routes whose method no
    upstream serves yet are reported once every upstream is discovered; each
    problem is logged once, when it first appears.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.discovery.registry import Schema
from grpc_bridge.routing.bindings import (
    RouteConflict,
    collect_bindings,
    parse_route_templates,
)
from grpc_bridge.routing.plan import MethodPlan, UpstreamLimits, plans_for
from grpc_bridge.routing.table import RouteTable
from grpc_bridge.settings import Route, Settings

__all__ = [
    "CONFLICT_PREFIX",
    "Assembly",
    "assemble_routes",
    "check_static_routes",
    "unresolved_problem",
]

#: Starts the readiness reason of an upstream left out for a conflict.
CONFLICT_PREFIX = "REST binding conflict: "


@dataclass
class Assembly:
    #: The new table; None to keep the previous one.
    table: RouteTable | None
    #: Upstreams left out for a conflict -> the conflict, for readiness.
    excluded: dict[str, str] = field(default_factory=dict)
    #: Every conflict met, in order.
    conflicts: list[str] = field(default_factory=list)
    #: Problems not reported by the previous table: (kind, line); kind is
    #: ``binding_skipped``, ``route_invalid`` or ``route_unresolved``.
    new_problems: list[tuple[str, str]] = field(default_factory=list)


def unresolved_problem(index: int, route: Route) -> str:
    where = f" on upstream {route.upstream!r}" if route.upstream else ""
    return f"routes[{index}].method: no upstream serves {route.method!r}{where}"


def assemble_routes(
    plans: Sequence[MethodPlan],
    routes: Sequence[Route],
    options: JsonOptions,
    previous: RouteTable,
    *,
    discovered: Callable[[str | None], bool],
    unlisted: Sequence[MethodPlan] = (),
) -> Assembly:
    """The table for ``plans`` (already de-duplicated across upstreams).

    ``discovered(name)`` says whether upstream ``name`` (every upstream, for
    None) has descriptors, so that a route is called unresolved only when it
    can no longer be a method not discovered yet. ``unlisted``: routed, listed
    nowhere (:class:`RouteTable`).
    """
    out = Assembly(table=None)
    candidates = list(plans)
    while True:
        collected = collect_bindings(candidates, routes, options)
        problems = [("binding_skipped", line) for line in collected.skipped]
        problems += [("route_invalid", line) for line in collected.route_errors]
        problems += [
            ("route_unresolved", unresolved_problem(i, routes[i]))
            for i in collected.unresolved
            if discovered(routes[i].upstream)
        ]
        try:
            table = RouteTable(
                candidates,
                collected.bindings,
                problems=[p for _, p in problems],
                unlisted=[p for p in unlisted if p.upstream not in out.excluded],
            )
        except RouteConflict as conflict:
            out.conflicts.append(str(conflict))
            fresh = conflict.upstreams - previous.upstreams - set(out.excluded)
            if not fresh:
                return out  # a refresh broke routed upstreams: keep the last good table
            for name in sorted(fresh):
                out.excluded[name] = f"{CONFLICT_PREFIX}{conflict}"
            candidates = [p for p in candidates if p.upstream not in fresh]
            continue
        out.table = table
        out.new_problems = [(k, p) for k, p in problems if p not in previous.problems]
        return out


def check_static_routes(
    settings: Settings, schemas: Mapping[str, Schema], options: JsonOptions
) -> list[str]:
    """Configuration errors among YAML routes and descriptor-set upstreams, one line each."""
    problems = parse_route_templates(settings.routes)
    if problems:
        return problems  # the descriptor checks would only repeat them
    plans: list[MethodPlan] = []
    seen: set[str] = set()
    for up in settings.upstreams:
        schema = schemas.get(up.name)
        if schema is None:
            continue
        limits = UpstreamLimits(up.timeout_s, up.max_timeout_s)
        for plan in plans_for(schema, options, limits):
            if plan.info.path not in seen:  # the first configured upstream wins, as at run time
                seen.add(plan.info.path)
                plans.append(plan)
    collected = collect_bindings(plans, settings.routes, options)
    problems.extend(collected.route_errors)
    all_static = all(up.name in schemas for up in settings.upstreams)
    for index in collected.unresolved:
        route = settings.routes[index]
        if all_static or (route.upstream is not None and route.upstream in schemas):
            problems.append(unresolved_problem(index, route))
    try:
        RouteTable(plans, collected.bindings)
    except RouteConflict as conflict:
        problems.append(f"routes: {conflict}")
    return problems
