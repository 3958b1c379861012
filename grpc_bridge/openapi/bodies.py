"""Request and response bodies of one operation, in the media types the bridge really serves.

- JSON bodies (``application/json``); for a REST binding, the body is the
  whole message (``body: "*"``) or one field (``body: "item"``), without the
  fields the path sets (the bridge refuses them in the body: 400);
- ``google.api.HttpBody`` as raw bytes of any media type (REST bindings;
  the generic route carries it as JSON);
- request streams (client-streaming, bidi): NDJSON, one message per line, or a
  JSON array of messages (a single object is a stream of one);
- response streams: NDJSON lines ``{"result": ...}`` / ``{"error": Status}``,
  or Server-Sent Events for ``Accept: text/event-stream``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from grpc_bridge.openapi.schema import REF_PREFIX, SchemaBuilder, ref
from grpc_bridge.routing.bindings import Binding
from grpc_bridge.routing.plan import MethodPlan

__all__ = ["STATUS", "request_body", "response_content"]

STATUS = "google.rpc.Status"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
_RAW: dict[str, Any] = {"*/*": {"schema": {}}}


def request_body(
    plan: MethodPlan, binding: Binding | None, schemas: SchemaBuilder
) -> dict[str, Any] | None:
    """The Request Body Object, or None when the route takes no body."""
    streams = plan.info.kind.client_streams
    message = plan.info.input_type
    if binding is None:
        return _json_body(schemas.message(message), streams, required=False)
    rest = binding.request
    if rest.body is None:
        return None
    if rest.raw_body:
        return {"required": False, "content": dict(_RAW), "description": "Raw bytes (HttpBody)"}
    chains = [[link for link in f.chain] for f in rest.path_fields]
    if rest.body == "*":
        schema = _without(schemas.message(message), chains, schemas)
    else:
        body_field = message.fields_by_name[rest.body]
        inner = [c[1:] for c in chains if c[0] is body_field and len(c) > 1]
        schema = schemas.field(body_field)
        if inner and body_field.message_type is not None and not body_field.is_repeated:
            schema = _without(schema, inner, schemas)
    return _json_body(schema, streams, required=False)


def _json_body(schema: dict[str, Any], streams: bool, *, required: bool) -> dict[str, Any]:
    if not streams:
        return {"required": required, "content": {"application/json": {"schema": schema}}}
    return {
        "required": required,
        "description": "The request stream: NDJSON (one message per line, sent upstream as "
        "each line arrives) or a JSON array of messages.",
        "content": {
            NDJSON: {"schema": schema},
            "application/json": {"schema": {"oneOf": [{"type": "array", "items": schema}, schema]}},
        },
    }


def response_content(
    plan: MethodPlan, binding: Binding | None, schemas: SchemaBuilder
) -> tuple[dict[str, Any], str]:
    """The success response's content map, and its description."""
    output = plan.info.output_type
    field: FieldDescriptor | None = None
    if binding is not None and binding.response.response_body:
        field = output.fields_by_name[binding.response.response_body]
    if plan.info.kind.server_streams:
        item = schemas.field(field) if field is not None else schemas.message(output)
        line = {
            "type": "object",
            "description": 'One line per message: {"result": message}; a failure after the '
            'first message ends the stream with {"error": Status}.',
            "properties": {"result": item, "error": ref(STATUS)},
            "oneOf": [{"required": ["result"]}, {"required": ["error"]}],
        }
        sse = {
            "type": "string",
            "description": "Server-Sent Events: `event: message` with each message as data, "
            "then `event: end` with the final Status (code 0 on success).",
        }
        return (
            {NDJSON: {"schema": line}, SSE: {"schema": sse}},
            "The response stream: NDJSON by default, SSE for Accept: text/event-stream",
        )
    if binding is not None and binding.response.raw_body:
        return dict(_RAW), "Raw bytes with the HttpBody's content_type"
    schema = schemas.field(field) if field is not None else schemas.message(output)
    return {"application/json": {"schema": schema}}, "The response message"


def _without(
    schema: dict[str, Any], chains: Sequence[Sequence[FieldDescriptor]], schemas: SchemaBuilder
) -> dict[str, Any]:
    """``schema`` (a message's) without the fields at ``chains``, inlined where it changes."""
    if not chains:
        return schema
    target = _resolve(schema, schemas)
    props = target.setdefault("properties", {})
    for first in {c[0].name: c[0] for c in chains}.values():
        name = schemas.name_of(first)
        rest = [c[1:] for c in chains if c[0] is first and len(c) > 1]
        if not rest:
            props.pop(name, None)
            if "required" in target:
                target["required"] = [r for r in target["required"] if r != name]
                if not target["required"]:
                    del target["required"]
        elif name in props:
            props[name] = _without(props[name], rest, schemas)
    return target


def _resolve(schema: dict[str, Any], schemas: SchemaBuilder) -> dict[str, Any]:
    """A copy of the schema a ``$ref`` points at (its siblings kept), to edit."""
    target = schema.get("$ref")
    if not isinstance(target, str) or not target.startswith(REF_PREFIX):
        return copy.deepcopy(schema)
    resolved = copy.deepcopy(schemas.components[target[len(REF_PREFIX) :]])
    resolved.update({k: v for k, v in schema.items() if k != "$ref"})
    # Not the component's title: code generators would name this other shape after it.
    resolved.pop("title", None)
    return resolved
