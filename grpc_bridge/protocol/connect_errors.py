"""Connect's error model: code names, its HTTP status table, the Error JSON, metadata as JSON.

connectrpc.com/docs/protocol#error-end-stream. An Error is
``{"code": "not_found", "message": ..., "details": [...]}`` (message and
details left out when empty, as connect-go does), each detail
``{"type": "google.rpc.BadRequest", "value": <unpadded base64>, "debug": <JSON>}``:
the bare message name (no ``type.googleapis.com/`` prefix, which Envoy 1.40
still sends), the serialized bytes, and the message as JSON when the
upstream's pool (or the default one, for google.rpc) knows its type.

The HTTP status of a unary error is Connect's current table (canceled 499,
deadline_exceeded 504, failed_precondition 400, unimplemented 501), not the
older one Envoy 1.40 uses; the bridge's own HTTP refusals (405, 406, 408, 413,
415, 431) keep their status, with a Connect body. Streams carry errors and
trailers in the end-of-stream message ``{"error": ..., "metadata": {...}}``,
metadata values as lists of strings (``-bin`` ones base64).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import orjson
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import status_pb2

from grpc_bridge.codec.details import pack_details, render_details
from grpc_bridge.codec.framing import Pairs, StreamEnd
from grpc_bridge.errors import BridgeError, MethodNotAllowed, UpstreamError, grpc_family_code
from grpc_bridge.status import Code, http_status_for, utf8_safe
from grpc_bridge.upstream.metadata import prefixed_headers

#: Connect's code names, by gRPC code number: gRPC's, lower-case (one spelling differs).
CODE_NAMES = tuple("canceled" if c is Code.CANCELLED else c.name.lower() for c in Code)

_TYPE_PREFIX = "type.googleapis.com/"


def code_name(code: int) -> str:
    """Connect's name of a gRPC code; a number outside the table is ``unknown``."""
    return CODE_NAMES[code] if 0 < code < len(CODE_NAMES) else "unknown"


def http_status(exc: BridgeError) -> int:
    """The HTTP status of a unary error: the bridge's own refusal's, else Connect's table."""
    if exc.http_status_override is not None:
        return exc.http_status_override
    # Connect's table is gRPC's HTTP mapping (status.py), canceled 499 included.
    return http_status_for(exc.code)


def _unpadded(data: bytes) -> str:
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def _upstream_details(details_bin: bytes, pool: DescriptorPool | None) -> list[dict[str, Any]]:
    try:
        status = status_pb2.Status.FromString(details_bin)
    except Exception:  # a corrupt trailer: the code and message still go out
        return []
    rendered = render_details(details_bin, pool)
    out: list[dict[str, Any]] = []
    for index, detail in enumerate(status.details):
        entry: dict[str, Any] = {
            "type": detail.type_url.rpartition("/")[2],
            "value": _unpadded(detail.value),
        }
        json_form = rendered[index] if index < len(rendered) else {}
        unknown = json_form == {
            "@type": detail.type_url,
            "value": base64.b64encode(detail.value).decode("ascii"),
        }
        if json_form and not unknown:
            entry["debug"] = {k: v for k, v in json_form.items() if k != "@type"}
        out.append(entry)
    return out


def _own_details(details: Sequence[Any]) -> list[dict[str, Any]]:
    """The bridge's own details (Any in its JSON form) as Connect details; others left out."""
    out: list[dict[str, Any]] = []
    for detail, packed in pack_details(details):
        out.append(
            {
                "type": packed.type_url.removeprefix(_TYPE_PREFIX).rpartition("/")[2],
                "value": _unpadded(packed.value),
                "debug": {k: v for k, v in detail.items() if k != "@type"},
            }
        )
    return out


def error_json(
    code: int,
    message: str,
    details_bin: bytes | None,
    details: Sequence[Any],
    pool: DescriptorPool | None,
) -> dict[str, Any]:
    """Connect's Error object."""
    error: dict[str, Any] = {"code": code_name(code)}
    if message:
        error["message"] = utf8_safe(message)
    found = _upstream_details(details_bin, pool) if details_bin else _own_details(details)
    if found:
        error["details"] = found
    return error


def error_of(exc: BridgeError, pool: DescriptorPool | None) -> dict[str, Any]:
    details_bin = exc.details_bin if isinstance(exc, UpstreamError) else None
    return error_json(grpc_family_code(exc), exc.message, details_bin, exc.details, pool)


def metadata_json(pairs: Pairs) -> dict[str, list[str]]:
    """Trailing metadata as the end-of-stream ``metadata`` object (the headers' gate applied)."""
    out: dict[str, list[str]] = {}
    for name, value in prefixed_headers((("", pairs),), in_head=False):
        out.setdefault(name, []).append(value)
    return out


def end_stream_json(end: StreamEnd) -> bytes:
    """The EndStreamResponse of a stream that ended with ``end`` (code 0: success)."""
    body: dict[str, Any] = {}
    if end.code != 0:
        body["error"] = error_json(end.code, end.message, end.details_bin, end.details, end.pool)
    if metadata := metadata_json(end.trailing):
        body["metadata"] = metadata
    return orjson.dumps(body)


def unary_error_body(exc: BridgeError, pool: DescriptorPool | None) -> bytes:
    return orjson.dumps(error_of(exc, pool))


def unary_error(
    exc: BridgeError, pool: DescriptorPool | None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A unary call's error answer on plain values: HTTP status, headers and body (both edges)."""
    headers = error_headers(exc)
    headers.append(("Content-Type", "application/json"))
    if isinstance(exc, MethodNotAllowed):
        headers.append(("Allow", ", ".join(exc.allowed)))
    return http_status(exc), headers, unary_error_body(exc, pool)


def error_headers(exc: BridgeError) -> list[tuple[str, str]]:
    """Upstream metadata of a unary error: leading as bare headers, trailing as ``trailer-``."""
    if isinstance(exc, UpstreamError):
        return prefixed_headers((("", exc.initial_metadata), ("trailer-", exc.trailing_metadata)))
    return []
