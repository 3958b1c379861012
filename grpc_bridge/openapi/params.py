"""Request fields in a URL: path templates and query parameters, as the bridge maps them.

- A path template becomes an OpenAPI path: literals stay, each one-segment
  variable is a parameter named by its field path, dots as underscores
  (``{item_id}``, described as setting ``item.id``); a
  multi-segment variable (``{name=shelves/*/books/*}``) is written out as its
  segments, one parameter per wildcard (``shelves/{name_1}/books/{name_2}``),
  since an OpenAPI parameter can't hold a ``/``; the bridge sets the field to
  the matched segments joined with ``/``. A ``**`` becomes one parameter
  whose value may hold several segments.
- Query parameters follow :mod:`grpc_bridge.codec.query`: every field not set
  by the path or the body, nested fields joined with dots, repeated fields by
  repeating the key (``form``, exploded), maps of scalars by key in brackets
  (``deepObject``), Struct / ListValue / Any / Value as JSON text.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from grpc_bridge.codec.rest import RestRequest
from grpc_bridge.codec.validate_plans import WRAPPERS_FILE
from grpc_bridge.openapi.schema import SchemaBuilder, is_map
from grpc_bridge.routing.template import PathTemplate, SegmentKind, Variable

__all__ = ["OpenApiPath", "openapi_path", "query_parameters"]

# RFC 3986 pchars a literal may keep unescaped in an OpenAPI path.
_SAFE = "-._~!$&'()*+,;=:@"
_JSON_TEXT = frozenset(
    {
        "google.protobuf.Struct",
        "google.protobuf.ListValue",
        "google.protobuf.Any",
        "google.protobuf.Value",
    }
)
_STRING_FORMS = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
_MAX_QUERY_DEPTH = 8
# Values a URL client would fold away (dot segments) or that can't fill a segment.
_NOT_A_SEGMENT: dict[str, Any] = {"minLength": 1, "not": {"enum": [".", ".."]}}


@dataclass
class OpenApiPath:
    #: The OpenAPI path, e.g. ``/v1/shelves/{name_1}/books/{name_2}``.
    path: str
    #: The path with every parameter as ``{}``: two paths the same here are one path item.
    shape: str
    #: Path parameters in path order (OpenAPI Parameter Objects).
    parameters: list[dict[str, Any]] = field(default_factory=list)


def openapi_path(template: PathTemplate, rest: RestRequest, schemas: SchemaBuilder) -> OpenApiPath:
    fields = {f.name: f for f in rest.path_fields}
    parts: list[str] = []
    params: list[dict[str, Any]] = []
    by_start = {v.start: v for v in template.variables}
    index, wildcard = 0, 0
    segments = template.segments
    while index < len(segments):
        variable = by_start.get(index)
        if variable is None:
            segment = segments[index]
            if segment.kind is SegmentKind.LITERAL:
                parts.append(quote(segment.value, safe=_SAFE))
            else:
                wildcard += 1
                name = f"segment_{wildcard}"
                parts.append("{" + name + "}")
                params.append(_wildcard_param(name, segment.kind, "ignored by the bridge"))
            index += 1
            continue
        path_field = fields[variable.name]
        leaf = path_field.chain[-1]
        if variable.single:
            name = _identifier(variable)
            parts.append("{" + name + "}")
            schema = schemas.single(leaf)
            if schema.get("type") == "string" and "format" not in schema:
                schema = {**schema, **_NOT_A_SEGMENT}
            params.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": f"Sets `{variable.name}`.",
                    "schema": schema,
                }
            )
        else:
            holes = [s for s in variable.segments if s.kind is not SegmentKind.LITERAL]
            written: list[str] = []
            k = 0
            for segment in variable.segments:
                if segment.kind is SegmentKind.LITERAL:
                    written.append(quote(segment.value, safe=_SAFE))
                    continue
                k += 1
                name = _identifier(variable) + ("" if len(holes) == 1 else f"_{k}")
                written.append("{" + name + "}")
                params.append(_wildcard_param(name, segment.kind, f"part of `{variable.name}`"))
            parts.extend(written)
            note = (
                f" The bridge sets `{variable.name}` to `{'/'.join(written)}` "
                "(the matched segments joined with `/`)."
            )
            for param in params[len(params) - len(holes) :]:
                param["description"] += note
        index = variable.end
    path = "/" + "/".join(parts)
    if template.verb:
        path += ":" + quote(template.verb, safe=_SAFE)
    shape = path
    for param in params:
        shape = shape.replace("{" + param["name"] + "}", "{}")
    return OpenApiPath(path, shape, params)


def _identifier(variable: Variable) -> str:
    """``item.id`` -> ``item_id``: tools format paths with ``str.format``-like code,
    where a dot in a name is attribute access (schemathesis fails on the operation)."""
    return "_".join(variable.field_path)


def _wildcard_param(name: str, kind: SegmentKind, what: str) -> dict[str, Any]:
    if kind is SegmentKind.DEEP:
        return {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"Zero or more path segments ({what}); may contain `/`.",
            "schema": {"type": "string"},
        }
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"One path segment ({what}).",
        "schema": {"type": "string", **_NOT_A_SEGMENT},
    }


def query_parameters(
    descriptor: Descriptor,
    schemas: SchemaBuilder,
    *,
    bound: Collection[str] = (),
    body: str | None = None,
) -> list[dict[str, Any]]:
    """The query parameters of a request message: ``bound`` are the dotted proto paths
    the URL path sets, ``body`` the top-level field the body sets."""
    out: list[dict[str, Any]] = []
    _walk(descriptor, schemas, (), (), frozenset(bound), body, (descriptor.full_name,), out)
    return out


def _walk(
    message: Descriptor,
    schemas: SchemaBuilder,
    proto_path: tuple[str, ...],
    names: tuple[str, ...],
    bound: frozenset[str],
    body: str | None,
    seen: tuple[str, ...],
    out: list[dict[str, Any]],
) -> None:
    for f in message.fields:
        path = (*proto_path, f.name)
        dotted = ".".join(path)
        if dotted in bound or (not proto_path and f.name == body):
            continue
        name = ".".join((*names, schemas.name_of(f)))
        sub = f.message_type
        if sub is not None and is_map(f):
            value = sub.fields_by_name["value"]
            if value.message_type is None:
                out.append(_param(name, f, schemas.field(f), style="deepObject"))
            continue
        if sub is None or sub.full_name in _STRING_FORMS or sub.file.name == WRAPPERS_FILE:
            schema = schemas.field(f)
            if sub is not None and sub.file.name == WRAPPERS_FILE:
                # A query value is never null: the wrapper's value type alone.
                if f.is_repeated:
                    schema = {**schema, "items": _non_null(schema["items"])}
                else:
                    schema = _non_null(schema)
            out.append(_param(name, f, schema, style="form" if f.is_repeated else None))
        elif sub.full_name in _JSON_TEXT:
            if not f.is_repeated:
                param = _param(name, f, {}, style=None)
                del param["schema"]
                param["content"] = {"application/json": {"schema": schemas.single(f)}}
                out.append(param)
        elif f.is_repeated:
            continue  # repeated messages can't be set from a query string
        elif sub.full_name not in seen and len(seen) < _MAX_QUERY_DEPTH:
            _walk(
                sub,
                schemas,
                path,
                (*names, schemas.name_of(f)),
                bound,
                None,
                (*seen, sub.full_name),
                out,
            )


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": next(t for t in schema["type"] if t != "null")}


def _param(
    name: str, f: FieldDescriptor, schema: dict[str, Any], *, style: str | None
) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
    if style is not None:
        param["style"] = style
        param["explode"] = True
    description = schema.get("description")
    if description:
        param["description"] = description
    if f.GetOptions().deprecated:
        param["deprecated"] = True
    return param
