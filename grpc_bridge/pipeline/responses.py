"""Building responses: JSON bodies, the Status error body, metadata headers."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from google.protobuf.descriptor_pool import DescriptorPool

from grpc_bridge.codec.details import render_details
from grpc_bridge.errors import BridgeError, MethodNotAllowed, UpstreamError
from grpc_bridge.status import status_body
from grpc_bridge.upstream.metadata import to_headers

JSON_CONTENT_TYPE = "application/json"


def json_response(
    body: bytes, *, status: int = 200, headers: Sequence[tuple[str, str]] = ()
) -> web.Response:
    response = web.Response(body=body, status=status, content_type=JSON_CONTENT_TYPE)
    for name, value in headers:
        response.headers.add(name, value)
    return response


def error_response(exc: BridgeError, pool: DescriptorPool | None = None) -> web.Response:
    """The one error shape (spec §5), with upstream metadata as headers."""
    headers: list[tuple[str, str]] = []
    details = list(exc.details)
    if isinstance(exc, UpstreamError):
        details = render_details(exc.details_bin, pool)
        headers = to_headers(exc.initial_metadata, exc.trailing_metadata)
    elif isinstance(exc, MethodNotAllowed):
        headers.append(("Allow", ", ".join(exc.allowed)))
    return json_response(
        status_body(exc.code, exc.message, details), status=exc.http_status, headers=headers
    )
