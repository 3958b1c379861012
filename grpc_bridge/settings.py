"""Configuration: the only module that reads files and the environment for settings.

Sources, highest precedence first (pydantic-settings ``settings_customise_sources``):

1. CLI flags (passed in as init keyword arguments by ``cli.py``),
2. ``GRPC_BRIDGE_*`` environment variables, ``__`` between nesting levels,
   lists and maps as JSON,
3. the YAML file (``--config FILE`` or ``GRPC_BRIDGE_CONFIG``),
4. the defaults below.

Dicts merge across sources; lists replace. The keys are the stable surface of
``shared/spec/configuration.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from grpc_bridge import settings_hints

ENV_PREFIX = "GRPC_BRIDGE_"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"

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

# gRPC channel arguments are C ints: milliseconds and byte counts must fit.
_MAX_INT_ARG = 2**31 - 1
_MAX_MS_ARG_S = _MAX_INT_ARG // 1000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one line per problem, each naming its key."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listener(_Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)


class ProxyListener(Listener):
    # SO_REUSEPORT: a new bridge can bind the port before the old one drains
    # (zero-downtime restart on one host); off by default so two bridges never
    # share a port by accident. Workers always use it.
    reuse_port: bool = False
    # Plain unary JSON POSTs are served by a lean HTTP/1.1 path (http/fastpath.py)
    # that hands anything else to aiohttp on the same connection; false: aiohttp only.
    fast_path: bool = True


class AdminListener(Listener):
    port: int = Field(8081, ge=0, le=65535)
    # GET /playground (http/playground.py): a page that calls real methods through
    # the proxy listener. On by default, as the spec lists it among the admin
    # endpoints; the admin port is for operators and must never be public.
    playground: bool = True


class ServiceFilter(_Section):
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)


class Keepalive(_Section):
    # A default gRPC server (core, Go and Java alike) accepts one ping per
    # 5 minutes while it sends nothing and answers the third early one with
    # GOAWAY too_many_pings (grpc/doc/keepalive.md, "Defaults Values";
    # chttp2 ping_abuse_policy.cc). Recent gRPC keeps pinging a silent call
    # about once a minute (the max_pings_wo_data_throttle experiment, on in
    # grpcio 1.85), so with any interval under 5 minutes a call that stays
    # silent for a few minutes is cut by a default server (measured); 300 s
    # never trips it.
    time_s: float = Field(300.0, gt=0, le=_MAX_MS_ARG_S)
    timeout_s: float = Field(20.0, gt=0, le=_MAX_MS_ARG_S)
    # A default server allows a ping on a connection without calls only every
    # 2 hours: pinging idle connections would get them closed.
    permit_without_calls: bool = False


class Reconnect(_Section):
    # gRPC's defaults (1 s growing to 120 s, grpc/doc/connection-backoff.md)
    # keep a sidecar failing for minutes after its neighbour is back.
    initial_backoff_s: float = Field(0.25, ge=0.1, le=_MAX_MS_ARG_S)  # gRPC floors both at 100 ms
    max_backoff_s: float = Field(5.0, ge=0.1, le=_MAX_MS_ARG_S)
    # gRPC's min_reconnect_backoff_ms: how long one connection attempt may
    # take (20 s by default). While the first attempt hangs (an address that
    # drops SYNs) calls wait, so it is kept short.
    connect_timeout_s: float = Field(5.0, ge=0.1, le=_MAX_MS_ARG_S)

    @model_validator(mode="after")
    def _order(self) -> Reconnect:
        if self.initial_backoff_s > self.max_backoff_s:
            raise ValueError("initial_backoff_s must not exceed max_backoff_s")
        return self


class RetryThrottle(_Section):
    # gRPC's retryThrottling (A6): each failure costs a token, each success
    # gives back token_ratio; retries stop while tokens <= max_tokens / 2.
    max_tokens: int = Field(10, gt=0, le=1000)  # gRPC parses it as an integer
    token_ratio: float = Field(0.1, gt=0, le=1)


class Retries(_Section):
    """Retries of unary calls that fail UNAVAILABLE, done by gRPC itself (A6 retryPolicy)."""

    max_attempts: int = Field(3, ge=1, le=5)  # gRPC caps maxAttempts at 5; 1 turns retries off
    initial_backoff_s: float = Field(0.1, gt=0)
    max_backoff_s: float = Field(1.0, gt=0)
    backoff_multiplier: float = Field(2.0, ge=1)
    throttle: RetryThrottle = Field(default_factory=RetryThrottle)

    @model_validator(mode="after")
    def _order(self) -> Retries:
        if self.initial_backoff_s > self.max_backoff_s:
            raise ValueError("initial_backoff_s must not exceed max_backoff_s")
        return self


class Tls(_Section):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    @model_validator(mode="after")
    def _files(self) -> Tls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        named = [n for n in ("ca_file", "cert_file", "key_file", "server_name") if getattr(self, n)]
        if named and not self.enabled:
            # Silently talking plaintext to an upstream configured with certificates is worse
            # than refusing to start.
            raise ValueError(f"{', '.join(named)} set but enabled is false")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None:
                _check_pem(name, Path(path))
        return self


def _check_pem(name: str, path: Path) -> None:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{name} {str(path)!r} is not a readable file") from exc
    if b"-----BEGIN " not in text:
        raise ValueError(f"{name} {str(path)!r} is not PEM (no '-----BEGIN' line)")


def _no_retries(value: Any) -> Any:
    """``retries: 0`` or ``retries: false`` turn retries off."""
    if value is False or (isinstance(value, int) and not isinstance(value, bool) and value == 0):
        return {"max_attempts": 1}
    return value


class Upstream(_Section):
    name: str = "default"
    targets: list[str] = Field(min_length=1)
    reflection: bool = True
    descriptor_sets: list[Path] = Field(default_factory=list)
    services: ServiceFilter = Field(default_factory=ServiceFilter)
    pool_size: int = Field(2, ge=1, le=64)
    keepalive: Keepalive = Field(default_factory=Keepalive)
    reconnect: Reconnect = Field(default_factory=Reconnect)
    retries: Retries = Field(default_factory=Retries)
    compression: Literal["none", "gzip"] = "none"
    # Which HTTP/2 client carries proxied calls: the bridge's own, on the event
    # loop (several times cheaper per call), or grpcio's. Reflection and health
    # checks always use grpcio. Targets only grpc can resolve (dns://server/,
    # unix-abstract:) use grpcio either way.
    transport: Literal["native", "grpcio"] = "native"
    tls: Tls = Field(default_factory=Tls)
    authority: str | None = None
    timeout_s: float = Field(30.0, gt=0)
    max_timeout_s: float = Field(300.0, gt=0)
    health_check: bool = False
    health_service: str = ""  # "" asks about the whole server
    health_interval_s: float = Field(5.0, gt=0)
    # How often DNS names in targets are resolved again (and TLS files re-read);
    # a changed address set rebuilds the channels. 0 turns it off.
    resolve_interval_s: float = Field(10.0, ge=0)
    max_send_message_bytes: int = Field(4 * 1024 * 1024, gt=0, le=_MAX_INT_ARG)
    max_receive_message_bytes: int = Field(4 * 1024 * 1024, gt=0, le=_MAX_INT_ARG)
    # Bytes of response messages one stream may hold for a client that reads
    # slower than the upstream sends; past it the upstream is paused by HTTP/2
    # flow control. Of the order of the stream window (4 MiB) the native
    # transport grants, which is also the floor of what it holds.
    stream_buffer_bytes: int = Field(4 * 1024 * 1024, ge=65535, le=_MAX_INT_ARG)

    @field_validator("retries", mode="before")
    @classmethod
    def _retries(cls, value: Any) -> Any:
        return _no_retries(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a valid name (letters, digits, '_', '.', '-')")
        return value

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for target in value:
            check_target(target)
        return value

    @model_validator(mode="after")
    def _source(self) -> Upstream:
        if not self.reflection and not self.descriptor_sets:
            raise ValueError("needs reflection: true or at least one descriptor_sets file")
        for path in self.descriptor_sets:
            if not Path(path).is_file():
                raise ValueError(f"descriptor_sets: {str(path)!r} is not a readable file")
        if self.timeout_s > self.max_timeout_s:
            raise ValueError("timeout_s must not exceed max_timeout_s")
        return self


class CustomPattern(_Section):
    kind: str
    path: str


class RouteRule(_Section):
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


class JsonSettings(_Section):
    use_proto_names: bool = False
    emit_unpopulated: bool = True
    enums_as_ints: bool = False
    ignore_unknown_fields: bool = False


class MetadataSettings(_Section):
    forward_headers: list[str] = Field(
        default_factory=lambda: ["x-request-id", "traceparent", "tracestate"]
    )
    # Keep the client's X-Forwarded-For and append its address: only when every
    # client comes through a proxy that sets the header itself. Off, a client
    # could name any address, so the bridge's x-forwarded-for is the peer alone.
    trust_forwarded_for: bool = False

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


class Limits(_Section):
    max_request_bytes: int = Field(4 * 1024 * 1024, gt=0)
    max_json_depth: int = Field(64, ge=1, le=1000)
    max_metadata_bytes: int = Field(8192, gt=0)
    # A request body (or one message of a request stream) must arrive whole within
    # this long of its head (of its first byte), else 408 and the connection closes:
    # a total, not an idle timeout, so a byte every few seconds can't hold a socket.
    # Also how long a request's head may take on the lean path (http/fastpath.py).
    body_read_timeout_s: float = Field(75.0, gt=0)


class RestSettings(_Section):
    ignore_unknown_query_parameters: bool = False


class DiscoverySettings(_Section):
    refresh_interval_s: float = Field(60.0, ge=0)  # 0 turns periodic refresh off
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)


class WebSocketSettings(_Section):
    heartbeat_s: float = Field(30.0, gt=0)
    max_message_size: int = Field(4 * 1024 * 1024, gt=0)
    # permessage-deflate (RFC 7692), aiohttp's own: when on, and the client offers
    # it (browsers do), every frame is deflated on the event loop. Off, as the
    # response compression (``compression:``) never applies to WebSocket.
    permessage_deflate: bool = False


class StreamSettings(_Section):
    # A stream with no message in either direction for this long ends with
    # DEADLINE_EXCEEDED (0: never). Streams have no default deadline, so this
    # is what frees upstream calls a forgotten client left open.
    idle_timeout_s: float = Field(300.0, ge=0)


# Browsers send origins in lower case, so a configured one must be too to ever match.
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\sA-Z]+$")


class Cors(_Section):
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


class CompressionSettings(_Section):
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


class LogSettings(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class ShutdownSettings(_Section):
    # Time /readyz reports 503 while still serving, so endpoints controllers
    # stop sending traffic before the listener closes.
    drain_s: float = Field(0.0, ge=0)
    # In-flight requests get this long to finish once the listener is closed.
    timeout_s: float = Field(25.0, gt=0)


#: The samplers of OTEL_TRACES_SAMPLER the bridge accepts (the SDK's built-in ones).
TraceSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]
TRACE_SAMPLERS: tuple[str, ...] = get_args(TraceSampler)


class TracingSettings(_Section):
    """OpenTelemetry traces (grpc_bridge/tracing/, docs/tracing.md); off by default.

    Each key is the YAML spelling of a standard ``OTEL_*`` variable; a variable
    that is set wins over its key (grpc_bridge/tracing/config.py), so the same
    image can be re-pointed by the environment an operator or a collector's
    injector sets.
    """

    enabled: bool = False
    #: OTEL_TRACES_EXPORTER: ``otlp``, ``console`` or ``none``, comma-separated.
    exporter: str = "otlp"
    #: OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL (``/v1/traces`` is added
    #: for http/protobuf); None: the protocol's default on localhost.
    endpoint: str | None = None
    #: OTEL_EXPORTER_OTLP_PROTOCOL.
    protocol: Literal["grpc", "http/protobuf"] = "http/protobuf"
    #: OTEL_SERVICE_NAME; None: a ``service.name`` in resource_attributes, else grpc-bridge.
    service_name: str | None = None
    #: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
    sampler: TraceSampler = "parentbased_always_on"
    sampler_arg: float | None = Field(None, ge=0, le=1)
    #: OTEL_RESOURCE_ATTRIBUTES, as a map.
    resource_attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("exporter")
    @classmethod
    def _exporters(cls, value: str) -> str:
        for name in value.split(","):
            if name.strip() not in ("otlp", "console", "none"):
                raise ValueError(f"{name.strip()!r} is not an exporter (otlp, console, none)")
        return value


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file, read with errors that name the file rather than a traceback."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data = _rename_json(_read_yaml(path)) if path is not None else {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {str(path)!r}: {exc.strerror or exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{str(path)!r} is not valid YAML{at}: {problem}"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{str(path)!r} must hold a mapping of settings at the top"])
    # YAML 1.1 reads `on:`, `yes:` or `1:` as non-string keys.
    odd = [repr(k) for k in data if not isinstance(k, str)]
    if odd:
        keys = ", ".join(odd)
        raise ConfigError([f"{str(path)!r}: {keys}: keys must be setting names (strings)"])
    return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    listen: ProxyListener = Field(default_factory=ProxyListener)
    admin: AdminListener = Field(default_factory=AdminListener)
    upstreams: list[Upstream] = Field(default_factory=list)
    #: Shorthand: ``[NAME=]TARGET`` entries separated by commas; replaces ``upstreams``.
    upstream: str | None = Field(None, exclude=True)
    routes: list[Route] = Field(default_factory=list)
    json_: JsonSettings = Field(
        default_factory=JsonSettings,
        # "json" would shadow BaseModel.json, hence json_. An alias escapes
        # env_prefix, so the only alias is the prefixed environment name; the
        # YAML file and CLI overrides spell it "json" and are renamed (_rename_json).
        validation_alias=f"{ENV_PREFIX}json",
    )
    metadata: MetadataSettings = Field(default_factory=MetadataSettings)
    limits: Limits = Field(default_factory=Limits)
    rest: RestSettings = Field(default_factory=RestSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    websocket: WebSocketSettings = Field(default_factory=WebSocketSettings)
    cors: Cors = Field(default_factory=Cors)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    compression: CompressionSettings = Field(default_factory=CompressionSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    #: Processes sharing the proxy port (SO_REUSEPORT); the parent keeps the admin port.
    workers: int = Field(1, ge=1, le=64)

    # Set per load by load_settings(); class-level because pydantic-settings
    # builds sources from the class.
    _yaml_path: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls, cls._yaml_path)

    @model_validator(mode="after")
    def _upstreams(self) -> Settings:
        if self.upstream:
            object.__setattr__(self, "upstreams", parse_upstream_shorthand(self.upstream))
        if not self.upstreams:
            raise ValueError(
                "upstreams: at least one upstream is required "
                "(--upstream HOST:PORT, GRPC_BRIDGE_UPSTREAM or upstreams: in the config file)"
            )
        seen: set[str] = set()
        for up in self.upstreams:
            if up.name in seen:
                raise ValueError(f"upstreams: the name {up.name!r} is used twice")
            seen.add(up.name)
        for i, route in enumerate(self.routes):
            if route.upstream is not None and route.upstream not in seen:
                raise ValueError(f"routes[{i}].upstream: no upstream is named {route.upstream!r}")
        if self.listen.port == self.admin.port and self.listen.port != 0:
            raise ValueError("admin.port: must differ from listen.port")
        return self

    def upstream_named(self, name: str) -> Upstream:
        for up in self.upstreams:
            if up.name == name:
                return up
        raise KeyError(name)


def check_target(target: str) -> None:
    """Accept what grpc's resolvers accept that makes sense for a sidecar."""
    if target.startswith(_SCHEMES):
        if target.rstrip("/").endswith(":"):
            raise ValueError(f"{target!r} has no address after the scheme")
        return
    match = _HOST_PORT.match(target)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"{target!r} is not HOST:PORT, [IPV6]:PORT or dns:///HOST:PORT")
    host = match.group(1)
    if not host.startswith("[") and any(not 0 < len(label) < 64 for label in host.split(".")):
        raise ValueError(
            f"{target!r}: every dot-separated part of the host name needs 1-63 characters"
        )


