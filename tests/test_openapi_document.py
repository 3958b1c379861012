"""The OpenAPI 3.1 document says what the bridge serves: routes, parameters, bodies, schemas."""

from __future__ import annotations

from typing import Any

from tests.helpers.harness import running_bridge
from tests.helpers.openapi_tools import admin_document, check_document, operation, operations
from tests.helpers.servers import RunningServer, StartServer

NDJSON, SSE = "application/x-ndjson", "text/event-stream"


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][name]
    return found


async def test_document_of_the_demo_is_valid_openapi_31(upstream_factory: StartServer) -> None:
    server = await upstream_factory(services=("demo",))
    async with running_bridge(server.target) as bridge:
        doc = await admin_document(bridge)
    check_document(doc)
    paths = {(m, p) for p, m, _ in operations(doc)}
    assert {
        ("get", "/v1/items/{id}"),
        ("patch", "/v1/items/{id}"),
        ("delete", "/v1/items/{id}"),
        ("post", "/v1/items"),
        ("get", "/v1/items"),
        ("post", "/demo.v1.Shop/GetItem"),
        ("get", "/demo.v1.Shop/GetItem"),  # NO_SIDE_EFFECTS
        ("get", "/demo.v1.Shop/ListItems"),  # server streaming
        ("post", "/demo.v1.Shop/AddItems"),
    } <= paths
    # Generic GET only where the bridge allows it.
    assert ("get", "/demo.v1.Shop/CreateItem") not in paths
    assert ("get", "/demo.v1.Shop/AddItems") not in paths


async def test_every_test_proto_gives_a_valid_document(upstream_factory: StartServer) -> None:
    full = await upstream_factory(services=("test", "other", "internal", "rest"))
    bad = await upstream_factory(services=("badrest",))
    for target in (full.target, bad.target):
        async with running_bridge(target) as bridge:
            check_document(await admin_document(bridge))


async def rest_document(server: RunningServer, **overrides: Any) -> dict[str, Any]:
    async with running_bridge(server.target, **overrides) as bridge:
        return await admin_document(bridge)


async def test_rest_bindings_map_path_query_and_body_as_the_bridge_does(
    upstream_factory: StartServer,
) -> None:
    doc = await rest_document(await upstream_factory(services=("rest",)))
    check_document(doc)
    # A multi-segment variable is written out, one parameter per wildcard.
    path, method, op = operation(doc, "bridgetest.v1.RestService.GetResource")
    assert (path, method) == ("/v1/shelves/{name_1}/books/{name_2}", "get")
    names = [p["name"] for p in op["parameters"] if p["in"] == "path"]
    assert names == ["name_1", "name_2"]
    assert "shelves/{name_1}/books/{name_2}" in op["parameters"][0]["description"]
    # A nested field's variable: its name fits str.format-like URL builders.
    path, _, op = operation(doc, "bridgetest.v1.RestService.Get.2")
    assert path == "/v1/shelves/{nested_name}/things/{id}"
    assert op["parameters"][0]["description"] == "Sets `nested.name`."
    # ** may span segments; fixed segments after it stay literal.
    assert operation(doc, "bridgetest.v1.RestService.GetOperation")[0] == (
        "/v1/ops/{name}/status/{id}"
    )
    # Typed path variables keep their field's schema.
    _, _, typed = operation(doc, "bridgetest.v1.RestService.GetTyped")
    by_name = {p["name"]: p["schema"] for p in typed["parameters"] if p["in"] == "path"}
    assert by_name["num"]["type"] == "string" and by_name["num"]["format"] == "int64"
    assert by_name["flag"] == {"type": "boolean"}
    assert by_name["ts"]["format"] == "date-time"
    # Query parameters: every field not in the path, nested with dots, repeated exploded.
    query = {p["name"]: p for p in typed["parameters"] if p["in"] == "query"}
    assert "num" not in query and "nested.name" in query and "id" in query
    assert query["tags"]["schema"]["type"] == "array" and query["tags"]["explode"] is True
    assert query["labels"]["style"] == "deepObject"
    assert query["wInt32"]["schema"]["type"] == "integer"
    # body: "*" takes no query parameters and its body lacks the path's fields.
    _, _, archive = operation(doc, "bridgetest.v1.RestService.Archive")
    assert [p["in"] for p in archive["parameters"]] == ["path"]
    body = archive["requestBody"]["content"]["application/json"]["schema"]
    assert "id" not in body["properties"] and "name" in body["properties"]
    # body: "thing" on PATCH: the body is the Thing without thing.id; the mask is a query param.
    path, method, update = operation(doc, "bridgetest.v1.RestService.Update")
    assert method == "patch"
    body = update["requestBody"]["content"]["application/json"]["schema"]
    assert "id" not in body["properties"] and "num" in body["properties"]
    assert "updateMask" in {p["name"] for p in update["parameters"]}
    assert "Without `updateMask` in the query" in update["description"]
    # response_body: the field alone.
    _, _, tags = operation(doc, "bridgetest.v1.RestService.Get.3")
    assert tags["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"type": "string"},
    }
    # HttpBody: raw bytes of any media type, both ways.
    _, _, upload = operation(doc, "bridgetest.v1.RestService.Upload")
    assert list(upload["requestBody"]["content"]) == ["*/*"]
    _, _, download = operation(doc, "bridgetest.v1.RestService.Download")
    assert list(download["responses"]["200"]["content"]) == ["*/*"]
    # Streams: NDJSON lines or SSE out; NDJSON or a JSON array in.
    _, _, watch = operation(doc, "bridgetest.v1.RestService.Watch")
    assert set(watch["responses"]["200"]["content"]) == {NDJSON, SSE}
    _, _, collect = operation(doc, "bridgetest.v1.RestService.Collect")
    assert set(collect["requestBody"]["content"]) == {NDJSON, "application/json"}
    # A custom HTTP method has no OpenAPI operation: listed as skipped.
    assert any("SEARCH" in line for line in doc["x-grpc-bridge-skipped"])


