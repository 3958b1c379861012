"""HTTP headers ↔ gRPC metadata, by allowlist only (spec §6).

Pure functions over ``(name, value)`` pairs so they can be tested without a
server; the HTTP layer feeds them the raw request headers.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from grpc_bridge.errors import HeadersTooLarge, InvalidArgument
from grpc_bridge.settings import RESERVED_HEADERS, RESERVED_PREFIXES

#: Control characters but tab, and DEL: never in a header value (aiohttp refuses them).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Metadata = list[tuple[str, str | bytes]]

GRPC_METADATA_PREFIX = "grpc-metadata-"
REQUEST_ID = "x-request-id"
_KEY = re.compile(r"[0-9a-z_.-]+")


@dataclass(frozen=True, slots=True)
class MetadataPolicy:
    forward_headers: frozenset[str]
    max_bytes: int


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the HTTP layer knows of the connection, for the x-forwarded-* entries."""

    peer: str | None
    host: str | None
    scheme: str


# A version-4 UUID's fixed bits: what uuid.UUID(..., version=4) clears and sets.
_UUID4_KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID4_SET = (0x8000 << 48) | (4 << 76)


def new_request_id() -> str:
    """``uuid.uuid4().hex`` at half the cost (~1.3 µs instead of ~2.8): one per request."""
    return "%032x" % (int.from_bytes(os.urandom(16)) & _UUID4_KEEP | _UUID4_SET)


def request_id_of(headers: Iterable[tuple[str, str]]) -> str:
    for name, value in headers:
        if name.lower() == REQUEST_ID and value:
            return value
    return new_request_id()


def to_metadata(
    headers: Iterable[tuple[str, str]],
    policy: MetadataPolicy,
    client: ClientInfo,
    request_id: str,
) -> Metadata:
    """Request headers → outgoing metadata; raises on values gRPC can't carry."""
    out: Metadata = []
    forwarded_for: str | None = None
    size = 0
    has_request_id = False
    for raw_name, value in headers:
        name = raw_name.lower()
        if name == "x-forwarded-for":
            forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
            continue
        if name in ("x-forwarded-host", "x-forwarded-proto"):
            continue  # set by the bridge below
        if name.startswith(GRPC_METADATA_PREFIX):
            key = name[len(GRPC_METADATA_PREFIX) :]
        elif name == "authorization" or name in policy.forward_headers:
            key = name
        else:
            continue
        if not key or key in RESERVED_HEADERS or key.startswith(RESERVED_PREFIXES):
            continue
        if not _KEY.fullmatch(key):
            raise InvalidArgument(
                f"header {raw_name!r}: {key!r} is not a valid metadata key "
                "(lower-case letters, digits, '-', '_' and '.')",
                reason="bad_header",
            )
        converted = _value(raw_name, key, value)
        size += len(key) + len(converted)
        has_request_id = has_request_id or key == REQUEST_ID
        out.append((key, converted))
    if not has_request_id and REQUEST_ID in policy.forward_headers:
        out.append((REQUEST_ID, request_id))
        size += len(REQUEST_ID) + len(request_id)
    if size > policy.max_bytes:
        raise HeadersTooLarge(
            f"forwarded metadata is {size} bytes, over the limit of {policy.max_bytes} "
            "(limits.max_metadata_bytes)"
        )
    if client.peer:
        forwarded_for = client.peer if forwarded_for is None else f"{forwarded_for}, {client.peer}"
    if forwarded_for is not None:
        out.append(("x-forwarded-for", _value("X-Forwarded-For", "x-forwarded-for", forwarded_for)))
    if client.host:
        out.append(("x-forwarded-host", _value("Host", "x-forwarded-host", client.host)))
    out.append(("x-forwarded-proto", client.scheme))
    return out


def _value(header: str, key: str, value: str) -> str | bytes:
    if key.endswith("-bin"):
        return decode_bin(header, value)
    # gRPC ASCII values are printable ASCII only: no controls (tab included), no 8-bit
    # bytes. For ASCII, isprintable() is false exactly for the controls (DEL included):
    # the same test as fullmatch("[\x20-\x7e]*") at a fifth of the cost.
    if not (value.isascii() and value.isprintable()):
        raise InvalidArgument(
            f"header {header!r}: value has control or non-ASCII characters, "
            "which gRPC metadata cannot carry (use a -bin key with base64 for binary)",
            reason="bad_header",
        )
    return value


def decode_bin(header: str, value: str) -> bytes:
    """Base64, standard or URL-safe alphabet, padded or not (as gRPC implementations send it)."""
    text = value.strip()
    try:
        raw = text.encode("ascii")
        padded = raw + b"=" * (-len(raw) % 4)
        if b"-" in raw or b"_" in raw:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise InvalidArgument(
            f"header {header!r}: value is not valid base64", reason="bad_header"
        ) from exc


def to_headers(
    initial: Sequence[tuple[str, str | bytes]], trailing: Sequence[tuple[str, str | bytes]]
) -> list[tuple[str, str]]:
    """Response metadata → ``Grpc-Metadata-*`` / ``Grpc-Trailer-*`` headers (``-bin`` as base64)."""
    headers = [(f"Grpc-Metadata-{k}", _header_value(v)) for k, v in initial if _exposed(k, v)]
    headers += [(f"Grpc-Trailer-{k}", _header_value(v)) for k, v in trailing if _exposed(k, v)]
    return headers


def _exposed(key: str, value: str | bytes) -> bool:
    # grpc-* entries (status, status details, encodings) are the transport's, not the app's.
    if key.startswith(RESERVED_PREFIXES) or key in RESERVED_HEADERS:
        return False
    # gRPC allows printable ASCII only; a control character (CR/LF among them) from a
    # non-conforming upstream would split the response head, so the entry is left out.
    return isinstance(value, bytes) or not _CONTROL.search(value)


def _header_value(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value