def parse_upstream_shorthand(value: str | Sequence[str]) -> list[Upstream]:
    """``[NAME=]TARGET`` entries; entries sharing a name are replicas of one upstream."""
    entries = value.split(",") if isinstance(value, str) else list(value)
    targets: dict[str, list[str]] = {}
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        name, sep, target = entry.partition("=")
        if not sep:
            name, target = "default", entry
        targets.setdefault(name.strip(), []).append(target.strip())
    return [Upstream(name=name, targets=t) for name, t in targets.items()]


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from every source; raises ConfigError listing every problem."""
    path = config_file or os.environ.get(CONFIG_ENV) or None
    Settings._yaml_path = Path(path) if path else None
    try:
        return Settings(**_rename_json(dict(overrides or {})))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from exc
    except SettingsError as exc:
        # Raised for environment values that are not valid JSON where a list or map is expected.
        raise ConfigError([f"{_env_names(exc)}: not valid JSON (lists and maps are JSON)"]) from exc
    finally:
        Settings._yaml_path = None


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem, naming the key, or the variable that set it (settings_hints.py)."""
    lines = []
    for err in exc.errors(include_url=False):
        path = [_key_part(part) for part in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        unknown = err["type"] == "extra_forbidden"
        if unknown:
            message = "unknown key"
        shown = _format_loc(err["loc"])
        lines.append(
            settings_hints.explain(
                Settings,
                path,
                shown,
                message,
                unknown=unknown,
                prefix=ENV_PREFIX,
                environ=os.environ,
            )
        )
    return lines


def stray_variables() -> list[str]:
    """Set ``GRPC_BRIDGE_*`` variables that configure nothing but look like a mistyped setting."""
    return settings_hints.stray_variables(Settings, ENV_PREFIX, os.environ)


def _key_part(part: int | str) -> int | str:
    return "json" if part in ("json_", f"{ENV_PREFIX}json") else part


def _env_names(exc: SettingsError) -> str:
    """The variables actually set for the field pydantic-settings could not parse."""
    field = re.search(r'field "([^"]+)"', str(exc))
    if field is None:
        return "environment"
    stem = f"{ENV_PREFIX}{field.group(1).rstrip('_').upper()}"
    names = sorted(k for k in os.environ if k.upper() == stem or k.upper().startswith(stem + "__"))
    return ", ".join(names) or stem


def _rename_json(data: dict[str, Any]) -> dict[str, Any]:
    """The ``json`` key of files and overrides is the ``json_`` field."""
    if "json" in data:
        data = dict(data)
        data["json_"] = data.pop("json")
    return data


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = "json" if part in ("json_", f"{ENV_PREFIX}json") else str(part)
        else:
            out += f".{part}"
    return out
