"""A schemathesis check for NDJSON responses, loaded with ``SCHEMATHESIS_HOOKS``.

schemathesis validates JSON bodies only, and an NDJSON stream is many JSON
documents: the document gives the schema of one line (OpenAPI 3.1 has no
``itemSchema``), so this check validates every line against it.
"""

from __future__ import annotations

from typing import Any

import orjson
import schemathesis
from jsonschema import Draft202012Validator

NDJSON = "application/x-ndjson"


@schemathesis.check
def ndjson_lines_conform(ctx: Any, response: Any, case: Any) -> bool | None:
    """Each line of an NDJSON response matches the document's schema for one line."""
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if not content_type.startswith(NDJSON):
        return None
    documented = case.operation.definition.raw["responses"].get(str(response.status_code), {})
    line_schema = documented.get("content", {}).get(NDJSON, {}).get("schema")
    if line_schema is None:
        raise AssertionError(f"NDJSON is not documented for status {response.status_code}")
    # The line schema's $refs point into the document's components.
    root = {**line_schema, "components": case.operation.schema.raw_schema["components"]}
    validator = Draft202012Validator(root)
    for number, line in enumerate(response.content.splitlines(), 1):
        if not line.strip():
            continue
        errors = sorted(validator.iter_errors(orjson.loads(line)), key=str)
        if errors:
            raise AssertionError(f"NDJSON line {number} breaks its schema: {errors[0].message}")
    return True
