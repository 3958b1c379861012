"""gRPC status codes, the one gRPC-code → HTTP-status table, and the Status JSON body.

The table is grpc-gateway's ``runtime.HTTPStatusFromCode`` (runtime/errors.go),
so clients that know grpc-gateway see the same statuses here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import orjson


class Code(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


_HTTP_STATUS: dict[int, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def http_status_for(code: int) -> int:
    """HTTP status for a gRPC code; unknown codes are 500 like grpc-gateway."""
    return _HTTP_STATUS.get(code, 500)


def code_name(code: int) -> str:
    """Canonical upper-case name (``NOT_FOUND``); unknown numbers as ``CODE_<n>``."""
    try:
        return Code(code).name
    except ValueError:
        return f"CODE_{code}"


def status_dict(code: int, message: str, details: Sequence[Any] = ()) -> dict[str, Any]:
    return {"code": int(code), "message": message, "details": list(details)}


def status_body(code: int, message: str, details: Sequence[Any] = ()) -> bytes:
    """The JSON form of google.rpc.Status, the one error body of every response.

    Never raises over the message: it may echo client text, and aiohttp decodes
    header bytes with surrogateescape, which orjson refuses (lone surrogates).
    """
    try:
        return orjson.dumps(status_dict(code, message, details))
    except orjson.JSONEncodeError:
        return orjson.dumps(status_dict(code, utf8_safe(message), details))


def utf8_safe(text: str) -> str:
    """``text`` with lone surrogates (undecodable client bytes) as ``\\udcff`` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