async def test_schemas_follow_the_proto3_json_mapping(upstream_factory: StartServer) -> None:
    doc = await rest_document(await upstream_factory(services=("test",)))
    kitchen = schema(doc, "bridgetest.v1.Kitchen")
    props = kitchen["properties"]
    assert props["fInt64"]["type"] == "string" and props["fInt32"]["type"] == "integer"
    assert props["fBytes"]["contentEncoding"] == "base64"
    assert props["mStrInt"]["additionalProperties"]["type"] == "integer"
    assert props["mBoolStr"]["propertyNames"] == {"enum": ["true", "false"]}
    assert props["wInt32"]["type"] == ["integer", "null"]
    assert props["wInt64"]["type"] == ["string", "null"]
    # An Any is {"@type": ..., fields}, or {} when nothing is in it.
    assert "@type" in props["any"]["properties"] and "required" not in props["any"]
    assert "type" not in props["val"]  # any JSON value
    assert props["st"]["type"] == "object" and props["lv"]["type"] == "array"
    assert "explicit presence" in props["optInt32"]["description"]
    # oneof: at most one member present.
    one_of = kitchen["oneOf"]
    assert {"required": ["oString"]} in one_of and "not" in one_of[-1]
    assert kitchen["additionalProperties"] is False
    # Recursion is a $ref cycle through components.
    assert props["nested"] == {"$ref": "#/components/schemas/bridgetest.v1.Nested"}


async def test_json_options_change_the_document(upstream_factory: StartServer) -> None:
    server = await upstream_factory(services=("test",))
    doc = await rest_document(
        server,
        json={"use_proto_names": True, "enums_as_ints": True, "ignore_unknown_fields": True},
    )
    kitchen = schema(doc, "bridgetest.v1.Kitchen")
    assert "f_int64" in kitchen["properties"] and "fInt64" not in kitchen["properties"]
    assert "additionalProperties" not in kitchen
    assert schema(doc, "bridgetest.v1.Color")["type"] == "integer"


async def test_yaml_routes_verbs_wildcards_and_nested_path_fields(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory(services=("rest",))
    routes = [
        {
            "method": "bridgetest.v1.RestService/Plain",
            "post": "/v1/plain/{nested.name}:go",
            "body": "*",
            "additional_bindings": [{"get": "/v1/*/plain/{id}"}],
        }
    ]
    doc = await rest_document(server, routes=routes)
    check_document(doc)
    path, method, op = operation(doc, "bridgetest.v1.RestService.Plain")
    assert (path, method) == ("/v1/plain/{nested_name}:go", "post")
    assert "routes[0]" in op["description"]
    # body "*": the path's nested field is left out of the body's nested object only.
    body = op["requestBody"]["content"]["application/json"]["schema"]
    nested = body["properties"]["nested"]
    assert "name" not in nested["properties"] and "$ref" not in nested
    assert "name" in body["properties"]
    # A wildcard outside any variable is a parameter the bridge ignores.
    path, method, op = operation(doc, "bridgetest.v1.RestService.Plain.2")
    assert (path, method) == ("/v1/{segment_1}/plain/{id}", "get")
    assert "ignored by the bridge" in op["parameters"][0]["description"]
