"""Whether tracing is on, and how: the ``tracing:`` settings and the ``OTEL_*`` variables.

Precedence: a standard ``OTEL_*`` variable that is set (non-empty) wins over
its ``tracing:`` key, which wins over the default. The OpenTelemetry
specification makes the environment the operator's knob (collector injectors,
the Helm chart's ``env``), so the YAML is the image's default and the
environment re-points it without editing the file.

On/off, in this order:

1. ``OTEL_SDK_DISABLED=true``: off, whatever else is set;
2. the exporters (``OTEL_TRACES_EXPORTER``, else ``tracing.exporter``) are
   all ``none``: off;
3. ``tracing.enabled: true`` or ``OTEL_TRACES_EXPORTER`` set: on;
4. otherwise off (the default: OpenTelemetry is not even imported).

Nothing here imports OpenTelemetry; a bad variable raises
:class:`~grpc_bridge.settings.ConfigError` naming it, at start-up.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import unquote

from grpc_bridge.settings import TRACE_SAMPLERS, ConfigError, TracingSettings

Protocol = Literal["grpc", "http/protobuf"]

_EXPORTERS = ("otlp", "console", "none")
DEFAULT_SERVICE_NAME = "grpc-bridge"
_PROTOCOLS: tuple[Protocol, ...] = ("grpc", "http/protobuf")
#: The OTLP defaults of the specification, per protocol.
_DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """The resolved tracing configuration (only made when tracing is on)."""

    exporters: tuple[str, ...]
    protocol: Protocol
    #: The full URL spans are sent to (``/v1/traces`` included for http/protobuf).
    endpoint: str
    sampler: str
    sampler_arg: float | None
    #: The resource, ``service.name`` included.
    resource: Mapping[str, str]


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _truthy(environ: Mapping[str, str], name: str) -> bool:
    return (_env(environ, name) or "").lower() == "true"


def tracing_config(settings: TracingSettings, environ: Mapping[str, str]) -> TraceConfig | None:
    """The configuration when tracing is on, None when off; see the module docstring."""
    if _truthy(environ, "OTEL_SDK_DISABLED"):
        return None
    problems: list[str] = []
    exporter_env = _env(environ, "OTEL_TRACES_EXPORTER")
    exporters = tuple(
        name
        for name in (n.strip().lower() for n in (exporter_env or settings.exporter).split(","))
        if name
    )
    for name in exporters:
        if name not in _EXPORTERS:
            problems.append(
                f"OTEL_TRACES_EXPORTER: {name!r} is not supported (otlp, console or none)"
            )
    protocol_env = _env(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env(
        environ, "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol_env is not None and protocol_env not in _PROTOCOLS:
        problems.append(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol_env!r} is not supported "
            "(grpc or http/protobuf)"
        )
    sampler = _env(environ, "OTEL_TRACES_SAMPLER") or settings.sampler
    if sampler not in TRACE_SAMPLERS:
        problems.append(
            f"OTEL_TRACES_SAMPLER: {sampler!r} is not one of {', '.join(TRACE_SAMPLERS)}"
        )
    sampler_arg = settings.sampler_arg
    arg_env = _env(environ, "OTEL_TRACES_SAMPLER_ARG")
    if arg_env is not None:
        try:
            sampler_arg = float(arg_env)
        except ValueError:
            problems.append(f"OTEL_TRACES_SAMPLER_ARG: {arg_env!r} is not a number")
        else:
            if not 0 <= sampler_arg <= 1:
                problems.append(f"OTEL_TRACES_SAMPLER_ARG: {arg_env} is not between 0 and 1")
    if problems:
        raise ConfigError(problems)
    exporters = tuple(name for name in exporters if name != "none")
    if not exporters or not (settings.enabled or exporter_env is not None):
        return None
    protocol = cast("Protocol", protocol_env or settings.protocol)
    return TraceConfig(
        exporters=exporters,
        protocol=protocol,
        endpoint=_endpoint(settings, environ, protocol),
        sampler=sampler,
        sampler_arg=sampler_arg,
        resource=_resource(settings, environ),
    )


def _endpoint(settings: TracingSettings, environ: Mapping[str, str], protocol: Protocol) -> str:
    # The signal-specific variable is the full URL; the general one is a base
    # URL to which http/protobuf adds the signal's path (OTLP exporter spec).
    traces = _env(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces is not None:
        return traces
    base = _env(environ, "OTEL_EXPORTER_OTLP_ENDPOINT") or settings.endpoint
    base = base or _DEFAULT_ENDPOINTS[protocol]
    if protocol == "http/protobuf":
        return base.rstrip("/") + "/v1/traces"
    return base


def _resource(settings: TracingSettings, environ: Mapping[str, str]) -> dict[str, str]:
    # As in the SDK, the service name setting wins over a service.name attribute.
    resource = dict(settings.resource_attributes)
    if settings.service_name is not None:
        resource["service.name"] = settings.service_name
    # W3C Baggage-like list: key=value pairs, comma-separated, values percent-encoded.
    for item in (_env(environ, "OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            resource[key.strip()] = unquote(value.strip())
    service = _env(environ, "OTEL_SERVICE_NAME")
    if service is not None:
        resource["service.name"] = service
    resource.setdefault("service.name", DEFAULT_SERVICE_NAME)
    return resource


def check_tracing(settings: TracingSettings, environ: Mapping[str, str]) -> TraceConfig | None:
    """:func:`tracing_config`, and when on, the SDK installed (else a ConfigError saying how)."""
    config = tracing_config(settings, environ)
    if config is not None and importlib.util.find_spec("opentelemetry.sdk") is None:
        raise ConfigError(
            [
                "tracing: on (tracing.enabled or OTEL_TRACES_EXPORTER), but the OpenTelemetry "
                "SDK is not installed: pip install 'grpc-bridge[otel]'"
            ]
        )
    return config
