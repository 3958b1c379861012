"""REST request building and response shaping, through the real route table, without HTTP.

Each case matches a path on a table built from rest.proto's annotations, then
builds the request message from the captures, the query and the body exactly
as the HTTP layer does (``Binding.request.decode``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from bridgetest.v1 import rest_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.discovery.loader import load_descriptor_sets
from grpc_bridge.errors import InvalidArgument
from grpc_bridge.routing.bindings import collect_bindings
from grpc_bridge.routing.plan import UpstreamLimits, plans_for
from grpc_bridge.routing.table import Match, MatchKind, RouteTable
from tests.helpers.descriptors import with_imports, write_set


def make_table(tmp_path_factory: pytest.TempPathFactory, options: JsonOptions) -> RouteTable:
    path = write_set(
        tmp_path_factory.mktemp("sets") / "rest.pb", *with_imports(rest_pb2.DESCRIPTOR)
    )
    schema = load_descriptor_sets("u", [path], include=["*.RestService"])
    plans = plans_for(schema, options, UpstreamLimits(30, 300))
    return RouteTable(plans, collect_bindings(plans, [], options).bindings)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> RouteTable:
    return make_table(tmp_path_factory, JsonOptions())


def decode(
    table: RouteTable,
    method: str,
    path: str,
    body: bytes | dict[str, Any] = b"",
    *,
    query: Sequence[tuple[str, str]] = (),
    content_type: str | None = None,
    ignore_unknown: bool = False,
) -> dict[str, Any]:
    match = table.match(method, path)
    assert match.kind is MatchKind.FULL and match.binding is not None, match
    raw = orjson.dumps(body) if isinstance(body, dict) else body
    message = match.binding.request.decode(
        match.path_params, query, raw, content_type, ignore_unknown_query=ignore_unknown
    )
    return as_dict(message)


def as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def error(table: RouteTable, method: str, path: str, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidArgument) as info:
        decode(table, method, path, *args, **kwargs)
    return info.value.message


# --- path variables -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/things/abc", {"id": "abc"}),
        ("/v1/things/a%2Fb%20c", {"id": "a/b c"}),
        ("/v1/things/caf%C3%A9", {"id": "café"}),
        ("/v1/shelves/s%2F1/things/7", {"id": "7", "nested": {"name": "s/1"}}),
        ("/v1/shelves/1/books/2", {"name": "shelves/1/books/2"}),
        ("/v1/shelves/a%2Fb/books/c%20d", {"name": "shelves/a%2Fb/books/c d"}),
        ("/v1/files/dir/a%2Fb/x%3Ay%20z", {"name": "dir/a%2Fb/x%3Ay z"}),
        ("/v1/ops/a/b/status/9", {"name": "ops/a/b", "id": "9"}),
        (
            "/v1/typed/-12/true/2/2024-01-01T00:00:00Z/18446744073709551615",
            {
                "num": "-12",
                "flag": True,
                "color": "GREEN",
                "ts": "2024-01-01T00:00:00Z",
                "big": "18446744073709551615",
            },
        ),
        (
            "/v1/typed/1/f/BLUE/2024-01-01T00%3A00%3A00.5%2B01%3A00/0",
            {"num": "1", "color": "BLUE", "ts": "2023-12-31T23:00:00.500Z"},
        ),
    ],
)
def test_path_variables(table: RouteTable, path: str, expected: dict[str, Any]) -> None:
    assert decode(table, "GET", path) == expected


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/v1/typed/x/true/RED/2024-01-01T00:00:00Z/0", 'for path variable "num": not an integer'),
        ("/v1/typed/1/yes/RED/2024-01-01T00:00:00Z/0", 'for path variable "flag": not a boolean'),
        ("/v1/typed/1/true/PINK/2024-01-01T00:00:00Z/0", "not a value of bridgetest.v1.Color"),
        ("/v1/typed/1/true/RED/yesterday/0", 'for path variable "ts": not an RFC 3339'),
        ("/v1/typed/1/true/RED/2024-01-01T00:00:00Z/-1", "out of range for uint64"),
        ("/v1/things/a%zz", "path variable \"id\": malformed percent-encoding at '%zz'"),
        ("/v1/things/%FF", 'path variable "id": percent-encoded bytes that are not UTF-8'),
    ],
)
def test_bad_path_values_name_the_variable(table: RouteTable, path: str, problem: str) -> None:
    assert problem in error(table, "GET", path)


# --- query parameters ---------------------------------------------------------------------


def test_every_query_parameter_type(table: RouteTable) -> None:
    query = [
        ("name", "n"),
        ("num", "-9007199254740993"),
        ("flag", "true"),
        ("color", "2"),
        ("nested.name", "x"),
        ("nested.child.value", "7"),
        ("tags", "a"),
        ("tags", "b"),
        ("nums", "1"),
        ("nums", "-2"),
        ("ts", "2024-02-03T04:05:06Z"),
        ("dur", "1.5s"),
        ("w_int32", "5"),
        ("data", "AQID"),
        ("ratio", "-1.5e3"),
        ("labels[k]", "v"),
        ("big", "18446744073709551615"),
        ("colors", "RED"),
        ("colors", "3"),
        ("paths", "a.b,cD"),
    ]
    assert decode(table, "GET", "/v1/things/1", query=query) == {
        "id": "1",
        "name": "n",
        "num": "-9007199254740993",
        "flag": True,
        "color": "GREEN",
        "nested": {"name": "x", "child": {"value": 7}},
        "tags": ["a", "b"],
        "nums": [1, -2],
        "ts": "2024-02-03T04:05:06Z",
        "dur": "1.500s",
        "w_int32": 5,
        "data": "AQID",
        "ratio": -1500.0,
        "labels": {"k": "v"},
        "big": "18446744073709551615",
        "colors": ["RED", "BLUE"],
        "paths": "a.b,cD",
    }


def test_query_names_in_lower_camel_case(table: RouteTable) -> None:
    assert decode(table, "GET", "/v1/things/1", query=[("wInt32", "3")]) == {
        "id": "1",
        "w_int32": 3,
    }


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ([("bogus", "1")], 'unknown query parameter "bogus"'),
        ([("nested.bogus", "1")], 'unknown query parameter "nested.bogus"'),
        ([("num", "1.5")], 'invalid value "1.5" for query parameter "num": not an integer'),
        ([("flag", "yes")], 'for query parameter "flag": not a boolean'),
        ([("color", "PINK")], 'for query parameter "color": not a value of bridgetest.v1.Color'),
        ([("ts", "soon")], 'for query parameter "ts": not an RFC 3339 timestamp'),
        ([("dur", "1h")], 'for query parameter "dur"'),
        ([("data", "!!")], 'for query parameter "data": not valid base64'),
        ([("name", "a"), ("name", "b")], 'query parameter "name" is given more than once'),
        ([("nested", "x")], 'query parameter "nested" names a message field'),
        ([("id", "2")], 'field "id" is bound by the path and cannot be set by a query parameter'),
    ],
)
def test_bad_query_parameters_are_named(
    table: RouteTable, query: list[tuple[str, str]], problem: str
) -> None:
    assert problem in error(table, "GET", "/v1/things/1", query=query)


def test_unknown_query_parameters_can_be_ignored(table: RouteTable) -> None:
    query = [("bogus", "1"), ("nested.bogus", "2"), ("num", "3")]
    assert decode(table, "GET", "/v1/things/1", query=query, ignore_unknown=True) == {
        "id": "1",
        "num": "3",
    }
    # Still a 400: a known field with a bad value, or a path-bound field.
    assert "not an integer" in error(
        table, "GET", "/v1/things/1", query=[("num", "x")], ignore_unknown=True
    )
    assert "bound by the path" in error(
        table, "GET", "/v1/things/1", query=[("id", "x")], ignore_unknown=True
    )


# --- bodies ---------------------------------------------------------------------------------


def test_body_star_takes_every_field(table: RouteTable) -> None:
    body = {"name": "n", "priceCents": None, "wInt32": 4, "nested": {"name": "x"}}
    del body["priceCents"]
    assert decode(table, "POST", "/v1/things", body) == {
        "name": "n",
        "w_int32": 4,
        "nested": {"name": "x"},
    }
    assert decode(table, "PUT", "/v1/things/9", {"name": "n"}) == {"id": "9", "name": "n"}
    assert decode(table, "POST", "/v1/things", b"") == {}


def test_body_star_takes_no_query_parameters(table: RouteTable) -> None:
    problem = error(table, "POST", "/v1/things", {"name": "n"}, query=[("num", "1")])
    assert problem.startswith('unknown query parameter "num": this route (body: "*")')
    assert decode(
        table, "POST", "/v1/things", {"name": "n"}, query=[("num", "1")], ignore_unknown=True
    ) == {"name": "n"}


def test_body_field_with_query_for_the_rest(table: RouteTable) -> None:
    got = decode(
        table, "POST", "/v1/things/5/nested", {"name": "x", "value": 2}, query=[("num", "3")]
    )
    assert got == {"id": "5", "num": "3", "nested": {"name": "x", "value": 2}}


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "problem"),
    [
        ("PUT", "/v1/things/9", {"id": "8"}, (), 'field "id" is bound by the path'),
        ("PUT", "/v1/things/9", {"id": "9"}, (), "cannot be set by the request body"),
        (
            "PATCH",
            "/v1/things/9",
            {"id": "9"},
            (),
            'field "thing.id" is bound by the path and cannot be set by the request body',
        ),
        (
            "POST",
            "/v1/things/5/nested",
            {},
            [("nested.name", "x")],
            'field "nested" is taken from the request body and cannot be set by a query',
        ),
        ("GET", "/v1/things/1", b'{"name": "x"}', (), "this route takes no request body"),
        ("POST", "/v1/things", b"[1]", (), "expected a JSON object for bridgetest.v1.Thing"),
        ("POST", "/v1/things", b"{", (), "malformed JSON"),
        ("POST", "/v1/things", {"bogus": 1}, (), 'unknown field "bogus"'),
        ("POST", "/v1/things/5/nested", {"bogus": 1}, (), 'unknown field "nested.bogus"'),
    ],
)
def test_body_problems(
    table: RouteTable,
    method: str,
    path: str,
    body: dict[str, Any] | bytes,
    query: Sequence[tuple[str, str]],
    problem: str,
) -> None:
    assert problem in error(table, method, path, body, query=query)


def test_null_in_the_body_does_not_collide_with_the_path(table: RouteTable) -> None:
    assert decode(table, "PUT", "/v1/things/9", {"id": None, "name": "n"}) == {
        "id": "9",
        "name": "n",
    }


# --- HttpBody and PATCH masks ----------------------------------------------------------------


def test_http_body_requests_take_raw_bytes(table: RouteTable) -> None:
    assert decode(table, "POST", "/v1/things/7/file", b"\x00\x01{", content_type="image/png") == {
        "id": "7",
        "file": {"content_type": "image/png", "data": "AAF7"},
    }
    assert decode(
        table, "POST", "/v1/echo-body", b"a,b\n", content_type="text/csv; charset=utf-8"
    ) == {"content_type": "text/csv; charset=utf-8", "data": "YSxiCg=="}


@pytest.mark.parametrize(
    ("body", "query", "thing", "mask"),
    [
        ({"name": "n"}, (), {"name": "n"}, ["name"]),
        (
            {"name": "n", "wInt32": 3, "nested": {"child": {"value": 1}, "name": "x"}},
            (),
            {"name": "n", "w_int32": 3, "nested": {"child": {"value": 1}, "name": "x"}},
            ["name", "nested.child.value", "nested.name", "wInt32"],  # FieldMask JSON: camel
        ),
        ({"tags": [], "labels": {"a": "b"}, "nested": {}}, (), None, ["labels", "nested", "tags"]),
        ({"ts": "2024-01-01T00:00:00Z", "nested": None}, (), None, ["nested", "ts"]),
        ({"name": "n", "num": 1}, [("update_mask", "num")], None, ["num"]),
        ({}, (), {}, []),
    ],
)
def test_patch_fills_the_field_mask_from_the_body(
    table: RouteTable,
    body: dict[str, Any],
    query: Sequence[tuple[str, str]],
    thing: dict[str, Any] | None,
    mask: list[str],
) -> None:
    got = decode(table, "PATCH", "/v1/things/1", body, query=query)
    assert got["thing"]["id"] == "1"
    if thing is not None:
        assert got["thing"] == {"id": "1", **thing}
    assert got.get("update_mask", "").split(",") == (mask or [""])


# --- responses -------------------------------------------------------------------------------


def response(table: RouteTable, method: str, path: str, message: Message) -> tuple[bytes, str]:
    match: Match = table.match(method, path)
    assert match.binding is not None
    shape = match.binding.response
    return shape.encode(message), shape.content_type(message) or "application/json"


def test_response_body_picks_one_field(table: RouteTable) -> None:
    thing = rest_pb2.Thing(id="1", tags=["a", "b"], nested={"name": "n"})
    assert response(table, "GET", "/v1/things/1/tags", thing) == (b'["a","b"]', "application/json")
    body, _ = response(table, "GET", "/v1/things/1/nested", thing)
    assert orjson.loads(body) == {"name": "n", "value": 0}
    body, _ = response(table, "GET", "/v1/things/1/nested", rest_pb2.Thing())
    assert orjson.loads(body) == {"name": "", "value": 0}
    body, _ = response(table, "GET", "/v1/things/1/tags", rest_pb2.Thing())
    assert body == b"[]"


def test_response_body_without_unpopulated_fields(tmp_path_factory: pytest.TempPathFactory) -> None:
    table = make_table(tmp_path_factory, JsonOptions(emit_unpopulated=False))
    body, _ = response(table, "GET", "/v1/things/1/tags", rest_pb2.Thing())
    assert body == b"[]"
    body, _ = response(table, "GET", "/v1/things/1/nested", rest_pb2.Thing())
    assert body == b"{}"


def test_http_body_responses_are_raw(table: RouteTable) -> None:
    from google.api import httpbody_pb2

    reply = httpbody_pb2.HttpBody(content_type="text/csv", data=b"a\n")
    assert response(table, "GET", "/v1/things/1/download", reply) == (b"a\n", "text/csv")
    untyped = httpbody_pb2.HttpBody(data=b"\x00")
    assert response(table, "GET", "/v1/things/1/download", untyped) == (
        b"\x00",
        "application/octet-stream",
    )
