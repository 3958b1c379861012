"""Configuration: the only package that reads files and the environment for settings.

Sources, highest precedence first (pydantic-settings ``settings_customise_sources``,
in loading.py):

1. CLI flags (passed in as init keyword arguments by ``cli.py``),
2. ``GRPC_BRIDGE_*`` environment variables, ``__`` between nesting levels,
   lists and maps as JSON,
3. the YAML file (``--config FILE`` or ``GRPC_BRIDGE_CONFIG``),
4. the defaults in the section modules.

Dicts merge across sources; lists replace. The keys are the stable surface of
``shared/spec/configuration.md``.

The modules, lowest first: base.py (prefix, ConfigError, the section base),
upstream.py (``upstreams:``), http.py (what clients see: listeners, routes,
limits, streams, WebSocket, CORS, compression, shutdown), observability.py
(``log:``, ``tracing:``), hints.py (the closest key or variable in errors) and
loading.py (the ``Settings`` model, its sources, ``load_settings``). Import
names from here; the split is an internal layout.
"""

from __future__ import annotations

from grpc_bridge.settings.base import CONFIG_ENV, ENV_PREFIX, ConfigError
from grpc_bridge.settings.http import (
    BRIDGE_METADATA,
    RESERVED_HEADERS,
    RESERVED_PREFIXES,
    AdminListener,
    Coding,
    CompressionSettings,
    Cors,
    CustomPattern,
    DiscoverySettings,
    JsonSettings,
    Limits,
    Listener,
    MetadataSettings,
    ProxyListener,
    RestSettings,
    Route,
    RouteRule,
    ShutdownSettings,
    StreamSettings,
    WebSocketSettings,
)
from grpc_bridge.settings.loading import (
    Settings,
    format_validation_error,
    load_settings,
    stray_variables,
)
from grpc_bridge.settings.observability import (
    TRACE_SAMPLERS,
    LogSettings,
    TraceSampler,
    TracingSettings,
)
from grpc_bridge.settings.upstream import (
    Keepalive,
    Reconnect,
    Retries,
    RetryThrottle,
    ServiceFilter,
    Tls,
    Upstream,
    check_target,
    parse_upstream_shorthand,
)

__all__ = [
    "BRIDGE_METADATA",
    "CONFIG_ENV",
    "ENV_PREFIX",
    "RESERVED_HEADERS",
    "RESERVED_PREFIXES",
    "TRACE_SAMPLERS",
    "AdminListener",
    "Coding",
    "CompressionSettings",
    "ConfigError",
    "Cors",
    "CustomPattern",
    "DiscoverySettings",
    "JsonSettings",
    "Keepalive",
    "Limits",
    "Listener",
    "LogSettings",
    "MetadataSettings",
    "ProxyListener",
    "Reconnect",
    "RestSettings",
    "Retries",
    "RetryThrottle",
    "Route",
    "RouteRule",
    "ServiceFilter",
    "Settings",
    "ShutdownSettings",
    "StreamSettings",
    "Tls",
    "TraceSampler",
    "TracingSettings",
    "Upstream",
    "WebSocketSettings",
    "check_target",
    "format_validation_error",
    "load_settings",
    "parse_upstream_shorthand",
    "stray_variables",
]
