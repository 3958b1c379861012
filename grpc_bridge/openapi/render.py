"""A document as JSON or YAML bytes."""

from __future__ import annotations

from typing import Any, Literal

import orjson
import yaml

__all__ = ["Format", "render"]

Format = Literal["json", "yaml"]


def render(document: dict[str, Any], fmt: Format) -> bytes:
    if fmt == "yaml":
        # Keys as built (openapi, info, paths ... in the usual order), not sorted.
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
        return text.encode()
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
