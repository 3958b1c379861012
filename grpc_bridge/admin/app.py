"""The admin listener: health, readiness, metrics, introspection, OpenAPI and the playground.

Never on the proxy port. The playground (admin/playground.py) calls methods
through the proxy listener, whose bound port it is given by the composition root.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from grpc_bridge.admin.errors import admin_errors
from grpc_bridge.admin.openapi_docs import add_openapi
from grpc_bridge.admin.playground import ProxyTarget, add_playground
from grpc_bridge.admin.playground_examples import example_request
from grpc_bridge.admin.upstreams import describe, readiness
from grpc_bridge.bridge import Bridge
from grpc_bridge.pipeline.context import BRIDGE
from grpc_bridge.protocol.select import PROTOCOLS, Protocols
from grpc_bridge.routing.table import generic_methods
from grpc_bridge.status import Code, status_body

REGISTRY = web.AppKey("registry", CollectorRegistry)
PROXY_PORT: web.AppKey[Callable[[], int]] = web.AppKey("proxy_port")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, report = readiness(request.app[BRIDGE])
    return _json(report, 200 if ready else 503)


async def upstreams(request: web.Request) -> web.Response:
    """Targets, addresses, channel states, services, last refresh and health of each upstream."""
    states = request.app[BRIDGE].upstreams.values()
    return _json({"upstreams": [describe(state) for state in states]})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def services(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    out = []
    for state in bridge.upstreams.values():
        for name in state.schema.service_names if state.schema else ():
            out.append({"name": name, "upstream": state.name})
    # The wire protocols the proxy speaks, and its port (the playground's snippets call it).
    protocols = request.app[PROTOCOLS]
    return _json(
        {"services": out, "protocols": protocols.names(), "proxy_port": request.app[PROXY_PORT]()}
    )


async def service(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    wanted = request.match_info["service"]
    routes = bridge.routes
    for plan in routes.plans:
        if plan.info.service == wanted:
            break
    else:
        return web.Response(
            body=status_body(Code.NOT_FOUND, f"no service named {wanted!r}"),
            status=404,
            content_type="application/json",
        )
    proto_names = bridge.settings.json_.use_proto_names
    protocols = request.app[PROTOCOLS]
    methods = [
        {
            "name": p.info.name,
            "path": p.info.path,
            "kind": p.info.kind.value,
            "http_methods": list(generic_methods(p)),
            # The wire protocols that can call it (gRPC-Web has no request streams).
            "protocols": protocols.names_for(p.info.kind),
            # REST bindings (google.api.http annotations and YAML routes).
            "bindings": [b.describe() for b in routes.bindings_for(p.info.path)],
            "request": describe_message(p.info.input_type),
            "response": describe_message(p.info.output_type),
            # One request message with every field, for the playground to start from.
            "example": example_request(p.info.input_type, proto_names=proto_names),
            # How each protocol's clients call it ("connect", "grpc_web": protocol/*.py).
            **protocols.describe(p.info),
        }
        for p in routes.plans
        if p.info.service == wanted
    ]
    return _json(
        {
            "name": wanted,
            "upstream": plan.upstream,
            # Where the service is declared, for generated clients (connect-es, grpc-web).
            "proto_file": plan.info.descriptor.containing_service.file.name,
            "methods": methods,
        }
    )


def describe_message(descriptor: Descriptor) -> dict[str, Any]:
    """A shallow schema: field names, JSON names and types (nested types by name)."""
    fields = []
    for f in descriptor.fields:
        entry: dict[str, Any] = {
            "name": f.name,
            "json_name": f.json_name,
            "number": f.number,
            "type": _type_name(f),
        }
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            entry["map"] = {
                "key": _type_name(f.message_type.fields_by_name["key"]),
                "value": _type_name(f.message_type.fields_by_name["value"]),
            }
        elif _is_repeated(f):
            entry["repeated"] = True
        oneof = f.containing_oneof
        if oneof is not None:
            # proto3 `optional` is a synthetic one-field oneof named after the field.
            if len(oneof.fields) == 1 and oneof.name == f"_{f.name}":
                entry["optional"] = True
            else:
                entry["oneof"] = oneof.name
        fields.append(entry)
    return {"type": descriptor.full_name, "fields": fields}


def _is_repeated(f: FieldDescriptor) -> bool:
    return f.is_repeated


def _type_name(f: FieldDescriptor) -> str:
    if f.message_type is not None:
        return str(f.message_type.full_name)
    if f.enum_type is not None:
        return str(f.enum_type.full_name)
    return _SCALARS.get(f.type, "unknown")


_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}


def build_admin_app(
    bridge: Bridge,
    registry: CollectorRegistry,
    proxy_port: Callable[[], int],
    protocols: Protocols,
) -> web.Application:
    """``proxy_port`` gives the proxy listener's bound port once it is listening;
    ``protocols`` are the proxy's (listed by the introspection endpoints)."""
    # A playground call whose browser went away is cancelled, and the proxied call with it.
    app = web.Application(middlewares=[admin_errors], handler_args={"handler_cancellation": True})
    app[BRIDGE] = bridge
    app[REGISTRY] = registry
    app[PROTOCOLS] = protocols
    app[PROXY_PORT] = proxy_port
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/upstreams", upstreams)
    app.router.add_get("/v1/services", services)
    app.router.add_get("/v1/services/{service}", service)
    add_openapi(app, proxy_port)
    if bridge.settings.admin.playground:
        add_playground(app, ProxyTarget.of(bridge.settings, proxy_port))
    return app
