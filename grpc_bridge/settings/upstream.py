"""Upstream settings: targets, pool, keepalive, reconnects, retries, TLS (``upstreams:``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from grpc_bridge.settings.base import MAX_INT_ARG, MAX_MS_ARG_S, Section

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")


class ServiceFilter(Section):
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)


class Keepalive(Section):
    # A default gRPC server (core, Go and Java alike) accepts one ping per
    # 5 minutes while it sends nothing and answers the third early one with
    # GOAWAY too_many_pings (grpc/doc/keepalive.md, "Defaults Values";
    # chttp2 ping_abuse_policy.cc). Recent gRPC keeps pinging a silent call
    # about once a minute (the max_pings_wo_data_throttle experiment, on in
    # grpcio 1.85), so with any interval under 5 minutes a call that stays
    # silent for a few minutes is cut by a default server (measured); 300 s
    # never trips it.
    time_s: float = Field(300.0, gt=0, le=MAX_MS_ARG_S)
    timeout_s: float = Field(20.0, gt=0, le=MAX_MS_ARG_S)
    # A default server allows a ping on a connection without calls only every
    # 2 hours: pinging idle connections would get them closed.
    permit_without_calls: bool = False


class Reconnect(Section):
    # gRPC's defaults (1 s growing to 120 s, grpc/doc/connection-backoff.md)
    # keep a sidecar failing for minutes after its neighbour is back.
    initial_backoff_s: float = Field(0.25, ge=0.1, le=MAX_MS_ARG_S)  # gRPC floors both at 100 ms
    max_backoff_s: float = Field(5.0, ge=0.1, le=MAX_MS_ARG_S)
    # gRPC's min_reconnect_backoff_ms: how long one connection attempt may
    # take (20 s by default). While the first attempt hangs (an address that
    # drops SYNs) calls wait, so it is kept short.
    connect_timeout_s: float = Field(5.0, ge=0.1, le=MAX_MS_ARG_S)

    @model_validator(mode="after")
    def _order(self) -> Reconnect:
        if self.initial_backoff_s > self.max_backoff_s:
            raise ValueError("initial_backoff_s must not exceed max_backoff_s")
        return self


class RetryThrottle(Section):
    # gRPC's retryThrottling (A6): each failure costs a token, each success
    # gives back token_ratio; retries stop while tokens <= max_tokens / 2.
    max_tokens: int = Field(10, gt=0, le=1000)  # gRPC parses it as an integer
    token_ratio: float = Field(0.1, gt=0, le=1)


class Retries(Section):
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


class Tls(Section):
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


class Upstream(Section):
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
    # Retired: every call, reflection and health check goes over the bridge's
    # own HTTP/2 client. "grpcio" is still accepted, so an existing config
    # keeps starting, and logs a warning (docs/upstreams.md).
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
    max_send_message_bytes: int = Field(4 * 1024 * 1024, gt=0, le=MAX_INT_ARG)
    max_receive_message_bytes: int = Field(4 * 1024 * 1024, gt=0, le=MAX_INT_ARG)
    # Bytes of response messages one stream may hold for a client that reads
    # slower than the upstream sends; past it the upstream is paused by HTTP/2
    # flow control. Of the order of the stream window (4 MiB) the native
    # transport grants, which is also the floor of what it holds.
    stream_buffer_bytes: int = Field(4 * 1024 * 1024, ge=65535, le=MAX_INT_ARG)

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


def check_target(target: str) -> None:
    """Accept what grpc's resolvers accept that makes sense for a sidecar."""
    if target.startswith(_SCHEMES):
        if target.rstrip("/").endswith(":"):
            raise ValueError(f"{target!r} has no address after the scheme")
        if target.startswith("dns://") and not target.startswith("dns:///"):
            raise ValueError(
                f"{target!r} names a DNS server of its own, which the bridge does not query:"
                " names are resolved with the system resolver; use dns:///HOST:PORT"
            )
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
