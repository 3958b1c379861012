"""REST routes in the configuration: ``grpc-bridge check-config`` / ``serve`` as real processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from bridgetest.v1 import rest_pb2

from tests.helpers.descriptors import with_imports, write_set
from tests.helpers.process import run_cli

GET_SOURCE = "bridgetest.v1.RestService/Get (google.api.http in bridgetest/v1/rest.proto)"


def config(tmp_path: Path, routes: str, *, descriptor_set: Path | None = None) -> Path:
    if descriptor_set is None:
        upstream = "  - name: live\n    targets: ['127.0.0.1:1']\n"
    else:
        # BadRest conflicts with RestService (see test_conflicting_annotations_...).
        upstream = (
            "  - name: static\n    targets: ['127.0.0.1:1']\n    reflection: false\n"
            f"    descriptor_sets: ['{descriptor_set}']\n"
            "    services: {exclude: ['*.BadRest']}\n"
        )
    path = tmp_path / "bridge.yaml"
    path.write_text(f"upstreams:\n{upstream}routes:\n{routes}")
    return path


@pytest.fixture
def rest_set(tmp_path: Path) -> Path:
    return write_set(tmp_path / "rest.pb", *with_imports(rest_pb2.DESCRIPTOR))


async def check(path: Path, command: str = "check-config") -> tuple[int, list[str]]:
    code, _out, err = await run_cli(command, "--config", str(path))
    assert "Traceback" not in err
    return code, [line.removeprefix("grpc-bridge: config: ") for line in err.splitlines()]


async def test_malformed_yaml_routes_fail_without_descriptors(tmp_path: Path) -> None:
    routes = (
        "  - {method: a.v1.S/M, get: '/v1/{id'}\n"
        "  - {method: a.v1.S/M, get: /v1/x, additional_bindings: [{post: 'v1/y'}]}\n"
        "  - {method: a.v1.S/N, get: '/v1/{name}'}\n"
        "  - {method: a.v1.S/O, get: '/v1/{other=*}'}\n"
        "  - {method: a.v1.S/P, custom: {kind: 'NOT A VERB', path: /p}}\n"
        "  - {method: a.v1.S/Q, get: /q, post: /q}\n"
        "  - {method: not-a-method, get: /r}\n"
    )
    code, lines = await check(config(tmp_path, routes))
    assert code == 2
    assert lines == [
        "routes[5]: exactly one of get, put, post, delete, patch, custom is required",
        "routes[6].method: 'not-a-method' is not a full method name like 'pkg.Service/Method'",
    ]
    # Once the models validate, the templates are checked.
    routes = "\n".join(routes.splitlines()[:5]) + "\n"
    code, lines = await check(config(tmp_path, routes))
    assert code == 2
    assert lines == [
        "routes[0].get: invalid path template '/v1/{id': unterminated variable: '{' without '}'",
        "routes[1].additional_bindings[0].post: invalid path template 'v1/y': "
        "it must start with '/'",
        "routes[3]: GET /v1/{other=*} is bound twice: routes[2] and routes[3]",
        "routes[4].custom: 'NOT A VERB' is not an HTTP method (an RFC 9110 token, or '*')",
    ]
    # serve refuses it the same way, before listening.
    code, lines = await check(config(tmp_path, routes), "serve")
    assert code == 2 and len(lines) == 4


async def test_routes_checked_against_descriptor_sets(tmp_path: Path, rest_set: Path) -> None:
    routes = (
        "  - {method: nope.v1.Gone/Away, get: /gone}\n"
        "  - {method: bridgetest.v1.RestService/Plain, get: '/plain/{nope}'}\n"
        "  - {method: bridgetest.v1.RestService/Plain, get: '/v1/things/{name}'}\n"
    )
    code, lines = await check(config(tmp_path, routes, descriptor_set=rest_set))
    assert code == 2
    assert lines == [
        "routes[1]: path variable 'nope': bridgetest.v1.Thing has no field 'nope'",
        "routes[0].method: no upstream serves 'nope.v1.Gone/Away'",
        "routes: GET /v1/things/* is bound twice: routes[2] "
        "(GET /v1/things/{name} -> bridgetest.v1.RestService/Plain) and "
        f"{GET_SOURCE} (GET /v1/things/{{id}} -> bridgetest.v1.RestService/Get)",
    ]


async def test_conflicting_annotations_in_a_descriptor_set(tmp_path: Path) -> None:
    both = write_set(tmp_path / "both.pb", *with_imports(rest_pb2.DESCRIPTOR))
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "upstreams:\n  - targets: ['127.0.0.1:1']\n    reflection: false\n"
        f"    descriptor_sets: ['{both}']\n"
    )
    code, lines = await check(path)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("routes: GET /v1/things/* is bound twice: ")
    assert GET_SOURCE in lines[0]
    assert "bridgetest.v1.BadRest/Clash (google.api.http in bridgetest/v1/rest.proto)" in lines[0]


async def test_valid_routes(tmp_path: Path, rest_set: Path) -> None:
    routes = (
        # Overrides the annotation of its own method: not a conflict.
        "  - {method: bridgetest.v1.RestService/Get, get: '/v1/things/{id}'}\n"
        "  - method: bridgetest.v1.RestService/Plain\n"
        "    upstream: static\n"
        "    post: '/plain/{id}:run'\n"
        "    body: '*'\n"
        "    additional_bindings: [{custom: {kind: '*', path: '/plain/{name=**}'}}]\n"
    )
    code, lines = await check(config(tmp_path, routes, descriptor_set=rest_set))
    assert code == 0, lines
    # Routes on reflection upstreams can only be resolved at discovery.
    code, lines = await check(
        config(tmp_path, "  - {method: some.v1.Later/Call, get: '/later/{id}'}\n")
    )
    assert code == 0, lines
