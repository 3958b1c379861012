"""Observability settings: logs (``log:``) and OpenTelemetry traces (``tracing:``)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator

from grpc_bridge.settings.base import Section


class LogSettings(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


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


class TracingSettings(Section):
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
