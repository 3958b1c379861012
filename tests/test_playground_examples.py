"""Example requests built from input descriptors: shown by introspection, accepted by the bridge."""

from __future__ import annotations

from typing import Any

from bridgetest.v1 import common_pb2, kitchen_pb2

from grpc_bridge.admin.playground_examples import MAX_DEPTH, example_request
from tests.helpers.harness import running_bridge
from tests.helpers.servers import TEST_SERVICE, RunningServer

KITCHEN = kitchen_pb2.Kitchen.DESCRIPTOR


def test_every_field_once_with_its_json_zero_value() -> None:
    example = example_request(KITCHEN)
    assert example["fInt32"] == 0 and example["fDouble"] == 0 and example["fBool"] is False
    # 64-bit integers are JSON strings; enums by name (the zero value's).
    assert example["fInt64"] == example["fUint64"] == example["fSfixed64"] == "0"
    assert example["color"] == "COLOR_UNSPECIFIED"
    assert example["fString"] == example["fBytes"] == ""
    # Lists and maps show one element; map keys are JSON strings of their type.
    assert example["rInt32"] == [0] and example["rColor"] == ["COLOR_UNSPECIFIED"]
    assert example["mStrInt"] == {"key": 0}
    assert example["mBoolStr"] == {"false": ""}
    assert list(example["mIntNested"]) == ["0"]
    # Well-known types in their JSON forms; Any is left out (no type to name).
    assert example["ts"] == "1970-01-01T00:00:00Z" and example["dur"] == "0s"
    assert example["wInt64"] == "0" and example["wString"] == "" and example["mask"] == ""
    assert example["st"] == {} and example["lv"] == [] and example["val"] is None
    assert "any" not in example
    # Only the first member of a oneof (two would be a 400); proto3 optional fields are there.
    assert "oString" in example and "oNested" not in example and "oInt64" not in example
    assert example["optInt32"] == 0 and example["optString"] == ""


def test_recursive_messages_stop_at_their_second_appearance() -> None:
    assert example_request(common_pb2.Nested.DESCRIPTOR) == {"name": "", "value": 0, "child": {}}
    assert example_request(KITCHEN)["nested"] == {"name": "", "value": 0, "child": {}}


def test_depth_is_bounded() -> None:
    def depth(value: Any) -> int:
        if isinstance(value, dict):
            return 1 + max((depth(v) for v in value.values()), default=0)
        if isinstance(value, list):
            return max((depth(v) for v in value), default=0)
        return 0

    assert depth(example_request(KITCHEN)) <= MAX_DEPTH + 2


def test_proto_names_when_the_bridge_uses_them() -> None:
    example = example_request(KITCHEN, proto_names=True)
    assert "f_int64" in example and "fInt64" not in example
    assert example["nested"]["child"] == {}


async def test_introspection_gives_examples_the_bridge_accepts(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target) as b:
        async with b.session.get(f"{b.admin_url}/v1/services/{TEST_SERVICE}") as resp:
            assert resp.status == 200
            described = await resp.json()
        methods = {m["name"]: m for m in described["methods"]}
        assert methods["ServerStream"]["kind"] == "server_stream"
        assert methods["ServerStream"]["example"] == {
            "count": 0,
            "interval": "0s",
            "failCode": 0,
            "failAfter": 0,
            "tag": "",
        }
        echo = methods["Echo"]["example"]
        status, body, _ = await b.post(f"/{TEST_SERVICE}/Echo", echo)
        assert status == 200, body
        # Echo answers its request: every example value survived the round trip (an
        # empty nested message comes back with its own fields filled in).
        nested = {"nested", "rNested", "mIntNested"}
        assert {k: body[k] for k in echo if k not in nested} == {
            k: v for k, v in echo.items() if k not in nested
        }
        assert body["rNested"][0]["child"] == {"name": "", "value": 0}
        for name in ("Sleep", "ServerStream", "EchoMetadata", "Lookup"):
            status, body, _ = await b.post(f"/{TEST_SERVICE}/{name}", methods[name]["example"])
            assert status == 200, (name, body)
        for name in ("ClientStream", "Bidi"):  # request streams take a JSON array
            status, body, _ = await b.post(f"/{TEST_SERVICE}/{name}", [methods[name]["example"]])
            assert status == 200, (name, body)


async def test_examples_follow_use_proto_names(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target, json={"use_proto_names": True}) as b:
        async with b.session.get(f"{b.admin_url}/v1/services/{TEST_SERVICE}") as resp:
            methods = {m["name"]: m for m in (await resp.json())["methods"]}
        example = methods["ServerStream"]["example"]
        assert "fail_after" in example
        status, _, _ = await b.post(f"/{TEST_SERVICE}/ServerStream", example)
        assert status == 200
