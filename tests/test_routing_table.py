"""The route table on its own: REST bindings on the segment trie, generic routes, 404 vs 405."""

from __future__ import annotations

from pathlib import Path

import pytest
from bridgetest.v1 import kitchen_pb2, rest_pb2
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.discovery.http_rules import RuleSpec, rules_from_method
from grpc_bridge.discovery.loader import load_descriptor_sets
from grpc_bridge.routing.bindings import (
    Binding,
    BindingError,
    RouteConflict,
    collect_bindings,
    compile_binding,
    parse_route_templates,
)
from grpc_bridge.routing.plan import MethodPlan, UpstreamLimits, plans_for
from grpc_bridge.routing.table import Match, MatchKind, RouteTable
from grpc_bridge.settings import Route
from tests.helpers.descriptors import fdp, with_imports, write_set

REST = "bridgetest.v1.RestService"
OPTIONS = JsonOptions()


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MethodPlan]:
    path = write_set(
        tmp_path_factory.mktemp("sets") / "rest.pb",
        *with_imports(rest_pb2.DESCRIPTOR, kitchen_pb2.DESCRIPTOR),
    )
    schema = load_descriptor_sets("u", [path], exclude=["*.BadRest"])
    return {p.info.full_name: p for p in plans_for(schema, OPTIONS, UpstreamLimits(30, 300))}


@pytest.fixture(scope="module")
def table(plans: dict[str, MethodPlan]) -> RouteTable:
    collected = collect_bindings(list(plans.values()), [], OPTIONS)
    assert collected.skipped == []
    return RouteTable(plans.values(), collected.bindings)


def rule(method: str, path: str, source: str = "test", **kw: str) -> RuleSpec:
    return RuleSpec(method, path, kw.get("body"), kw.get("response_body"), source)


def full(table: RouteTable, method: str, path: str) -> Match:
    match = table.match(method, path)
    assert match.kind is MatchKind.FULL, (method, path, match)
    return match


@pytest.mark.parametrize(
    ("method", "path", "rpc", "route", "params"),
    [
        ("GET", "/v1/things/1", "Get", "/v1/things/{id}", {"id": "1"}),
        ("GET", "/v1/things/1?id=2&x", "Get", "/v1/things/{id}", {"id": "1"}),
        # A literal beats a variable ...
        ("GET", "/v1/things/special", "GetSpecial", "/v1/things/special", {}),
        # ... unless it lacks the method: backtrack to the variable.
        ("DELETE", "/v1/things/special", "Delete", "/v1/things/{id}", {"id": "special"}),
        (
            "GET",
            "/v1/shelves/s1/things/7",
            "Get",
            "/v1/shelves/{nested.name}/things/{id}",
            {"nested.name": "s1", "id": "7"},
        ),
        ("GET", "/v1/things/3/tags", "Get", "/v1/things/{id}/tags", {"id": "3"}),
        (
            "GET",
            "/v1/shelves/1/books/2",
            "GetResource",
            "/v1/{name=shelves/*/books/*}",
            {"name": "shelves/1/books/2"},
        ),
        ("GET", "/v1/files/a/b%2Fc/d", "GetFile", "/v1/files/{name=**}", {"name": "a/b%2Fc/d"}),
        ("GET", "/v1/files", "GetFile", "/v1/files/{name=**}", {"name": ""}),
        (
            "GET",
            "/v1/ops/a/b/status/9",
            "GetOperation",
            "/v1/{name=ops/**}/status/{id}",
            {"name": "ops/a/b", "id": "9"},
        ),
        ("POST", "/v1/things/5:archive", "Archive", "/v1/things/{id}:archive", {"id": "5"}),
        # Without a binding for the verb, a variable takes the colon and all (grpc-gateway).
        ("GET", "/v1/things/5:archive", "Get", "/v1/things/{id}", {"id": "5:archive"}),
        ("GET", "/v1/things/5%3Aarchive", "Get", "/v1/things/{id}", {"id": "5%3Aarchive"}),
        ("SEARCH", "/v1/things", "Search", "/v1/things", {}),
        ("POST", "/v1/things", "Create", "/v1/things", {}),
        ("PUT", "/v1/things/1", "Replace", "/v1/things/{id}", {"id": "1"}),
        ("PATCH", "/v1/things/1", "Update", "/v1/things/{thing.id}", {"thing.id": "1"}),
        # Literals compare percent-decoded.
        ("GET", "/v1/th%69ngs/special", "GetSpecial", "/v1/things/special", {}),
    ],
)
def test_rest_matches(
    table: RouteTable, method: str, path: str, rpc: str, route: str, params: dict[str, str]
) -> None:
    match = full(table, method, path)
    assert match.plan is not None and match.plan.info.full_name == f"{REST}/{rpc}"
    assert match.route == route
    assert match.binding is not None and match.binding.template.text == route
    assert dict(match.path_params) == params


