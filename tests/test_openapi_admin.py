"""Where the OpenAPI document is served: the admin listener and ``grpc-bridge openapi``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import yaml
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

from grpc_bridge.admin.openapi_docs import OPENAPI_CACHE
from grpc_bridge.demo import demo_pb2
from tests.helpers.descriptors import fdp, with_imports
from tests.helpers.harness import running_bridge
from tests.helpers.openapi_tools import admin_document, check_document, operation
from tests.helpers.process import run_cli
from tests.helpers.servers import StartServer


async def test_admin_serves_json_and_yaml_of_one_document(upstream_factory: StartServer) -> None:
    server = await upstream_factory(services=("test",))
    other = await upstream_factory(services=("other",), name="b")
    async with running_bridge(f"a={server.target},b={other.target}") as bridge:
        doc = await admin_document(bridge)
        async with bridge.session.get(f"{bridge.admin_url}/v1/openapi.yaml") as resp:
            assert resp.status == 200
            assert resp.content_type == "application/yaml"
            assert yaml.safe_load(await resp.read()) == doc
        assert doc["servers"] == [
            {
                "url": f"http://127.0.0.1:{bridge.server.proxy_port}",
                "description": "the bridge's proxy listener",
            }
        ]
        # Both upstreams by default; ?upstream= narrows it.
        assert {t["name"] for t in doc["tags"]} >= {
            "bridgetest.v1.TestService",
            "bridgetest.v1.Other",
        }
        only_b = await admin_document(bridge, "?upstream=b")
        # grpc.health.v1.Health of b is shadowed by a's, as in the route table.
        assert {t["name"] for t in only_b["tags"]} == {"bridgetest.v1.Other"}
        check_document(only_b)
        async with bridge.session.get(f"{bridge.admin_url}/v1/openapi.json?upstream=zz") as resp:
            assert resp.status == 404
            assert "no upstream named 'zz'" in (await resp.json())["message"]
        # Never on the proxy port.
        async with bridge.session.get(f"{bridge.url}/v1/openapi.json") as resp:
            assert resp.status == 404


async def test_document_is_built_once_per_route_table_and_again_after_a_refresh(
    upstream_factory: StartServer,
) -> None:
    first = await upstream_factory(services=("test",))
    async with running_bridge(first.target, discovery={"refresh_interval_s": 0}) as bridge:
        app = bridge.server.admin_runner.app
        cache = app[OPENAPI_CACHE]
        await admin_document(bridge)
        await admin_document(bridge, "?upstream=default")
        built = dict(cache.documents)
        await admin_document(bridge)
        assert cache.documents == built and all(cache.documents[k] is built[k] for k in built), (
            "a request rebuilt the document"
        )
        assert cache.table is bridge.server.bridge.routes
        # The upstream now serves something else: a refresh swaps the table, and the document.
        port = first.port
        await first.stop()
        await upstream_factory(services=("other",), port=port)
        bridge.server.bridge.refresh_now()
        async with asyncio.timeout(15):
            while True:
                tags = {t["name"] for t in (await admin_document(bridge))["tags"]}
                if "bridgetest.v1.Other" in tags:
                    break
                await asyncio.sleep(0.05)
        assert "bridgetest.v1.TestService" not in tags


async def test_openapi_command_writes_the_admin_document(upstream_factory: StartServer) -> None:
    server = await upstream_factory(services=("test", "rest"))
    async with running_bridge(server.target) as bridge:
        served = await admin_document(bridge)
    code, out, err = await run_cli("openapi", "--upstream", server.target)
    assert code == 0, err
    printed = orjson.loads(out)
    check_document(printed)
    assert printed["servers"] == [
        {"url": "http://127.0.0.1:8080", "description": "the bridge's proxy listener"}
    ]
    del printed["servers"], served["servers"]
    assert printed == served
    code, out, err = await run_cli(
        "openapi", "--upstream", server.target, "--format", "yaml", "--port", "9999"
    )
    assert code == 0, err
    assert yaml.safe_load(out)["servers"][0]["url"] == "http://127.0.0.1:9999"
    code, out, err = await run_cli("openapi", "--upstream", server.target, "--only", "default")
    assert code == 0, err
    assert orjson.loads(out)["info"]["title"] == "grpc-bridge (default)"
    code, out, err = await run_cli("openapi", "--upstream", server.target, "--only", "zz")
    assert (code, out) == (1, "")
    assert "no upstream named 'zz'" in err


async def test_openapi_command_fails_when_discovery_does_not_finish() -> None:
    code, out, err = await run_cli("openapi", "--upstream", "127.0.0.1:1", "--timeout", "1")
    assert code == 1 and out == ""
    assert "discovery did not finish in 1 s" in err and "default:" in err


def _annotated_set(path: Path) -> Path:
    """The demo's descriptors with comments, field_behavior and deprecated options added."""
    files = [fdp(f) for f in with_imports(demo_pb2.DESCRIPTOR)]
    demo = files[-1]
    item_index = [m.name for m in demo.message_type].index("Item")
    item = demo.message_type[item_index]
    name_index = [f.name for f in item.field].index("name")
    id_index = [f.name for f in item.field].index("id")
    item.field[name_index].options.Extensions[field_behavior_pb2.field_behavior].append(
        field_behavior_pb2.REQUIRED
    )
    item.field[id_index].options.Extensions[field_behavior_pb2.field_behavior].append(
        field_behavior_pb2.OUTPUT_ONLY
    )
    item.field[name_index].options.deprecated = False
    tags_index = [f.name for f in item.field].index("tags")
    item.field[tags_index].options.deprecated = True
    demo.service[0].method[0].options.deprecated = True  # GetItem
    locations: list[tuple[list[int], str]] = [
        ([4, item_index], " Something for sale.\n"),
        ([4, item_index, 2, name_index], " What the shop calls it.\n"),
        ([6, 0], " The demo shop.\n"),
        ([6, 0, 2, 0], " Looks one item up.\n"),
    ]
    for where, text in locations:
        demo.source_code_info.location.add(path=where, span=[0, 0, 0], leading_comments=text)
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
    return path


async def test_comments_field_behavior_and_deprecation_from_descriptor_sets(tmp_path: Path) -> None:
    pb = _annotated_set(tmp_path / "demo.pb")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "upstreams:\n  - targets: ['127.0.0.1:1']\n    reflection: false\n"
        f"    descriptor_sets: ['{pb}']\njson:\n  use_proto_names: true\n"
    )
    code, out, err = await run_cli("openapi", "--config", str(cfg))
    assert code == 0, err
    doc: dict[str, Any] = orjson.loads(out)
    check_document(doc)
    item = doc["components"]["schemas"]["demo.v1.Item"]
    assert item["description"] == "Something for sale."
    assert item["required"] == ["name"]
    assert item["properties"]["name"]["description"] == "What the shop calls it."
    assert item["properties"]["id"]["readOnly"] is True
    assert item["properties"]["tags"]["deprecated"] is True
    assert "price_cents" in item["properties"]  # json.use_proto_names
    assert {"name": "demo.v1.Shop", "description": "The demo shop."} in doc["tags"]
    _, _, get_item = operation(doc, "demo.v1.Shop.GetItem")
    assert get_item["deprecated"] is True
    assert get_item["description"].startswith("Looks one item up.")
