"""gRPC-Web and Connect let CORS expose the same response headers, but Content-Encoding.

Both hide the transport's and the proxy's own headers and CORS's own
(``access-control-*``) and expose the rest (status, metadata, ``x-request-id``);
Connect's unary compression is read from ``content-encoding``, gRPC-Web's
messages say ``grpc-encoding`` instead.
"""

from __future__ import annotations

import pytest

from grpc_bridge.protocol.base import WireProtocol
from grpc_bridge.protocol.select import build_protocols, forward_all_policy
from grpc_bridge.settings import load_settings

HEADERS = [
    "access-control-allow-credentials",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "access-control-max-age",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "date",
    "grpc-encoding",
    "grpc-message",
    "grpc-status",
    "grpc-status-details-bin",
    "keep-alive",
    "server",
    "trailer-x-total",
    "transfer-encoding",
    "vary",
    "x-accel-buffering",
    "x-request-id",
    "x-user-id",
]


def _by_name() -> dict[str, WireProtocol]:
    settings = load_settings(None, {"upstream": "127.0.0.1:50051"})
    protocols = build_protocols(settings, forward_all_policy(settings))
    return {p.name: p for p in reversed(protocols.all)}


@pytest.mark.parametrize("header", HEADERS)
def test_grpc_web_and_connect_expose_the_same_headers_but_content_encoding(header: str) -> None:
    protocols = _by_name()
    grpc_web, connect = protocols["grpc-web"], protocols["connect"]
    if header == "content-encoding":
        assert connect.exposed(header) and not grpc_web.exposed(header)
    else:
        assert grpc_web.exposed(header) == connect.exposed(header)
    plain = header.startswith("access-control-") or header in {
        "cache-control",
        "connection",
        "content-length",
        "content-type",
        "date",
        "keep-alive",
        "server",
        "transfer-encoding",
        "vary",
        "x-accel-buffering",
    }
    assert connect.exposed(header) is not plain