@pytest.mark.parametrize(
    ("method", "path", "allowed", "route"),
    [
        ("POST", "/v1/things/1", ("GET", "HEAD", "PUT", "PATCH", "DELETE"), "/v1/things/{id}"),
        ("GET", "/v1/things", ("POST", "SEARCH"), "/v1/things"),
        ("GET", "/v1/things/1:archive/x", None, None),
        (
            "OPTIONS",
            "/v1/things/1:archive",
            ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"),
            None,
        ),
        ("GET", "/bridgetest.v1.RestService/Get", ("POST",), "/bridgetest.v1.RestService/Get"),
        ("PUT", "/bridgetest.v1.TestService/Lookup", ("GET", "HEAD", "POST"), None),
    ],
)
def test_wrong_method_lists_every_method_of_the_path(
    table: RouteTable, method: str, path: str, allowed: tuple[str, ...] | None, route: str | None
) -> None:
    match = table.match(method, path)
    if allowed is None:
        assert match.kind is MatchKind.NONE
        return
    assert match.kind is MatchKind.WRONG_METHOD
    assert match.allowed == allowed
    assert match.plan is not None
    if route is not None:
        assert match.route == route


@pytest.mark.parametrize(
    "path",
    ["/v2/things", "/v1/things/", "/v1/things/1/2/3", "/v1", "/", "", "v1/things", "/v1/shelves/1"],
)
def test_no_route(table: RouteTable, path: str) -> None:
    assert table.match("GET", path).kind is MatchKind.NONE


def test_generic_routes_stay(table: RouteTable) -> None:
    match = full(table, "POST", "/bridgetest.v1.RestService/Get")
    assert match.binding is None and match.route == "/bridgetest.v1.RestService/Get"
    assert full(table, "GET", "/bridgetest.v1.TestService/Lookup").binding is None


def test_rest_binding_wins_over_the_generic_route(plans: dict[str, MethodPlan]) -> None:
    plan = plans[f"{REST}/Get"]
    binding = compile_binding(plan, rule("POST", "/bridgetest.v1.RestService/Plain"), OPTIONS)
    table = RouteTable(plans.values(), [binding])
    match = full(table, "POST", "/bridgetest.v1.RestService/Plain")
    assert match.binding is binding and match.plan is plan


def test_wildcard_http_method(plans: dict[str, MethodPlan]) -> None:
    binding = compile_binding(plans[f"{REST}/Plain"], rule("*", "/any/{id}"), OPTIONS)
    table = RouteTable(plans.values(), [binding])
    for method in ("GET", "POST", "OPTIONS", "BREW"):
        assert full(table, method, "/any/1").binding is binding


def test_websocket_prefers_the_get_binding(table: RouteTable) -> None:
    match = table.websocket("/v1/things/1")
    assert match.kind is MatchKind.FULL and match.binding is not None
    assert match.binding.http_method == "GET" and match.path_params == {"id": "1"}
    match = table.websocket("/v1/things/1:archive")
    assert match.binding is not None and match.binding.http_method == "POST"
    assert table.websocket("/bridgetest.v1.RestService/Get").binding is None
    assert table.websocket("/nope").kind is MatchKind.NONE


def test_conflicts_name_both_bindings(plans: dict[str, MethodPlan]) -> None:
    first = compile_binding(plans[f"{REST}/Plain"], rule("GET", "/x/{id}", "routes[0]"), OPTIONS)
    second = compile_binding(plans[f"{REST}/Get"], rule("GET", "/x/{name=*}", "routes[3]"), OPTIONS)
    with pytest.raises(RouteConflict) as info:
        RouteTable(plans.values(), [first, second])
    message = str(info.value)
    assert message.startswith("GET /x/* is bound twice: routes[0] ")
    assert "bridgetest.v1.RestService/Plain" in message and "routes[3]" in message
    assert "bridgetest.v1.RestService/Get" in message
    # Another HTTP method, or another shape, is no conflict.
    other = compile_binding(plans[f"{REST}/Get"], rule("POST", "/x/{id}"), OPTIONS)
    deeper = compile_binding(plans[f"{REST}/Get"], rule("GET", "/x/{id}/y"), OPTIONS)
    assert len(RouteTable(plans.values(), [first, other, deeper]).bindings) == 3
    # The wildcard method clashes with every method.
    anything = compile_binding(plans[f"{REST}/Get"], rule("*", "/x/{name}"), OPTIONS)
    with pytest.raises(RouteConflict):
        RouteTable(plans.values(), [other, anything])


