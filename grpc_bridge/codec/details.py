"""The ``details`` of the error body (spec §5), from the ``grpc-status-details-bin`` trailer.

Each detail is a ``google.protobuf.Any``, rendered in the proto3 JSON mapping
of Any: ``{"@type": url, ...fields...}`` (or ``{"@type": url, "value": ...}``
for well-known types). Its type is looked up in the upstream's private pool
first, so services' own detail types render; then in the default pool, which
holds the standard ``google.rpc`` details (BadRequest, ErrorInfo, RetryInfo,
...). A type found in neither, or a payload that doesn't parse as its type,
becomes ``{"@type": url, "value": "<base64 of the payload>"}``, as
grpc-gateway and Envoy do.

This runs while an error is being reported, so it never raises: a trailer that
is not a ``google.rpc.Status`` yields no details rather than hiding the
upstream's code and message behind a 500.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import error_details_pb2, status_pb2

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.status import utf8_safe

__all__ = ["pack_details", "render_details", "status_bin"]

_CANONICAL = JsonOptions(emit_unpopulated=False)

# Registers the google.rpc detail types in the default pool; the name keeps the
# import from being "unused" to linters.
_STANDARD_DETAILS = error_details_pb2.DESCRIPTOR


def render_details(
    details_bin: bytes | None,
    pool: DescriptorPool | None,
    *,
    options: JsonOptions | None = None,
) -> list[dict[str, Any]]:
    """The ``details`` list of the error body; ``[]`` for no, empty or undecodable bytes.

    Without ``options`` details take the canonical proto3 JSON form (lowerCamel
    names, unpopulated fields omitted, enums as names); pass the response
    options to make them follow the ``json.*`` settings instead.
    """
    if not details_bin:
        return []
    try:
        status = status_pb2.Status.FromString(details_bin)
    except Exception:  # a DecodeError, or anything a corrupt trailer makes upb raise
        return []
    opts = options or _CANONICAL
    pools = [pool, descriptor_pool.Default()] if pool is not None else [descriptor_pool.Default()]
    return [_render_any(detail, pools, opts) for detail in status.details]


def _render_any(detail: Any, pools: list[DescriptorPool], options: JsonOptions) -> dict[str, Any]:
    type_url: str = detail.type_url
    type_name = type_url.rpartition("/")[2]
    for pool in pools:
        try:
            pool.FindMessageTypeByName(type_name)
        except KeyError:
            continue
        try:
            rendered = json_format.MessageToDict(
                detail,
                preserving_proto_field_name=options.use_proto_names,
                always_print_fields_with_no_presence=options.emit_unpopulated,
                use_integers_for_enums=options.enums_as_ints,
                descriptor_pool=pool,
            )
        except Exception:  # a payload that isn't its type, an Any inside of an unknown type...
            break
        if rendered:
            return dict(rendered)  # json_format builds an OrderedDict for an Any
        break
    return {"@type": type_url, "value": base64.b64encode(detail.value).decode("ascii")}


def pack_details(details: Any) -> list[tuple[dict[str, Any], Any]]:
    """The bridge's own details (Any in its JSON form, ``{"@type": ..., ...}``), each with
    its ``google.protobuf.Any``; one of a type the default pool does not know is left out."""
    packed: list[tuple[dict[str, Any], Any]] = []
    for detail in details:
        if not isinstance(detail, dict) or not isinstance(detail.get("@type"), str):
            continue
        try:
            packed.append((detail, json_format.ParseDict(detail, any_pb2.Any())))
        except Exception:  # a type the default pool does not know: nothing to encode
            continue
    return packed


def status_bin(code: int, message: str, details: Any) -> bytes | None:
    """``grpc-status-details-bin`` for the bridge's own error: google.rpc.Status with its
    details packed (None when it has none), as a gRPC server would send it."""
    packed = [any_detail for _, any_detail in pack_details(details)]
    if not packed:
        return None
    # A message may echo header bytes aiohttp decoded with surrogateescape.
    status = status_pb2.Status(code=code, message=utf8_safe(message), details=packed)
    data: bytes = status.SerializeToString()
    return data
