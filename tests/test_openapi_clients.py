"""Tools that only read the OpenAPI document use the demo: a fuzzer and a generated client.

- schemathesis (its CLI, pinned in pyproject.toml) generates requests for every
  operation from the document and checks each answer: no 5xx, a documented
  status and Content-Type, a body that matches its schema (NDJSON streams line
  by line, with the check in tests/helpers/schemathesis_hooks.py);
- openapi-python-client generates a Python package from the document, which is
  imported and used against the demo's REST routes.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.harness import running_bridge
from tests.helpers.process import running_demo
from tests.helpers.servers import StartServer

BIN = Path(sys.executable).parent
ROOT = Path(__file__).parent.parent


async def _run(
    *argv: str, cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body


async def _schemathesis(admin: str, proxy: str, cwd: Path, *options: str) -> str:
    """Run schemathesis from the admin listener's document against the proxy; its output."""
    code, out = await _run(
        str(BIN / "st"),
        "run",
        f"{admin}/v1/openapi.json",
        *("--url", proxy),
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,ndjson_lines_conform",
        *("--seed", "1", "--workers", "2", "--request-timeout", "10"),
        # Streams end: Health/Watch never would, and ListItems pauses `interval`
        # (any Duration the fuzzer picks) between items.
        *("-H", "Grpc-Timeout: 2S"),
        "--no-color",
        *options,
        cwd=cwd,
        timeout=100,
        # ndjson_lines_conform validates streamed responses line by line.
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.helpers.schemathesis_hooks",
        },
    )
    assert code == 0, out
    return out


def _tested(out: str) -> int:
    """How many operations schemathesis tested (an operation it could not read is not)."""
    match = re.search(r"Tested: (\d+)", out)
    assert match and "Errored:" not in out, out
    return int(match.group(1))


@pytest.mark.long
@pytest.mark.timeout(110)
async def test_schemathesis_finds_no_server_error_or_schema_violation_in_the_demo(
    tmp_path: Path,
) -> None:
    async with running_demo() as ports:
        port, admin = ports["proxy"], ports["admin"]
        out = await _schemathesis(
            f"http://127.0.0.1:{admin}",
            f"http://127.0.0.1:{port}",
            tmp_path,
            *("--phases", "coverage,fuzzing", "--max-examples", "8"),
        )
    assert _tested(out) >= 16, out  # every operation of Shop and Health


@pytest.mark.long
@pytest.mark.timeout(110)
async def test_schemathesis_finds_nothing_on_the_rest_bindings_of_the_test_protos(
    tmp_path: Path, upstream_factory: StartServer
) -> None:
    # Multi-segment and ** variables, body "*" and body fields, HttpBody, response_body,
    # streams on REST paths. No health service: grpcio's asyncio one leaves List unimplemented.
    server = await upstream_factory(services=("rest",), health=False)
    async with running_bridge(server.target) as bridge:
        out = await _schemathesis(
            bridge.admin_url,
            bridge.url,
            tmp_path,
            *("--phases", "fuzzing", "--max-examples", "10"),
        )
    assert _tested(out) >= 40, out


@pytest.mark.timeout(90)
async def test_a_client_generated_from_the_document_calls_the_demo_rest_routes(
    tmp_path: Path,
) -> None:
    async with running_demo() as ports:
        port, admin = ports["proxy"], ports["admin"]
        doc = tmp_path / "openapi.json"
        doc.write_bytes(
            await asyncio.to_thread(_fetch, f"http://127.0.0.1:{admin}/v1/openapi.json")
        )
        config = tmp_path / "config.yaml"
        config.write_text("post_hooks: []\n")  # no formatter run on the generated code
        code, out = await _run(
            str(BIN / "openapi-python-client"),
            "generate",
            *("--path", str(doc), "--meta", "none", "--config", str(config)),
            *("--output-path", str(tmp_path / "demo_client")),
            cwd=tmp_path,
            timeout=60,
        )
        assert code == 0, out
        assert (tmp_path / "demo_client" / "client.py").exists(), out
        sys.path.insert(0, str(tmp_path))
        try:
            await asyncio.to_thread(_use_client, f"http://127.0.0.1:{port}")
        finally:
            sys.path.remove(str(tmp_path))
            for name in [m for m in sys.modules if m.split(".")[0] == "demo_client"]:
                del sys.modules[name]


def _use_client(base_url: str) -> None:
    """List, get, create, update, delete through the generated package only."""
    pkg = "demo_client.api.demo_v_1_shop"
    client_module: Any = importlib.import_module("demo_client")
    models: Any = importlib.import_module("demo_client.models")
    get_item: Any = importlib.import_module(f"{pkg}.demo_v_1_shop_get_item")
    create: Any = importlib.import_module(f"{pkg}.demo_v_1_shop_create_item")
    update: Any = importlib.import_module(f"{pkg}.demo_v_1_shop_update_item")
    delete: Any = importlib.import_module(f"{pkg}.demo_v_1_shop_delete_item")
    list_items: Any = importlib.import_module(f"{pkg}.demo_v_1_shop_list_items")
    generic_get: Any = importlib.import_module(f"{pkg}.demo_v_1_shop_get_item_grpc_get")

    with client_module.Client(base_url=base_url) as client:
        first = get_item.sync("1", client=client)
        assert isinstance(first, models.Item) and first.id == "1" and first.name
        item = models.Item(name="Kite", category=models.Category.GAMES, price_cents="1500")
        created = create.sync(client=client, body=item)
        assert isinstance(created, models.Item) and created.name == "Kite", created
        assert created.category == models.Category.GAMES and created.created_at.year >= 2024
        body = models.DemoV1ShopUpdateItemBody(price_cents="1999")
        updated = update.sync(created.id, client=client, body=body)
        assert updated.price_cents == "1999" and updated.name == "Kite", updated
        assert generic_get.sync(client=client, id=created.id).price_cents == "1999"
        listed = list_items.sync_detailed(client=client, category=models.Category.GAMES)
        assert listed.status_code == 200
        assert b'"name":"Kite"' in listed.content
        assert delete.sync_detailed(created.id, client=client).status_code == 200
        missing = get_item.sync_detailed(created.id, client=client)
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.Status) and missing.parsed.code == 5
