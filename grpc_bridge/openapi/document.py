"""The OpenAPI 3.1 document of a route table: every REST binding and every generic route.

Built from what the bridge serves with (one route table, its method plans
and REST bindings), never from a second reading of the protos, so the
document says what the bridge does:

- REST bindings first, as the route table matches them; then each method's
  generic route, ``POST /pkg.Service/Method`` and ``GET`` where the bridge
  allows it (``NO_SIDE_EFFECTS`` and server-streaming methods), its fields
  from the query string;
- bindings with an HTTP method OpenAPI can't name (``custom`` kinds, ``*``)
  are listed under ``x-grpc-bridge-skipped``, as are paths OpenAPI would take
  for one another (``/v1/{a}`` beside ``/v1/{b=**}``);
- every operation lists the error statuses the bridge can answer, each the
  shared ``google.rpc.Status`` body (status.py's table, plus the bridge's own
  413, 415 and 431).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from grpc_bridge import __version__
from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.openapi.bodies import STATUS, request_body, response_content
from grpc_bridge.openapi.comments import comments_by_name
from grpc_bridge.openapi.params import OpenApiPath, openapi_path, query_parameters
from grpc_bridge.openapi.schema import SchemaBuilder, ref
from grpc_bridge.routing.bindings import Binding
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.routing.table import RouteTable, generic_methods

__all__ = ["build_document"]

_OPENAPI_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

#: HTTP status -> what produces it (status.py maps gRPC codes; errors.py adds the rest).
_ERRORS: dict[str, str] = {
    "400": "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE: a malformed request "
    "(JSON, field, query parameter, path variable, header) or the upstream's answer",
    "401": "UNAUTHENTICATED (from the upstream)",
    "403": "PERMISSION_DENIED (from the upstream)",
    "404": "NOT_FOUND (from the upstream)",
    "409": "ALREADY_EXISTS or ABORTED (from the upstream)",
    "413": "The request body is over limits.max_request_bytes",
    "415": "The Content-Type is not JSON (or NDJSON, for request streams)",
    "429": "RESOURCE_EXHAUSTED (from the upstream)",
    "431": "Forwarded metadata over limits.max_metadata_bytes",
    "499": "CANCELLED (from the upstream)",
    "500": "INTERNAL, UNKNOWN or DATA_LOSS",
    "501": "UNIMPLEMENTED",
    "503": "UNAVAILABLE: the upstream is down or not discovered yet, or the bridge is stopping",
    "504": "DEADLINE_EXCEEDED (the call's deadline, or a stream idle too long)",
}
_BODY_ERRORS = frozenset({"413", "415"})


def build_document(
    table: RouteTable,
    options: JsonOptions,
    *,
    upstream: str | None = None,
    files: Iterable[Mapping[str, bytes]] = (),
    server_url: str | None = None,
    title: str = "grpc-bridge",
) -> dict[str, Any]:
    """The document for every upstream in ``table``, or only ``upstream``'s methods.

    ``files`` are the upstreams' descriptor files as received (for comments).
    """
    return _Builder(options, comments_by_name(files)).build(table, upstream, server_url, title)


class _Builder:
    def __init__(self, options: JsonOptions, comments: Mapping[str, str]) -> None:
        self.options = options
        self.comments = comments
        self.schemas = SchemaBuilder(options, comments)
        self.paths: dict[str, dict[str, Any]] = {}
        #: Path shape -> the path item's path (its parameter names win).
        self.shapes: dict[str, str] = {}
        self.operation_ids: set[str] = set()
        self.skipped: list[str] = []
        #: Path -> its path parameters' names, in path order.
        self.param_names: dict[str, list[str]] = {}

    def build(
        self, table: RouteTable, upstream: str | None, server_url: str | None, title: str
    ) -> dict[str, Any]:
        plans = [p for p in table.plans if upstream is None or p.upstream == upstream]
        bindings = [b for b in table.bindings if upstream is None or b.plan.upstream == upstream]
        numbered: dict[str, int] = {}
        for binding in bindings:
            n = numbered[binding.plan.info.path] = numbered.get(binding.plan.info.path, 0) + 1
            self._binding(binding, n)
        for plan in plans:
            path = quote(plan.info.path, safe="/-._~!$&'()*+,;=:@")
            for method in generic_methods(plan):
                self._add(
                    plan, None, OpenApiPath(path, path), method.lower(), f"grpc_{method.lower()}"
                )
        self.schemas.components.setdefault(STATUS, _status_schema())
        doc: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {
                "title": title + (f" ({upstream})" if upstream else ""),
                "version": __version__,
                "description": self._info(upstream, plans),
            },
        }
        if server_url:
            doc["servers"] = [{"url": server_url, "description": "the bridge's proxy listener"}]
        doc["tags"] = [
            {"name": s, **({"description": self.comments[s]} if s in self.comments else {})}
            for s in dict.fromkeys(p.info.service for p in plans)
        ]
        doc["paths"] = self.paths
        doc["components"] = {
            "schemas": dict(sorted(self.schemas.components.items())),
            "responses": {
                f"Error{code}": {
                    "description": text,
                    "content": {"application/json": {"schema": ref(STATUS)}},
                }
                for code, text in _ERRORS.items()
            },
        }
        if self.skipped:
            doc["x-grpc-bridge-skipped"] = self.skipped
        return doc

    def _info(self, upstream: str | None, plans: list[MethodPlan]) -> str:
        o = self.options
        names = "proto field names" if o.use_proto_names else "lowerCamel JSON names"
        enums = "numbers" if o.enums_as_ints else "names"
        ups = sorted({p.upstream for p in plans})
        return (
            f"HTTP/JSON API of gRPC upstream(s) {', '.join(ups) or '(none discovered)'}, "
            f"served by grpc-bridge. Proto3 JSON mapping: {names}, enums as {enums}, "
            "64-bit integers as strings; fields without presence "
            + ("always in responses" if o.emit_unpopulated else "left out when at their default")
            + ". Requests also accept the other field-name spelling and enums by name or number."
        )

    def _binding(self, binding: Binding, n: int) -> None:
        method = binding.http_method.lower()
        if method not in _OPENAPI_METHODS:
            self.skipped.append(
                f"{binding} ({binding.source}): OpenAPI has no HTTP method {binding.http_method!r}"
            )
            return
        where = openapi_path(binding.template, binding.request, self.schemas)
        self._add(binding.plan, binding, where, method, "" if n == 1 else str(n))

    def _add(
        self,
        plan: MethodPlan,
        binding: Binding | None,
        where: OpenApiPath,
        method: str,
        suffix: str,
    ) -> None:
        label = f"{method.upper()} {where.path} -> {plan.info.full_name}"
        canonical = self.shapes.setdefault(where.shape, where.path)
        params = [dict(p) for p in where.parameters]
        if canonical != where.path:
            # One path item per shape: this operation takes the item's parameter names.
            names = self.param_names.get(canonical, [])
            for param, name in zip(params, names, strict=False):
                param["name"] = name
        item = self.paths.setdefault(canonical, {})
        if method in item:
            self.skipped.append(f"{label}: shadowed by {item[method]['operationId']}")
            return
        self.param_names.setdefault(canonical, [p["name"] for p in params])
        info = plan.info
        if binding is None:
            bound: list[str] = []
            body_field = None
            takes_query = method == "get"
        else:
            bound = [f.name for f in binding.request.path_fields]
            body_field = binding.request.body
            takes_query = body_field != "*"
        query = (
            query_parameters(info.input_type, self.schemas, bound=bound, body=body_field)
            if takes_query
            else []
        )
        body = (
            None
            if binding is None and method == "get"
            else request_body(plan, binding, self.schemas)
        )
        content, described = response_content(plan, binding, self.schemas)
        responses: dict[str, Any] = {"200": {"description": described, "content": content}}
        for code in _ERRORS:
            if code in _BODY_ERRORS and body is None:
                continue
            responses[code] = {"$ref": f"#/components/responses/Error{code}"}
        operation: dict[str, Any] = {
            "operationId": self._operation_id(info.full_name.replace("/", "."), suffix),
            "tags": [info.service],
            "summary": info.full_name + ("" if binding is None else f" ({binding.template.text})"),
            "description": self._describe(plan, binding),
            "parameters": params + query,
        }
        if body is not None:
            operation["requestBody"] = body
        operation["responses"] = responses
        operation["x-grpc-method"] = info.full_name
        operation["x-grpc-kind"] = info.kind.value
        if info.descriptor.GetOptions().deprecated:
            operation["deprecated"] = True
        if not operation["parameters"]:
            del operation["parameters"]
        item[method] = operation

    def _describe(self, plan: MethodPlan, binding: Binding | None) -> str:
        info = plan.info
        text = self.comments.get(f"{info.service}.{info.name}", "")
        origin = (
            f"Generic route of `{info.full_name}`"
            if binding is None
            else f"REST binding `{binding.http_method} {binding.template.text}` "
            f"from {binding.source}"
        )
        lines = [text, f"{origin} ({info.kind.value.replace('_', '-')} gRPC method)."]
        if binding is not None and binding.request.body not in (None, "*"):
            lines.append(f"The body sets the field `{binding.request.body}`.")
        mask = None if binding is None else binding.request.patch_mask
        if mask is not None:
            mask = self.schemas.name_of(info.input_type.fields_by_name[mask])
            lines.append(
                f"Without `{mask}` in the query, the bridge fills it from the body's JSON keys "
                "(only the fields sent are updated)."
            )
        return "\n\n".join(line for line in lines if line)

    def _operation_id(self, base: str, suffix: str) -> str:
        candidate = f"{base}.{suffix}" if suffix else base
        n = 1
        while candidate in self.operation_ids:
            n += 1
            candidate = f"{base}.{suffix or 'op'}{n}"
        self.operation_ids.add(candidate)
        return candidate


def _status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Status",
        "description": "The error body of every failed call (google.rpc.Status in JSON).",
        "properties": {
            "code": {
                "type": "integer",
                "format": "int32",
                "description": "The gRPC status code (3 INVALID_ARGUMENT, 5 NOT_FOUND, ...)",
            },
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"@type": {"type": "string"}},
                    "required": ["@type"],
                },
            },
        },
        "required": ["code", "message", "details"],
    }
