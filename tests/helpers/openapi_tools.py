"""Helpers for the OpenAPI tests: validation and the documents of running bridges."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from openapi_spec_validator import validate

from tests.helpers.harness import RunningBridge


def check_document(doc: dict[str, Any]) -> None:
    """Valid OpenAPI 3.1 (openapi-spec-validator), and every operation carries the Status errors."""
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # type: ignore[arg-type]
    for path, method, op in operations(doc):
        assert op["responses"]["500"] == {"$ref": "#/components/responses/Error500"}, (path, method)
    assert "google.rpc.Status" in doc["components"]["schemas"]


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def operation(doc: dict[str, Any], operation_id: str) -> tuple[str, str, dict[str, Any]]:
    for path, method, op in operations(doc):
        if op["operationId"] == operation_id:
            return path, method, op
    raise AssertionError(f"no operation {operation_id}")


async def admin_document(bridge: RunningBridge, query: str = "") -> dict[str, Any]:
    async with bridge.session.get(f"{bridge.admin_url}/v1/openapi.json{query}") as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        doc: dict[str, Any] = orjson.loads(await resp.read())
        return doc
