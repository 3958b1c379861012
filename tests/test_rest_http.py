"""REST bindings end to end: real annotated upstreams, discovered by reflection, over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import structlog

from grpc_bridge.demo.service import start_demo_server
from tests.helpers.harness import MakeBridge, RunningBridge, running_bridge
from tests.helpers.servers import StartServer

ITEM = "/v1/items"


async def call(
    b: RunningBridge, method: str, path: str, body: Any = None, **kwargs: Any
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    data = orjson.dumps(body) if body is not None and not isinstance(body, bytes) else body
    headers = kwargs.pop("headers", {})
    if body is not None and not isinstance(body, bytes):
        headers.setdefault("Content-Type", "application/json")
    async with b.session.request(
        method, f"{b.url}{path}", data=data, headers=headers, **kwargs
    ) as resp:
        raw = await resp.read()
        parsed = orjson.loads(raw) if resp.content_type == "application/json" and raw else raw
        return resp.status, parsed, resp.headers


#: REST calls with a one-message answer: the lean edge serves them, aiohttp too.
pytestmark = pytest.mark.both_edges


@pytest.fixture
async def demo(make_bridge: MakeBridge) -> AsyncIterator[RunningBridge]:
    server, port = await start_demo_server()
    try:
        yield await make_bridge(f"demo=127.0.0.1:{port}")
    finally:
        await server.stop(None)


@pytest.fixture
async def rest(upstream_factory: StartServer, make_bridge: MakeBridge) -> RunningBridge:
    server = await upstream_factory(services=("rest", "test"))
    return await make_bridge(server.target)


async def test_crud_on_the_demo(demo: RunningBridge) -> None:
    status, item, _ = await call(demo, "GET", f"{ITEM}/1")
    assert status == 200 and item["name"] == "The Pragmatic Programmer"

    kite = {"name": "Kite", "category": "GAMES", "priceCents": "1500", "tags": ["toy"]}
    status, created, _ = await call(demo, "POST", ITEM, kite)
    assert status == 200 and created["id"] == "5" and created["priceCents"] == "1500"

    # No update_mask sent: it is filled from the body's keys, so only the price changes.
    status, patched, _ = await call(demo, "PATCH", f"{ITEM}/5", {"priceCents": "1999"})
    assert status == 200
    assert patched["priceCents"] == "1999" and patched["name"] == "Kite"
    assert patched["tags"] == ["toy"]

    # The client's own mask wins over the body's keys.
    body = {"name": "Big kite", "priceCents": "1"}
    status, patched, _ = await call(demo, "PATCH", f"{ITEM}/5?update_mask=name", body)
    assert status == 200 and patched["name"] == "Big kite" and patched["priceCents"] == "1999"

    status, deleted, _ = await call(demo, "DELETE", f"{ITEM}/5")
    assert status == 200 and deleted == {}
    status, error, _ = await call(demo, "GET", f"{ITEM}/5")
    assert status == 404 and error["code"] == 5 and "not found" in error["message"]

    status, _, headers = await call(demo, "POST", f"{ITEM}/5")
    assert status == 405 and headers["Allow"] == "GET, HEAD, PATCH, DELETE"

    # A server-streaming method on its REST path: the request from the query, NDJSON out.
    status, body, headers = await call(demo, "GET", f"{ITEM}?category=BOOKS")
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    names = [orjson.loads(line)["result"]["name"] for line in body.splitlines()]
    assert names == ["The Pragmatic Programmer", "Designing Data-Intensive Applications"]


async def test_route_label_is_the_template(demo: RunningBridge) -> None:
    with structlog.testing.capture_logs() as logs:
        await call(demo, "GET", f"{ITEM}/2")
        await call(demo, "GET", f"{ITEM}/nope/more")
    ok, missing = [e for e in logs if e["event"] == "request"]
    assert ok["route"] == "/v1/items/{id}" and ok["grpc_method"] == "demo.v1.Shop/GetItem"
    assert ok["path"] == "/v1/items/2"
    assert missing["route"] == "unmatched" and missing["http_status"] == 404


async def test_path_query_and_additional_bindings(rest: RunningBridge) -> None:
    status, got, _ = await call(rest, "GET", "/v1/things/1?num=5&tags=a&tags=b&color=2&flag=1")
    assert status == 200
    assert (got["id"], got["num"], got["tags"], got["color"], got["flag"]) == (
        "1",
        "5",
        ["a", "b"],
        "GREEN",
        True,
    )
    status, got, _ = await call(rest, "GET", "/v1/things/special")
    assert status == 200 and got["id"] == ""  # GetSpecial, not Get(id="special")
    status, got, _ = await call(rest, "GET", "/v1/shelves/s1/things/7")
    assert status == 200 and got["id"] == "7" and got["nested"]["name"] == "s1"
    status, got, _ = await call(rest, "GET", "/v1/shelves/1/books/2")
    assert status == 200 and got["name"] == "shelves/1/books/2"
    status, got, _ = await call(rest, "GET", "/v1/ops/a/b/status/9")
    assert status == 200 and (got["name"], got["id"]) == ("ops/a/b", "9")
    status, got, _ = await call(rest, "GET", "/v1/typed/-3/true/BLUE/2024-01-01T00:00:00Z/7")
    assert status == 200 and (got["num"], got["flag"], got["color"]) == ("-3", True, "BLUE")


async def test_verbs_custom_methods_and_response_body(rest: RunningBridge) -> None:
    status, got, _ = await call(rest, "POST", "/v1/things/5:archive", {"name": "n"})
    assert status == 200 and (got["id"], got["name"]) == ("5", "n")
    status, got, _ = await call(rest, "SEARCH", "/v1/things?name=q")
    assert status == 200 and got["name"] == "q"
    status, got, _ = await call(rest, "GET", "/v1/things/3/tags?tags=x&tags=y")
    assert status == 200 and got == ["x", "y"]
    status, got, _ = await call(rest, "GET", "/v1/things/3/nested?nested.value=4")
    assert status == 200 and got == {"name": "", "value": 4}
    status, got, _ = await call(rest, "POST", "/v1/things/3/nested", {"value": 2})
    assert status == 200 and got["id"] == "3" and got["nested"]["value"] == 2


async def test_bad_requests(rest: RunningBridge) -> None:
    cases: list[tuple[str, str, Any, int, str]] = [
        ("GET", "/v1/things/1?id=2", None, 400, 'field "id" is bound by the path'),
        ("PUT", "/v1/things/1", {"id": "2"}, 400, "cannot be set by the request body"),
        ("GET", "/v1/things/1?bogus=1", None, 400, 'unknown query parameter "bogus"'),
        ("GET", "/v1/things/1?num=x", None, 400, 'for query parameter "num": not an integer'),
        ("GET", "/v1/typed/x/true/RED/2024-01-01T00:00:00Z/0", None, 400, 'variable "num"'),
        ("GET", "/v1/things/1", {"name": "x"}, 400, "takes no request body"),
        ("POST", "/v1/things?num=1", {}, 400, 'unknown query parameter "num"'),
        ("POST", "/v1/things/1", None, 405, "POST is not allowed on /v1/things/{id}"),
        ("GET", "/v1/nothing/here", None, 404, "no route for GET /v1/nothing/here"),
    ]
    for method, path, body, expected, message in cases:
        status, error, _ = await call(rest, method, path, body)
        assert (status, message in error["message"]) == (expected, True), (path, error)
    status, _, headers = await call(rest, "POST", "/v1/things/1")
    assert headers["Allow"] == "GET, HEAD, PUT, PATCH, DELETE"
    status, error, _ = await call(
        rest, "POST", "/v1/things", b"{}", headers={"Content-Type": "text/plain"}
    )
    assert status == 415


async def test_unknown_query_parameters_setting(upstream_factory: StartServer) -> None:
    server = await upstream_factory(services=("rest",))
    async with running_bridge(server.target, rest={"ignore_unknown_query_parameters": True}) as b:
        status, got, _ = await call(b, "GET", "/v1/things/1?bogus=1&num=2")
        assert status == 200 and got["num"] == "2"


async def test_http_body_request(rest: RunningBridge) -> None:
    status, got, _ = await call(
        rest, "POST", "/v1/things/9/file", b"\x89PNG\x00", headers={"Content-Type": "image/png"}
    )
    assert status == 200
    assert (got["id"], got["name"], got["data"]) == ("9", "image/png", "iVBORwA=")


async def test_http_body_response(rest: RunningBridge) -> None:
    status, body, headers = await call(rest, "GET", "/v1/things/1/download?tags=a&tags=b")
    assert status == 200 and body == b"a\nb\n" and headers["Content-Type"] == "text/csv"
    status, body, headers = await call(
        rest, "POST", "/v1/echo-body", b"hi", headers={"Content-Type": "text/plain"}
    )
    assert status == 200 and body == b"hi" and headers["Content-Type"] == "text/plain"


async def test_percent_decoding_follows_the_variable(rest: RunningBridge) -> None:
    status, got, _ = await call(rest, "GET", "/v1/things/a%2Fb%20c")
    assert status == 200 and got["id"] == "a/b c"
    status, got, _ = await call(rest, "GET", "/v1/files/dir/a%2Fb/c%20d")
    assert status == 200 and got["name"] == "dir/a%2Fb/c d"


async def test_yaml_routes(upstream_factory: StartServer) -> None:
    server = await upstream_factory(services=("rest", "test"))
    routes = [
        {
            "method": "bridgetest.v1.RestService/Plain",
            "get": "/plain/{id}",
            "additional_bindings": [{"post": "/plain", "body": "*"}],
        },
        {
            "method": "bridgetest.v1.TestService/Echo",
            "put": "/kitchen/{f_string}/{nested.value}",
            "body": "o_nested",
            "response_body": "nested",
        },
        # Overrides the annotation of the same method and path.
        {
            "method": "bridgetest.v1.RestService/Get",
            "get": "/v1/things/{id}",
            "response_body": "id",
        },
    ]
    async with running_bridge(server.target, routes=routes) as b:
        status, got, _ = await call(b, "GET", "/plain/3?num=1")
        assert status == 200 and (got["id"], got["num"]) == ("3", "1")
        status, got, _ = await call(b, "POST", "/plain", {"id": "x"})
        assert status == 200 and got["id"] == "x"
        status, got, _ = await call(b, "PUT", "/kitchen/s/5", {"name": "n"})
        assert status == 200 and got == {"name": "", "value": 5}
        status, got, _ = await call(b, "GET", "/v1/things/7")
        assert status == 200 and got == "7"
        async with b.session.get(f"{b.admin_url}/v1/services/bridgetest.v1.RestService") as resp:
            methods = {m["name"]: m for m in (await resp.json())["methods"]}
        assert methods["Plain"]["bindings"] == [
            {
                "http_method": "GET",
                "path": "/plain/{id}",
                "body": None,
                "response_body": None,
                "source": "routes[0]",
            },
            {
                "http_method": "POST",
                "path": "/plain",
                "body": "*",
                "response_body": None,
                "source": "routes[0].additional_bindings[0]",
            },
        ]
        sources = [x["source"] for x in methods["Get"]["bindings"]]
        assert sources[0] == "routes[2]" and len(sources) == 4
        assert sources[1] == (
            "bridgetest.v1.RestService/Get "
            "(google.api.http additional_bindings[0] in bridgetest/v1/rest.proto)"
        )


async def test_yaml_route_problems_found_at_discovery_are_logged(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory(services=("rest",))
    with structlog.testing.capture_logs() as logs:
        routes = [
            {"method": "nope.v1.Gone/Away", "get": "/gone"},
            {"method": "bridgetest.v1.RestService/Plain", "get": "/plain/{nope}"},
            {"method": "bridgetest.v1.RestService/Plain", "get": "/plain"},
        ]
        async with running_bridge(server.target, routes=routes) as b:
            status, _, _ = await call(b, "GET", "/gone")
            assert status == 404
            status, _, _ = await call(b, "GET", "/plain")
            assert status == 200  # the other routes still work
    problems = [(e["event"], e["problem"]) for e in logs if e["event"].startswith("route_")]
    assert problems == [
        (
            "route_invalid",
            "routes[1]: path variable 'nope': bridgetest.v1.Thing has no field 'nope'",
        ),
        ("route_unresolved", "routes[0].method: no upstream serves 'nope.v1.Gone/Away'"),
    ]


async def test_unusable_annotations_are_skipped(upstream_factory: StartServer) -> None:
    server = await upstream_factory(services=("badrest",))
    with structlog.testing.capture_logs() as logs:
        async with running_bridge(server.target) as b:
            status, got, _ = await call(b, "GET", "/v1/bad-but-fine/3")
            assert status == 200 and got["id"] == "3"
            status, got, _ = await call(b, "GET", "/v1/things/x")
            assert status == 200 and got["name"] == "x"  # BadRest.Clash, alone here
    skipped = sorted(e["problem"] for e in logs if e["event"] == "binding_skipped")
    assert len(skipped) == 2
    assert skipped[0].startswith(
        "bridgetest.v1.BadRest/Malformed (google.api.http in bridgetest/v1/rest.proto): "
        "invalid path template '/v1/bad/{id'"
    )
    assert "BadRest/UnknownField" in skipped[1] and "has no field 'nope'" in skipped[1]


async def test_conflict_at_first_discovery_leaves_the_upstream_out(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory(services=("rest", "badrest"))
    with structlog.testing.capture_logs() as logs:
        async with running_bridge(server.target, ready=False) as b:
            report = await wait_readyz(
                b, lambda r: "conflict" in r["upstreams"]["default"].get("reason", "")
            )
            reason = report["upstreams"]["default"]["reason"]
            assert reason.startswith("REST binding conflict: GET /v1/things/* is bound twice: ")
            assert "bridgetest.v1.RestService/Get (google.api.http in" in reason
            assert "bridgetest.v1.BadRest/Clash (google.api.http in" in reason
            status, _, _ = await call(b, "GET", "/v1/things/1")
            assert status == 404
    conflicts = [e for e in logs if e["event"] == "route_conflict"]
    assert conflicts and conflicts[0]["action"] == "upstream left out"


async def test_conflict_on_refresh_keeps_the_last_good_table(
    upstream_factory: StartServer,
) -> None:
    first = await upstream_factory(services=("rest",))
    with structlog.testing.capture_logs() as logs:
        async with running_bridge(first.target, discovery={"refresh_interval_s": 0.1}) as b:
            await first.stop()
            second = await upstream_factory(services=("rest", "badrest"), port=first.port)
            for _ in range(200):  # up to 10 s for a refresh to meet the new schema
                if any(e["event"] == "route_conflict" for e in logs):
                    break
                await asyncio.sleep(0.05)
            status, got, _ = await call(b, "GET", "/v1/things/1")
            assert status == 200 and got["id"] == "1"  # still RestService.Get
            async with b.session.get(f"{b.admin_url}/readyz") as resp:
                assert resp.status == 200
            status, _, _ = await call(b, "POST", "/bridgetest.v1.BadRest/Clash", {})
            assert status == 404  # the new schema was not adopted
            await second.stop()
    conflict = next(e for e in logs if e["event"] == "route_conflict")
    assert conflict["action"] == "kept the previous route table"


async def wait_readyz(b: RunningBridge, done: Any) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            async with b.session.get(f"{b.admin_url}/readyz") as resp:
                report: dict[str, Any] = await resp.json()
            if done(report):
                return report
            await asyncio.sleep(0.05)
