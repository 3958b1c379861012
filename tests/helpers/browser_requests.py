"""Hypothesis strategies for gRPC-Web and Connect unary requests, as raw HTTP/1.1 bytes.

For tests that send the same request to both HTTP/1.1 edges
(tests/test_edges_send_the_same_bytes.py). Calls of the test service
(tests/protos/bridgetest/v1/kitchen.proto) that succeed, fail upstream with
or without details, or run past their deadline, and requests that the
bridge refuses itself: methods gRPC-Web or Connect unary can't call, routes
that are none, forms not served, bodies cut short, garbled, compressed,
over ``max_body``; with the headers browser clients send (metadata, CORS
``Origin``, timeouts, response compression) and some they shouldn't.
"""

from __future__ import annotations

import base64
import gzip
import struct
from typing import Any

import orjson
from bridgetest.v1 import kitchen_pb2
from google.protobuf import duration_pb2, empty_pb2
from hypothesis import strategies as st

__all__ = ["browser_requests"]

_SVC = "/bridgetest.v1.TestService"
#: Sleep past a short deadline (and, without one, within the default).
_SLEEP_S = 0.1
_SHORT = ["Grpc-Timeout: 20m", "Connect-Timeout-Ms: 20"]


def _frame(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def _kitchen(draw: Any) -> tuple[dict[str, Any], bytes]:
    text = draw(st.text(max_size=8) | st.just("x" * 1500))  # long: answers worth compressing
    number = draw(st.integers(-5, 5))
    return {"fString": text, "fInt32": number}, kitchen_pb2.Kitchen(
        f_string=text, f_int32=number
    ).SerializeToString()


def _fail(draw: Any) -> tuple[dict[str, Any], bytes]:
    code, text, details = draw(st.integers(1, 16)), draw(st.text(max_size=8)), draw(st.booleans())
    message = kitchen_pb2.FailRequest(code=code, message=text, with_details=details)
    return {"code": code, "message": text, "withDetails": details}, message.SerializeToString()


def _sleep(draw: Any) -> tuple[dict[str, Any], bytes]:
    duration = duration_pb2.Duration(nanos=int(_SLEEP_S * 1e9))
    message = kitchen_pb2.SleepRequest(duration=duration, tag="edges")
    return {"duration": f"{_SLEEP_S}s", "tag": "edges"}, message.SerializeToString()


def _empty(draw: Any) -> tuple[dict[str, Any], bytes]:
    return {}, empty_pb2.Empty().SerializeToString()


#: Where a call goes, and how its message is drawn (JSON and protobuf forms alike).
_CALLS = [
    *[(f"{_SVC}/Echo", _kitchen)] * 4,
    *[(f"{_SVC}/Lookup", _kitchen)] * 2,
    *[(f"{_SVC}/Fail", _fail)] * 3,
    (f"{_SVC}/Sleep", _sleep),
    (f"{_SVC}/EchoMetadata", _empty),
    (f"{_SVC}/ClientStream", _empty),  # neither protocol's unary: refused
    ("/nope.v1.Nope/Nope", _empty),
    ("/v1/things/1", _empty),  # a REST binding: no gRPC-Web or Connect method there
]
_COMMON_HEADERS = [
    "Origin: https://app.example",
    "Origin: https://app.example",
    "Origin: https://other.example",
    "X-Request-Id: req-1",
    "x-custom: a",
    "x-custom: b",
    "Authorization: Bearer t",
    "Accept-Encoding: gzip",
    "Accept-Encoding: identity;q=0",
    "Connection: close",
    "grpc-foo: reserved",
    "User-Agent: t",
    "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
]
_GRPC_WEB_TYPES = [
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web+proto",
    "application/grpc-web+json",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
    "application/grpc-web+xml",
    "Application/Grpc-Web; charset=x",
]
_GRPC_WEB_HEADERS = [
    *_COMMON_HEADERS,
    "X-Grpc-Web: 1",
    "X-User-Agent: grpc-web-javascript/0.1",
    "Grpc-Timeout: 5S",
    "Grpc-Timeout: banana",
    "Accept: application/grpc-web-text",
    "Grpc-Accept-Encoding: gzip",
]
_CONNECT_TYPES = (
    ["application/json"] * 4
    + ["application/proto"] * 3
    + [
        "application/json; charset=utf-8",
        "application/connect+json",
    ]
)
_CONNECT_HEADERS = [
    *_COMMON_HEADERS,
    "Connect-Timeout-Ms: 3000",
    "Connect-Timeout-Ms: soon",
    "Grpc-Timeout: 5S",
    "Accept: application/json",
]
#: What is done to a well-formed body, most often nothing.
_DAMAGE = ["none"] * 12 + ["cut", "garbage", "empty", "oversize", "compressed"]


@st.composite
def _grpc_web(draw: Any, max_body: int) -> tuple[str, list[str], bytes]:
    path, make = draw(st.sampled_from(_CALLS))
    as_json, as_proto = make(draw)
    content_type = draw(st.sampled_from(_GRPC_WEB_TYPES))
    if path.endswith("/EchoMetadata") and "text" in content_type:
        # Its answer holds the upstream's view of the bridge's port: base64 would hide it
        # from the comparison's placeholder.
        content_type = "application/grpc-web"
    payload = orjson.dumps(as_json) if "json" in content_type else as_proto
    headers = [f"Content-Type: {content_type}"]
    damage = draw(st.sampled_from(_DAMAGE))
    body = _frame(payload)
    if damage == "compressed":
        body = _frame(gzip.compress(payload, mtime=0), 1)
        headers.append(draw(st.sampled_from(["Grpc-Encoding: gzip"] * 3 + ["Grpc-Encoding: br"])))
    elif damage == "cut":
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif damage == "garbage":
        body = draw(st.sampled_from([b"\x80\0\0\0\0", b"\0\0\0\0\1x\0\0\0\0\0", b"\2\0\0\0\0"]))
    elif damage == "empty":
        body = b""
    elif damage == "oversize":
        body = _frame(b"\n" + b"x" * (max_body + draw(st.integers(1, 300))))
    if "text" in content_type.lower():
        body = base64.b64encode(body)
        if draw(st.integers(0, 6)) == 0:
            body += b"!"  # not base64
    if draw(st.booleans()) and path.endswith("/Sleep"):
        headers.append(_SHORT[0])
    headers += draw(st.lists(st.sampled_from(_GRPC_WEB_HEADERS), max_size=4))
    return path, headers, body


@st.composite
def _connect(draw: Any, max_body: int) -> tuple[str, list[str], bytes]:
    path, make = draw(st.sampled_from(_CALLS))
    as_json, as_proto = make(draw)
    content_type = draw(st.sampled_from(_CONNECT_TYPES))
    body = as_proto if content_type == "application/proto" else orjson.dumps(as_json)
    headers = [f"Content-Type: {content_type}"]
    version = draw(st.sampled_from(["1"] * 8 + [None, "2"]))
    if version is not None:
        headers.append(f"Connect-Protocol-Version: {version}")
    damage = draw(st.sampled_from(_DAMAGE))
    if damage == "compressed":
        body = gzip.compress(body, mtime=0)
        headers.append("Content-Encoding: gzip")
    elif damage in ("cut", "garbage"):
        body = body[: len(body) // 2] + b"\xff{"
    elif damage == "empty":
        body = b""
    elif damage == "oversize":
        body = b'{"fString": "' + b"x" * (max_body + draw(st.integers(1, 300))) + b'"}'
    if draw(st.booleans()) and path.endswith("/Sleep"):
        headers.append(_SHORT[1])
    headers += draw(st.lists(st.sampled_from(_CONNECT_HEADERS), max_size=4))
    return path, headers, body


@st.composite
def browser_requests(draw: Any, max_body: int) -> tuple[str, bytes]:
    """A gRPC-Web or Connect unary request to the test service: (method, its bytes)."""
    protocol = draw(st.sampled_from([_grpc_web, _connect]))
    path, headers, body = draw(protocol(max_body))
    # Mostly POST; another method is the JSON routes' (or a 405) on both edges alike.
    method = draw(st.sampled_from(["POST"] * 12 + ["PUT", "GET"]))
    headers = ["Host: bridge", *headers, f"Content-Length: {len(body)}"]
    headers = draw(st.permutations(headers))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    return method, head.encode() + body
