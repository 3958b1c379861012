"""The final status and metadata of a gRPC call, read from HTTP/2 header blocks.

``grpc-status`` and ``grpc-message`` from the trailers (or from a
Trailers-Only response); an HTTP status other than 200 without them is
mapped as in gRPC's doc/http-grpc-status-mapping.md, and a response that is
not gRPC at all (another content-type) as grpc-go maps it; a stream reset
maps by its error code.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, NamedTuple
from urllib.parse import unquote

from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import frames
from grpc_bridge.upstream.h2.fields import Block, Header

Metadata = tuple[tuple[str, str | bytes], ...]

_HTTP_TO_CODE = {
    400: Code.INTERNAL,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.UNIMPLEMENTED,
    429: Code.UNAVAILABLE,
    502: Code.UNAVAILABLE,
    503: Code.UNAVAILABLE,
    504: Code.UNAVAILABLE,
}

RESET_TO_CODE = {
    frames.NO_ERROR: Code.INTERNAL,
    frames.REFUSED_STREAM: Code.UNAVAILABLE,
    frames.CANCEL: Code.CANCELLED,
    frames.ENHANCE_YOUR_CALM: Code.RESOURCE_EXHAUSTED,
    frames.INADEQUATE_SECURITY: Code.PERMISSION_DENIED,
}

# Headers that describe the transport, not the application: never handed on as metadata.
_RESERVED = frozenset(
    {
        "content-type",
        "grpc-status",
        "grpc-message",
        "grpc-encoding",
        "grpc-accept-encoding",
        "te",
        "content-length",
    }
)


class Status(NamedTuple):
    code: int
    message: str
    details_bin: bytes | None = None
    #: The upstream never saw the request (GOAWAY above it, REFUSED_STREAM, no
    #: connection): safe to send again whatever the method does.
    unprocessed: bool = False


#: What blocks come to, by their fields: a server sends the same few blocks again and
#: again (a unary call's headers and trailers, ~1 µs to read each time), and both results
#: are pure functions of the fields. Bounded: only blocks of up to ``_MEMO_CHARS``
#: characters are kept, ``_MEMO_ENTRIES`` of them, emptied when full.
_MEMO_ENTRIES = 256
_MEMO_CHARS = 1024
_metadata_memo: dict[tuple[Header, ...], Metadata] = {}
_status_memo: dict[tuple[tuple[Header, ...], str | None], Status] = {}


def _keep(memo: dict[Any, Any], key: Any, headers: tuple[Header, ...], value: Any) -> None:
    if sum(len(name) + len(text) for name, text in headers) <= _MEMO_CHARS:
        if len(memo) >= _MEMO_ENTRIES:
            memo.clear()
        memo[key] = value


def metadata_of(headers: tuple[Header, ...]) -> Metadata:
    """Application metadata of a header block; ``-bin`` values base64-decoded to bytes."""
    out = _metadata_memo.get(headers)
    if out is None:
        out = _read_metadata(headers)
        _keep(_metadata_memo, headers, headers, out)
    return out


def _read_metadata(headers: tuple[Header, ...]) -> Metadata:
    out: list[tuple[str, str | bytes]] = []
    for name, value in headers:
        if name.startswith(":") or name in _RESERVED:
            continue
        if name.endswith("-bin"):
            try:
                out.append((name, base64.b64decode(value + "=" * (-len(value) % 4))))
            except (binascii.Error, ValueError):
                continue
        else:
            out.append((name, value))
    return tuple(out)


def http_code(http_status: str | None) -> int:
    if http_status is None:
        return Code.INTERNAL  # as grpc-go: a response without :status
    return _HTTP_TO_CODE.get(int(http_status) if http_status.isdigit() else 0, Code.UNKNOWN)


def not_grpc(block: Block) -> Status:
    """A response that is not gRPC (a proxy's page, a web server): mapped like grpc-go does."""
    http_status = block.status
    what = (
        f"content-type {block.content_type!r}"
        if block.content_type is not None
        else "no content-type"
    )
    return Status(
        http_code(http_status),
        f"upstream answered HTTP status {http_status} with {what}, not application/grpc",
    )


def status_of(headers: tuple[Header, ...], http_status: str | None) -> Status:
    """The call's status from its trailers (or a Trailers-Only block and its ``:status``)."""
    key = (headers, http_status)
    status = _status_memo.get(key)
    if status is None:
        status = _read_status(headers, http_status)
        _keep(_status_memo, key, headers, status)
    return status


def _read_status(headers: tuple[Header, ...], http_status: str | None) -> Status:
    grpc_status = message = details = None
    for name, value in headers:
        if name == "grpc-status":
            if grpc_status is not None:
                # Which one is meant is anyone's guess (13 then 0 must not read as OK).
                return Status(Code.INTERNAL, "upstream sent more than one grpc-status")
            grpc_status = value
        elif name == "grpc-message":
            message = value
        elif name == "grpc-status-details-bin":
            details = value
    if grpc_status is None:
        if http_status is not None and http_status != "200":
            return Status(
                http_code(http_status),
                f"upstream answered HTTP status {http_status} without a gRPC status",
            )
        return Status(Code.UNKNOWN, "upstream ended the call without a grpc-status")
    # 1*DIGIT (PROTOCOL-HTTP2.md): int() alone also takes '+0', '-0', '0_0', ' 0', '\u0660'.
    if not (grpc_status.isascii() and grpc_status.isdigit()):
        return Status(Code.UNKNOWN, f"upstream sent an invalid grpc-status {grpc_status!r}")
    # int() refuses over 4,300 digits (and costs for thousands): no code needs more than 2.
    code = int(grpc_status) if len(grpc_status) <= 9 else Code.UNKNOWN
    if code > 16:
        code = Code.UNKNOWN
    details_bin = None
    if details is not None:
        try:
            details_bin = base64.b64decode(details + "=" * (-len(details) % 4))
        except (binascii.Error, ValueError):
            details_bin = None
    return Status(code, unquote(message, errors="replace") if message else "", details_bin)