def test_annotation_conflicts_name_their_files(plans: dict[str, MethodPlan]) -> None:
    clash = compile_binding(plans[f"{REST}/Plain"], rule("GET", "/v1/things/{name}"), OPTIONS)
    collected = collect_bindings(list(plans.values()), [], OPTIONS)
    with pytest.raises(RouteConflict) as info:
        RouteTable(plans.values(), [*collected.bindings, clash])
    assert "bridgetest.v1.RestService/Get (google.api.http in bridgetest/v1/rest.proto)" in str(
        info.value
    )


def test_yaml_route_overrides_the_annotation_of_its_own_method(
    plans: dict[str, MethodPlan],
) -> None:
    routes = [Route(method=f"{REST}/Get", get="/v1/things/{id}", response_body="tags")]
    collected = collect_bindings(list(plans.values()), routes, OPTIONS)
    table = RouteTable(plans.values(), collected.bindings)
    match = full(table, "GET", "/v1/things/1")
    assert match.binding is not None and match.binding.source == "routes[0]"
    assert match.binding.response.response_body == "tags"
    # The same path for another method is a conflict, not an override.
    routes = [Route(method=f"{REST}/Plain", get="/v1/things/{id}")]
    collected = collect_bindings(list(plans.values()), routes, OPTIONS)
    with pytest.raises(RouteConflict, match="routes\\[0\\]"):
        RouteTable(plans.values(), collected.bindings)


def test_yaml_routes_resolve_against_served_methods(plans: dict[str, MethodPlan]) -> None:
    routes = [
        Route(
            method=f"{REST}/Plain",
            get="/plain/{id}",
            additional_bindings=[{"post": "/plain", "body": "*"}],  # type: ignore[list-item]
        ),
        Route(method="nope.v1.Gone/Away", get="/gone"),
        Route(method=f"{REST}/Plain", upstream="elsewhere", get="/elsewhere"),
        Route(method=f"{REST}/Plain", get="/bad/{missing}"),
    ]
    collected = collect_bindings(list(plans.values()), routes, OPTIONS)
    assert [b.source for b in collected.bindings if b.from_config] == [
        "routes[0]",
        "routes[0].additional_bindings[0]",
    ]
    assert collected.unresolved == [1, 2]
    assert collected.route_errors == [
        "routes[3]: path variable 'missing': bridgetest.v1.Thing has no field 'missing'"
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "response_body", "problem"),
    [
        ("GET", "/v1/{id", None, None, "unterminated variable"),
        ("GET", "/v1/{nested}", None, None, "is a message (bridgetest.v1.Nested)"),
        ("GET", "/v1/{tags}", None, None, "is a repeated or map field"),
        ("GET", "/v1/{labels}", None, None, "is a repeated or map field"),
        ("GET", "/v1/{id.x}", None, None, "has no subfields"),
        ("GET", "/v1/{ts.seconds}", None, None, "has no subfields"),
        ("GET", "/v1/{wInt32}", None, None, "field paths use proto names: 'w_int32'"),
        ("POST", "/v1/{id}", "nope", None, "body 'nope'"),
        ("POST", "/v1/{id}", "id", None, "bound by both the path and the body"),
        ("GET", "/v1/{id}", None, "nope", "response_body 'nope'"),
        ("GE T", "/v1/x", None, None, "not an HTTP method"),
    ],
)
def test_rules_that_do_not_fit(
    plans: dict[str, MethodPlan],
    method: str,
    path: str,
    body: str | None,
    response_body: str | None,
    problem: str,
) -> None:
    spec = RuleSpec(method, path, body, response_body, "routes[7]")
    with pytest.raises(BindingError) as info:
        compile_binding(plans[f"{REST}/Get"], spec, OPTIONS)
    assert str(info.value).startswith("routes[7]: ")
    assert problem in str(info.value)


