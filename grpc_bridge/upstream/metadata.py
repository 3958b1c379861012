"""HTTP headers ↔ gRPC metadata, by allowlist only (spec §6).

Pure functions over ``(name, value)`` pairs so they can be tested without a
server; the HTTP layer feeds them the raw request headers.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from grpc_bridge.errors import HeadersTooLarge, InvalidArgument, shown
from grpc_bridge.log import get_logger
from grpc_bridge.settings import BRIDGE_METADATA, RESERVED_HEADERS, RESERVED_PREFIXES

#: RFC 9110 §5.6.2 token: what a field name is made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: RFC 9110 §5.5 field value, ASCII only (gRPC values are printable ASCII): visible
#: characters, space and tab; never CR, LF, NUL or another control.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")

Metadata = list[tuple[str, str | bytes]]

log = get_logger("grpc_bridge.upstream")

GRPC_METADATA_PREFIX = "grpc-metadata-"
REQUEST_ID = "x-request-id"
_KEY = re.compile(r"[0-9a-z_.-]+")


#: Never metadata when every header is forwarded (gRPC-Web, Connect): hop-by-hop
#: fields (RFC 9110 §7.6.1), the HTTP message's own framing and negotiation, and
#: what browsers add about the page rather than the call.
NOT_METADATA = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "access-control-request-headers",
        "access-control-request-method",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "cookie",
        # Who the client is, as a proxy would say it: only the bridge says that
        # (x-forwarded-for, by metadata.trust_forwarded_for).
        "cf-connecting-ip",
        "fastly-client-ip",
        "forwarded",
        "forwarded-for",
        "true-client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "x-forwarded",
        "x-real-ip",
        "host",
        "keep-alive",
        "origin",
        "priority",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "referer",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-grpc-web",
    }
)
#: Prefixes of what the protocols themselves read (and browsers' fetch metadata).
#: ``x-envoy-*``: an Envoy behind the bridge takes the bridge for internal and would
#: obey a client's retry and timeout overrides.
NOT_METADATA_PREFIXES = ("connect-", "sec-", "x-forwarded-", "x-envoy-")


@dataclass(frozen=True, slots=True)
class MetadataPolicy:
    forward_headers: frozenset[str]
    max_bytes: int
    #: metadata.trust_forwarded_for: the client's X-Forwarded-For is kept (and appended to).
    trust_forwarded_for: bool = False
    #: Every request header is metadata but those never forwarded and ``deny_headers``
    #: (gRPC-Web and Connect, whose clients send metadata as bare headers, as Envoy
    #: forwards them); otherwise only ``Grpc-Metadata-*``, authorization and
    #: ``forward_headers`` (the JSON routes' allowlist).
    forward_all: bool = False
    deny_headers: frozenset[str] = frozenset()


# Not frozen: made one per request, and a frozen dataclass's __init__ (object.__setattr__
# per field) costs ~5x a plain one's. Read-only by convention.
@dataclass(slots=True)
class ClientInfo:
    """What the HTTP layer knows of the connection, for the x-forwarded-* entries."""

    peer: str | None
    host: str | None
    scheme: str


# A version-4 UUID's fixed bits: what uuid.UUID(..., version=4) clears and sets.
_UUID4_KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID4_SET = (0x8000 << 48) | (4 << 76)


#: Random 128-bit numbers drawn from ``os.urandom`` in batches: one system call per
#: ``_BATCH`` request ids instead of one each. Emptied in a forked child (the workers),
#: which must never hand out its parent's ids.
_random: list[int] = []
_BATCH = 64
os.register_at_fork(after_in_child=_random.clear)


def new_request_id() -> str:
    """``uuid.uuid4().hex`` at a third of the cost (~0.9 µs instead of ~2.8): one per request."""
    while True:
        try:
            number = _random.pop()
        except IndexError:
            data = os.urandom(16 * _BATCH)
            _random.extend(int.from_bytes(data[i : i + 16]) for i in range(0, len(data), 16))
            continue
        return "%032x" % (number & _UUID4_KEEP | _UUID4_SET)


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
    trust_forwarded_for = policy.trust_forwarded_for
    forward_all = policy.forward_all
    for raw_name, value in headers:
        name = raw_name.lower()
        if name == "x-forwarded-for":
            if trust_forwarded_for:
                forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
            continue
        if forward_all:
            if (
                name in NOT_METADATA
                or name.startswith(NOT_METADATA_PREFIXES)
                or name in policy.deny_headers
            ):
                continue
            key = name
        elif name.startswith(GRPC_METADATA_PREFIX):
            key = name[len(GRPC_METADATA_PREFIX) :]
        elif name == "authorization" or name in policy.forward_headers:
            key = name
        else:
            continue
        # What the bridge sets itself (the transport's fields, x-forwarded-*,
        # user-agent) is never the client's: a reader taking the first value
        # would see the client's otherwise.
        if (
            not key
            or key in RESERVED_HEADERS
            or key in BRIDGE_METADATA
            or key.startswith(RESERVED_PREFIXES)
        ):
            continue
        if not _KEY.fullmatch(key):
            raise InvalidArgument(
                f"header {shown(raw_name)}: {shown(key)} is not a valid metadata key "
                "(lower-case letters, digits, '-', '_' and '.')",
                reason="bad_header",
            )
        converted = _value(raw_name, key, value)
        size += len(key) + len(converted)
        has_request_id = has_request_id or key == REQUEST_ID
        out.append((key, converted))
    if not has_request_id and (policy.forward_all or REQUEST_ID in policy.forward_headers):
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


class MetadataMemo:
    """:func:`to_metadata` of header mappings seen before, kept by their identity: the lean
    edge's are read-only and shared by every request with the same head (edge/fastpath.py).

    The metadata is a pure function of the headers, the policy, the client and the
    request id. The request id is in it at most once, as the entry appended for a
    request whose own header is not forwarded, and the size bound counts its length:
    so an entry is kept per length of request id, made with a stand-in of that
    length, and the id put in its place per call. Each entry holds its headers and
    policy, so an ``id`` it is kept by is never another object's.
    """

    __slots__ = ("_memo",)

    #: Entries kept; emptied when full (many distinct heads: no sweep, no growth).
    MAX = 64

    def __init__(self) -> None:
        self._memo: dict[
            tuple[int, int, str | None, str | None, str, int],
            tuple[object, MetadataPolicy, Metadata, int],
        ] = {}

    def metadata(
        self,
        headers: Mapping[str, str],
        policy: MetadataPolicy,
        client: ClientInfo,
        request_id: str,
    ) -> Metadata:
        """``to_metadata(headers.items(), policy, client, request_id)``; raises as it does."""
        key = (id(headers), id(policy), client.peer, client.host, client.scheme, len(request_id))
        entry = self._memo.get(key)
        if entry is None or entry[0] is not headers or entry[1] is not policy:
            stand_in = "\ue001" * len(request_id)  # a new object: found by identity
            made = to_metadata(headers.items(), policy, client, stand_in)
            at = next((i for i, (_, value) in enumerate(made) if value is stand_in), -1)
            if len(self._memo) >= self.MAX:
                self._memo.clear()
            entry = self._memo[key] = (headers, policy, made, at)
        out = list(entry[2])
        at = entry[3]
        if at >= 0:
            out[at] = (REQUEST_ID, request_id)
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
    """Response metadata → ``Grpc-Metadata-*`` / ``Grpc-Trailer-*`` headers (``-bin`` as base64).

    The one gate between an upstream's metadata and an HTTP response head, for
    every path and framing: an entry whose key is not an HTTP token or whose
    value is not a field value (a CR/LF would split the head, a space in a name
    makes clients refuse it) is left out, with one warning per response.
    """
    if not initial and not trailing:
        return []  # most answers carry none
    return prefixed_headers((("Grpc-Metadata-", initial), ("Grpc-Trailer-", trailing)))


def plain_headers(
    initial: Sequence[tuple[str, str | bytes]], trailing: Sequence[tuple[str, str | bytes]]
) -> list[tuple[str, str]]:
    """Response metadata as bare headers, trailers too (gRPC-Web's and Connect's placement
    when the trailers go in the head: a trailers-only answer)."""
    if not initial and not trailing:
        return []  # most answers carry none
    return prefixed_headers((("", initial), ("", trailing)))


def prefixed_headers(
    groups: Iterable[tuple[str, Sequence[tuple[str, str | bytes]]]],
    *,
    in_head: bool = True,
) -> list[tuple[str, str]]:
    """Metadata → headers, each group's keys under its prefix (``""``: bare); the gate of
    :func:`to_headers` for every protocol's placement. ``in_head``: bare keys become fields
    of the HTTP response head, where those the edge owns are left out; trailers carried
    in the body (gRPC-Web's trailer frame, Connect's end-of-stream) keep them."""
    headers: list[tuple[str, str]] = []
    dropped: list[str] | None = None
    for prefix, pairs in groups:
        for key, value in pairs:
            if _reserved(key) or (in_head and not prefix and _owned_by_http(key)):
                continue
            if _TOKEN.fullmatch(key) and (
                isinstance(value, bytes) or _FIELD_VALUE.fullmatch(value)
            ):
                headers.append((prefix + key, _header_value(value)))
            else:
                dropped = [] if dropped is None else dropped
                dropped.append(key)
    if dropped:
        log.warning(
            "upstream_metadata_dropped",
            reason="key not an HTTP token or value not an HTTP field value",
            keys=[key[:64] for key in dropped[:8]],
            count=len(dropped),
        )
    return headers


#: Response fields a bare metadata header must never set: they describe the HTTP
#: message or its access rules (a ``content-encoding`` entry would declare a coding
#: the body does not have; an ``access-control-allow-origin`` would bypass the CORS
#: policy), or a protocol's own placement (Connect reads ``trailer-*`` as trailers).
_HTTP_OWNED = frozenset(
    {
        "connection",
        "date",
        "keep-alive",
        "server",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "vary",
        "x-request-id",
    }
)
_HTTP_OWNED_PREFIXES = ("access-control-", "connect-", "content-", "trailer-")


def _owned_by_http(key: str) -> bool:
    key = key.lower()
    return key in _HTTP_OWNED or key.startswith(_HTTP_OWNED_PREFIXES)


def _reserved(key: str) -> bool:
    # grpc-* entries (status, status details, encodings) are the transport's, not the app's.
    key = key.lower()
    return key.startswith(RESERVED_PREFIXES) or key in RESERVED_HEADERS


def _header_value(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value
