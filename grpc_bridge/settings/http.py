"""What clients see: listeners, routes, JSON, metadata, limits, streams, WebSocket, CORS,
compression and shutdown."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from grpc_bridge.settings.base import Section

# Never forwarded upstream whatever the configuration says (spec §6).
RESERVED_HEADERS = frozenset(
    {
        "host",
        "connection",
        "te",
        "content-type",
        "content-length",
        "transfer-encoding",
        "upgrade",
        "keep-alive",
    }
)
RESERVED_PREFIXES = ("grpc-", ":", "proxy-")
#: Metadata the bridge sets itself on every call (besides the reserved fields above):
#: a client can't send them by any route, so the upstream's first value is the bridge's.
BRIDGE_METADATA = frozenset(
    {"user-agent", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}
)


class Listener(Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)


class ProxyListener(Listener):
    # SO_REUSEPORT: a new bridge can bind the port before the old one drains
    # (zero-downtime restart on one host); off by default so two bridges never
    # share a port by accident. Workers always use it.
    reuse_port: bool = False
    # Plain unary JSON calls (generic route or REST binding, CORS included) are
    # served by a lean HTTP/1.1 path (edge/fastpath.py) that hands anything else to
    # aiohttp on the same connection, answering alike; false: aiohttp only.
    fast_path: bool = True


class AdminListener(Listener):
    port: int = Field(8081, ge=0, le=65535)
    # GET /playground (admin/playground.py): a page that calls real methods through
    # the proxy listener. On by default, as the spec lists it among the admin
    # endpoints; the admin port is for operators and must never be public.
    playground: bool = True


class CustomPattern(Section):
    kind: str
    path: str


class RouteRule(Section):
    """One REST binding in google.api.http syntax (used by the REST mapping)."""

    get: str | None = None
    put: str | None = None
    post: str | None = None
    delete: str | None = None
    patch: str | None = None
    custom: CustomPattern | None = None
    body: str | None = None
    response_body: str | None = None

    @model_validator(mode="after")
    def _one_verb(self) -> RouteRule:
        verbs = [v for v in ("get", "put", "post", "delete", "patch", "custom") if getattr(self, v)]
        if len(verbs) != 1:
            raise ValueError("exactly one of get, put, post, delete, patch, custom is required")
        return self


class Route(RouteRule):
    method: str
    upstream: str | None = None
    additional_bindings: list[RouteRule] = Field(default_factory=list)

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        service, _, method = value.lstrip("/").partition("/")
        if not service or not method or "/" in method:
            raise ValueError(f"{value!r} is not a full method name like 'pkg.Service/Method'")
        return f"{service}/{method}"


class JsonSettings(Section):
    use_proto_names: bool = False
    emit_unpopulated: bool = True
    enums_as_ints: bool = False
    ignore_unknown_fields: bool = False


class MetadataSettings(Section):
    forward_headers: list[str] = Field(
        default_factory=lambda: ["x-request-id", "traceparent", "tracestate"]
    )
    # Keep the client's X-Forwarded-For and append its address: only when every
    # client comes through a proxy that sets the header itself. Off, a client
    # could name any address, so the bridge's x-forwarded-for is the peer alone.
    trust_forwarded_for: bool = False
    # gRPC-Web and Connect clients send metadata as bare headers, so on those
    # requests every header is forwarded (as Envoy does) except hop-by-hop,
    # reserved, grpc-* / connect-* names and these.
    deny_headers: list[str] = Field(default_factory=list)

    @field_validator("deny_headers")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.strip().lower() for v in value]

    @field_validator("forward_headers")
    @classmethod
    def _forwardable(cls, value: list[str]) -> list[str]:
        names = [v.strip().lower() for v in value]
        for name in names:
            if name in RESERVED_HEADERS or name.startswith(RESERVED_PREFIXES):
                raise ValueError(f"{name!r} is reserved and is never forwarded")
            if name in BRIDGE_METADATA:
                raise ValueError(f"{name!r} is set by the bridge itself and is never forwarded")
            if not re.fullmatch(r"[0-9a-z_.-]+", name):
                raise ValueError(f"{name!r} is not a valid metadata key")
        return names


class Limits(Section):
    max_request_bytes: int = Field(4 * 1024 * 1024, gt=0)
    max_json_depth: int = Field(64, ge=1, le=1000)
    max_metadata_bytes: int = Field(8192, gt=0)
    # A request body (or one message of a request stream) must arrive whole within
    # this long of its head (of its first byte), else 408 and the connection closes:
    # a total, not an idle timeout, so a byte every few seconds can't hold a socket.
    # Also how long a request's head may take on the lean path (edge/fastpath.py).
    body_read_timeout_s: float = Field(75.0, gt=0)


class RestSettings(Section):
    ignore_unknown_query_parameters: bool = False


class DiscoverySettings(Section):
    refresh_interval_s: float = Field(60.0, ge=0)  # 0 turns periodic refresh off
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)


class WebSocketSettings(Section):
    heartbeat_s: float = Field(30.0, gt=0)
    max_message_size: int = Field(4 * 1024 * 1024, gt=0)
    # permessage-deflate (RFC 7692), aiohttp's own: when on, and the client offers
    # it (browsers do), every frame is deflated on the event loop. Off, as the
    # response compression (``compression:``) never applies to WebSocket.
    permessage_deflate: bool = False


class StreamSettings(Section):
    # A stream with no message in either direction for this long ends with
    # DEADLINE_EXCEEDED (0: never). Streams have no default deadline, so this
    # is what frees upstream calls a forgotten client left open. Over h2c, a send
    # that waits this long for the client's window (or socket) ends its stream
    # (or connection) too (edge/h2c_flow.py).
    idle_timeout_s: float = Field(300.0, ge=0)


# Browsers send origins in lower case, so a configured one must be too to ever match.
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\sA-Z]+$")


class Cors(Section):
    # Exact origins ("https://app.example.com", scheme://host[:port]) or "*".
    allowed_origins: list[str] = Field(default_factory=list)
    allow_credentials: bool = False
    # Request headers a preflight may ask for beyond the ones the bridge reads
    # (Content-Type, Authorization, Grpc-Timeout, Grpc-Metadata-*, ...).
    allowed_headers: list[str] = Field(default_factory=list)
    # How long browsers may cache a preflight answer.
    max_age_s: int = Field(600, ge=0)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port], lower case, "
                    'without a path or trailing slash (or "*")'
                )
        return value

    @field_validator("allowed_headers")
    @classmethod
    def _headers(cls, value: list[str]) -> list[str]:
        names = [v.strip().lower() for v in value]
        for name in names:
            if not re.fullmatch(r"[0-9a-z!#$%&'*+.^_`|~-]+", name):
                raise ValueError(f"{name!r} is not a header name")
        return names


#: Response content codings the bridge can produce, by their RFC 9110 names.
Coding = Literal["zstd", "br", "gzip"]
_CODINGS: tuple[Coding, ...] = ("zstd", "br", "gzip")


class CompressionSettings(Section):
    """Response compression (docs/compression.md); ``Accept-Encoding`` picks the coding."""

    enabled: bool = True
    # The server's preference, for Accept-Encoding ties (``gzip, br, zstd`` all at
    # q=1). br needs the ``brotli`` package and zstd ``zstandard`` (the
    # ``compression`` extra); a coding whose package is missing is skipped.
    algorithms: list[Coding] = Field(default_factory=lambda: list(_CODINGS))
    # Smaller answers go out as they are: compressing them saves less than it costs.
    min_bytes: int = Field(1024, ge=0)
    gzip_level: int = Field(6, ge=1, le=9)
    # brotli's quality 0-11: 4 is near gzip's speed with a better ratio; 11 is for static files.
    br_level: int = Field(4, ge=0, le=11)
    zstd_level: int = Field(3, ge=1, le=19)
    # Bodies (or a stream's batches) at least this large are compressed in a worker
    # thread (the codecs release the GIL), so one large answer never stalls the event loop.
    executor_bytes: int = Field(64 * 1024, ge=0)

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a coding twice")
        return value


class ShutdownSettings(Section):
    # Time /readyz reports 503 while still serving, so endpoints controllers
    # stop sending traffic before the listener closes.
    drain_s: float = Field(0.0, ge=0)
    # In-flight requests get this long to finish once the listener is closed.
    timeout_s: float = Field(25.0, gt=0)