def test_path_variables_may_carry_well_known_types(plans: dict[str, MethodPlan]) -> None:
    spec = rule("GET", "/t/{ts}/{dur}/{w_int32}/{paths}/{nested.child.value}")
    assert isinstance(compile_binding(plans[f"{REST}/Get"], spec, OPTIONS), Binding)


def test_yaml_templates_checked_without_descriptors() -> None:
    routes = [
        Route(method="a.B/C", get="/ok/{id}"),
        Route(method="a.B/C", post="/bad/{id"),
        Route(method="a.B/D", get="/ok/{other}"),
        Route(method="a.B/E", custom={"kind": "BAD KIND", "path": "/x"}),  # type: ignore[arg-type]
    ]
    assert parse_route_templates(routes) == [
        "routes[1].post: invalid path template '/bad/{id': unterminated variable: '{' without '}'",
        "routes[2]: GET /ok/{other} is bound twice: routes[0] and routes[2]",
        "routes[3].custom: 'BAD KIND' is not an HTTP method (an RFC 9110 token, or '*')",
    ]


def test_many_routes_one_lookup(plans: dict[str, MethodPlan]) -> None:
    """Lookups walk the path's segments, whatever the number of routes."""
    plan = plans[f"{REST}/Get"]
    bindings = [
        compile_binding(plan, rule("GET", f"/r{i}/{{id}}/s{i % 7}"), OPTIONS) for i in range(2000)
    ]
    table = RouteTable(plans.values(), bindings)
    match = full(table, "GET", "/r1999/7/s4")
    assert match.route == "/r1999/{id}/s4" and match.path_params == {"id": "7"}
    assert table.match("GET", "/r1999/7/s5").kind is MatchKind.NONE


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/v1:verb", "/v1:verb"),
        ("/a:b/c", "/a:b/c"),
        ("/x:y:z", "/x:y:z"),
        ("/sp%20ace", "/sp%20ace"),
        ("/sp%20ace", "/sp ace"),
        ("/{id}", "/anything"),
        ("/{name=**}", "/any/thing"),
    ],
)
def test_first_segment_shortcut(plans: dict[str, MethodPlan], template: str, path: str) -> None:
    binding = compile_binding(plans[f"{REST}/Get"], rule("GET", template), OPTIONS)
    assert full(RouteTable(plans.values(), [binding]), "GET", path).binding is binding


def test_annotations_read_from_a_private_pool(tmp_path: Path) -> None:
    """Rules come from serialized options, whatever the pool; odd rules are reported."""
    files = [fdp(f) for f in with_imports(rest_pb2.DESCRIPTOR)]
    rest = next(f for f in files if f.name == "bridgetest/v1/rest.proto")
    service = next(s for s in rest.service if s.name == "RestService")
    methods = {m.name: m for m in service.method}
    methods["Plain"].options.Extensions[annotations_pb2.http].body = "*"  # no HTTP method
    nested = methods["Get"].options.Extensions[annotations_pb2.http].additional_bindings[0]
    nested.additional_bindings.add(get="/deeper")
    path = tmp_path / "odd.pb"
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
    schema = load_descriptor_sets("u", [path], include=["*.RestService"])
    by_name = {i.name: i for i in schema.methods.values()}
    rules, problems = rules_from_method(by_name["Get"])
    assert [r.path for r in rules] == [
        "/v1/things/{id}",
        "/v1/shelves/{nested.name}/things/{id}",
        "/v1/things/{id}/tags",
        "/v1/things/{id}/nested",
    ]
    assert problems == [
        "bridgetest.v1.RestService/Get (google.api.http additional_bindings[0] in "
        "bridgetest/v1/rest.proto): nested additional_bindings are not allowed; ignored"
    ]
    rules, problems = rules_from_method(by_name["Plain"])
    assert rules == [] and problems == [
        "bridgetest.v1.RestService/Plain (google.api.http in bridgetest/v1/rest.proto): "
        "no HTTP method (get, put, post, delete, patch or custom)"
    ]
    assert rules_from_method(by_name["Search"])[0] == [
        RuleSpec(
            "SEARCH",
            "/v1/things",
            None,
            None,
            "bridgetest.v1.RestService/Search (google.api.http in bridgetest/v1/rest.proto)",
            custom=True,
        )
    ]
