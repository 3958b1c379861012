"""OpenAPI 3.1 documents of what the bridge serves, made from its route table (no protoc step).

:func:`build_document` (document.py) is the entry point; schema.py maps
messages to JSON Schema 2020-12, params.py paths and query strings, bodies.py
request and response bodies, comments.py proto comments. Nothing here knows
about HTTP servers: the admin listener and the ``openapi`` command render it.
"""

from grpc_bridge.openapi.document import build_document
from grpc_bridge.openapi.render import render

__all__ = ["build_document", "render"]
