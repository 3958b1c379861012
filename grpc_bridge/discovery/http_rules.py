"""``google.api.http`` rules on discovered methods, as plain :class:`RuleSpec` values.

Reflected files and descriptor sets arrive as serialized descriptors in an
upstream's private pool, which knows the ``google.api.http`` extension only as
a field number. The method's options are therefore re-read through
googleapis-common-protos' definition: serialized, then parsed as the default
pool's ``MethodOptions`` once ``google.api.annotations_pb2`` has registered the
extension there. No upstream type ever enters the default pool.

YAML ``routes:`` use the same rule syntax and become :class:`RuleSpec` values
too (:func:`rules_from_route`), so the route table sees one kind of rule
whatever its source. ``additional_bindings`` are flattened into rules of their
own, each with a source naming where it came from, e.g.
``demo.v1.Shop/GetItem (google.api.http in demo.proto)`` or
``routes[1].additional_bindings[0]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from grpc_bridge.discovery.registry import MethodInfo
from grpc_bridge.settings import Route, RouteRule

__all__ = ["RuleSpec", "rules_from_method", "rules_from_route"]

_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One HTTP binding of one method, before its template is parsed."""

    #: ``GET`` ... ``PATCH``, a custom kind as written (``HEAD``, ``SEARCH``), or ``*``.
    http_method: str
    path: str
    #: ``"*"``, a top-level field name, or None for no body.
    body: str | None
    response_body: str | None
    #: Where the rule was written, for messages.
    source: str
    #: Written as ``custom: {kind, path}`` rather than ``get:`` ... ``patch:``.
    custom: bool = False


def rules_from_method(info: MethodInfo) -> tuple[list[RuleSpec], list[str]]:
    """The method's ``google.api.http`` rules, and problems with any that can't be read."""
    options = info.descriptor.GetOptions()
    try:
        parsed = descriptor_pb2.MethodOptions.FromString(options.SerializeToString())
    except DecodeError as exc:
        return [], [f"{info.full_name}: unreadable method options: {exc}"]
    if not parsed.HasExtension(annotations_pb2.http):
        return [], []
    rule = parsed.Extensions[annotations_pb2.http]
    file = info.descriptor.containing_service.file.name
    source = f"{info.full_name} (google.api.http in {file})"
    rules: list[RuleSpec] = []
    problems: list[str] = []
    _add(rules, problems, rule, source)
    for i, extra in enumerate(rule.additional_bindings):
        where = f"{info.full_name} (google.api.http additional_bindings[{i}] in {file})"
        if extra.additional_bindings:
            problems.append(f"{where}: nested additional_bindings are not allowed; ignored")
        _add(rules, problems, extra, where)
    return rules, problems


def _add(rules: list[RuleSpec], problems: list[str], rule: http_pb2.HttpRule, source: str) -> None:
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        problems.append(f"{source}: no HTTP method (get, put, post, delete, patch or custom)")
        return
    custom = pattern == "custom"
    if custom:
        method, path = rule.custom.kind, rule.custom.path
    else:
        method, path = pattern.upper(), getattr(rule, pattern)
    body, response_body = rule.body or None, rule.response_body or None
    rules.append(RuleSpec(method, path, body, response_body, source, custom))


def rules_from_route(route: Route, index: int) -> list[RuleSpec]:
    """A YAML route and its additional bindings (already validated by settings)."""
    source = f"routes[{index}]"
    rules = [_from_setting(route, source)]
    for i, extra in enumerate(route.additional_bindings):
        rules.append(_from_setting(extra, f"{source}.additional_bindings[{i}]"))
    return rules


def _from_setting(rule: RouteRule, source: str) -> RuleSpec:
    if rule.custom is not None:
        method, path = rule.custom.kind, rule.custom.path
    else:
        verb = next(v for v in _VERBS if getattr(rule, v))
        method, path = verb.upper(), getattr(rule, verb)
    body, response_body = rule.body or None, rule.response_body or None
    return RuleSpec(method, path, body, response_body, source, rule.custom is not None)
