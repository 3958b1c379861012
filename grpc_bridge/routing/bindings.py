"""REST bindings: HttpRules (annotations and YAML ``routes:``) compiled against method plans.

A :class:`Binding` is one HTTP method + path template bound to one gRPC
method, with its request and response shapes compiled once
(:mod:`grpc_bridge.codec.rest`). :func:`collect_bindings` gathers every
binding of a discovery snapshot:

- YAML routes first; a route naming a method no routed upstream serves is
  *unresolved* (the caller decides whether that is fatal: it is for
  descriptor-set upstreams, known at load; reflection upstreams are checked
  again on every refresh);
- then each method's ``google.api.http`` annotation and its additional bindings.
  An annotation that can't be used (a malformed template, an unknown field) is
  skipped with a problem line: one bad rule must not take a whole upstream down.

Errors name the rule's source (``routes[1]``,
``demo.v1.Shop/GetItem (google.api.http in demo.proto)``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.codec.rest import RestMappingError, RestRequest
from grpc_bridge.codec.rest_response import RestResponse
from grpc_bridge.discovery.http_rules import RuleSpec, rules_from_method, rules_from_route
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.template import PathTemplate, TemplateError, parse_template
from grpc_bridge.settings import Route

__all__ = [
    "Binding",
    "BindingError",
    "Collected",
    "RouteConflict",
    "collect_bindings",
    "compile_binding",
    "parse_route_templates",
]

# RFC 9110 token: what an HTTP method may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class BindingError(ValueError):
    """A rule that can't become a binding; the message starts with the rule's source."""


@dataclass(frozen=True, slots=True, eq=False)
class Binding:
    http_method: str
    template: PathTemplate
    plan: MethodPlan
    #: ``routes[1]``, ``demo.v1.Shop/GetItem (google.api.http in demo.proto)`` ...
    source: str
    request: RestRequest
    response: RestResponse
    #: Declared in YAML ``routes:`` (which override an annotation of the same method and path).
    from_config: bool = False

    @property
    def route(self) -> str:
        """The template as written: the route label in logs and metrics."""
        return self.template.text

    def describe(self) -> dict[str, Any]:
        """For introspection (``GET /v1/services/{service}``)."""
        return {
            "http_method": self.http_method,
            "path": self.template.text,
            "body": self.request.body,
            "response_body": self.response.response_body,
            "source": self.source,
        }

    def __str__(self) -> str:
        return f"{self.http_method} {self.template.text} -> {self.plan.info.full_name}"


class RouteConflict(Exception):
    """Two bindings claim one HTTP method and path template (modulo variable names)."""

    def __init__(self, first: Binding, second: Binding) -> None:
        super().__init__(
            f"{second.http_method} {second.template.shape} is bound twice: "
            f"{first.source} ({first}) and {second.source} ({second})"
        )
        self.first = first
        self.second = second

    @property
    def upstreams(self) -> set[str]:
        return {self.first.plan.upstream, self.second.plan.upstream}


def check_http_method(method: str) -> None:
    if method != "*" and not _TOKEN.fullmatch(method):
        raise ValueError(f"{method!r} is not an HTTP method (an RFC 9110 token, or '*')")


def compile_binding(
    plan: MethodPlan, rule: RuleSpec, options: JsonOptions, *, from_config: bool = False
) -> Binding:
    """One rule against one method; :class:`BindingError` says what doesn't fit."""
    try:
        check_http_method(rule.http_method)
        template = parse_template(rule.path)
        request = RestRequest(
            plan.request_codec,
            plan.info.input_type,
            [(v.field_path, v.single) for v in template.variables],
            rule.body,
            patch=rule.http_method == "PATCH",
            max_depth=options.max_depth,
        )
        response = RestResponse(
            plan.response_codec, plan.info.output_type, rule.response_body, plan.pool, options
        )
    except (TemplateError, RestMappingError, ValueError) as exc:
        raise BindingError(f"{rule.source}: {exc}") from exc
    return Binding(rule.http_method, template, plan, rule.source, request, response, from_config)


@dataclass
class Collected:
    bindings: list[Binding] = field(default_factory=list)
    #: Annotations skipped, one line each (logged as warnings).
    skipped: list[str] = field(default_factory=list)
    #: YAML route rules that don't fit their method (configuration errors).
    route_errors: list[str] = field(default_factory=list)
    #: Indexes of YAML routes whose method no routed upstream serves.
    unresolved: list[int] = field(default_factory=list)


def collect_bindings(
    plans: Sequence[MethodPlan], routes: Sequence[Route], options: JsonOptions
) -> Collected:
    out = Collected()
    by_path = {plan.info.path: plan for plan in plans}
    for index, route in enumerate(routes):
        plan = by_path.get(f"/{route.method}")
        if plan is None or (route.upstream is not None and plan.upstream != route.upstream):
            out.unresolved.append(index)
            continue
        for rule in rules_from_route(route, index):
            try:
                out.bindings.append(compile_binding(plan, rule, options, from_config=True))
            except BindingError as exc:
                out.route_errors.append(str(exc))
    for plan in plans:
        rules, problems = rules_from_method(plan.info)
        out.skipped.extend(problems)
        for rule in rules:
            try:
                out.bindings.append(compile_binding(plan, rule, options))
            except BindingError as exc:
                out.skipped.append(f"{exc}; binding skipped")
    return out


def parse_route_templates(routes: Sequence[Route]) -> list[str]:
    """Problems of YAML routes found without descriptors: bad templates, methods, and
    bindings that conflict among themselves. One line per problem, naming the key."""
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for index, route in enumerate(routes):
        for rule in rules_from_route(route, index):
            key = _rule_key(rule)
            try:
                check_http_method(rule.http_method)
                shape = parse_template(rule.path).shape
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
                continue
            other = seen.get((rule.http_method, shape)) or seen.get(("*", shape))
            if other is None and rule.http_method == "*":
                other = next((s for (m, p), s in seen.items() if p == shape), None)
            if other is not None:
                problems.append(
                    f"{rule.source}: {rule.http_method} {rule.path} is bound twice: "
                    f"{other} and {rule.source}"
                )
            seen.setdefault((rule.http_method, shape), rule.source)
    return problems


def _rule_key(rule: RuleSpec) -> str:
    """The settings key holding the rule's path, e.g. ``routes[0].additional_bindings[1].get``."""
    return f"{rule.source}.{'custom' if rule.custom else rule.http_method.lower()}"
