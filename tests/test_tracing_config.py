"""Whether tracing is on and how: the tracing: settings, the OTEL_* variables, their precedence."""

from __future__ import annotations

import asyncio
import sys

import pytest

from grpc_bridge.settings import ConfigError, TracingSettings
from grpc_bridge.tracing.config import TraceConfig, check_tracing, tracing_config
from tests.helpers.process import run_cli
from tests.helpers.servers import RunningServer
from tests.helpers.tracing_tools import tracing_env

ON = TracingSettings(enabled=True)


def resolve(settings: TracingSettings = ON, **environ: str) -> TraceConfig | None:
    return tracing_config(settings, environ)


def test_off_by_default() -> None:
    assert resolve(TracingSettings()) is None


def test_defaults_when_enabled() -> None:
    config = resolve()
    assert config == TraceConfig(
        exporters=("otlp",),
        protocol="http/protobuf",
        endpoint="http://localhost:4318/v1/traces",
        sampler="parentbased_always_on",
        sampler_arg=None,
        resource={"service.name": "grpc-bridge"},
    )


def test_otel_traces_exporter_turns_tracing_on() -> None:
    config = resolve(TracingSettings(), OTEL_TRACES_EXPORTER="console")
    assert config is not None and config.exporters == ("console",)


@pytest.mark.parametrize(
    ("settings", "environ"),
    [
        (ON, {"OTEL_SDK_DISABLED": "true"}),
        (ON, {"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}),
        (ON, {"OTEL_TRACES_EXPORTER": "none"}),
        (TracingSettings(enabled=True, exporter="none"), {}),
    ],
)
def test_turned_off(settings: TracingSettings, environ: dict[str, str]) -> None:
    assert tracing_config(settings, environ) is None


def test_otel_variables_win_over_the_yaml() -> None:
    yaml = TracingSettings(
        enabled=True,
        exporter="console",
        endpoint="http://yaml:4318",
        protocol="http/protobuf",
        service_name="from-yaml",
        sampler="always_off",
        resource_attributes={"team": "edge", "tier": "yaml"},
    )
    config = resolve(
        yaml,
        OTEL_TRACES_EXPORTER="otlp,console",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317",
        OTEL_SERVICE_NAME="from-env",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.25",
        OTEL_RESOURCE_ATTRIBUTES="tier=env,region=eu%2Dwest",
    )
    assert config == TraceConfig(
        exporters=("otlp", "console"),
        protocol="grpc",
        endpoint="http://collector:4317",
        sampler="parentbased_traceidratio",
        sampler_arg=0.25,
        resource={"service.name": "from-env", "team": "edge", "tier": "env", "region": "eu-west"},
    )


def test_yaml_applies_where_no_variable_is_set() -> None:
    yaml = TracingSettings(enabled=True, endpoint="http://yaml:4318/", sampler_arg=0.5)
    config = resolve(yaml, OTEL_EXPORTER_OTLP_ENDPOINT="")
    assert config is not None
    assert config.endpoint == "http://yaml:4318/v1/traces"
    assert config.sampler_arg == 0.5


def test_the_traces_endpoint_is_used_as_given() -> None:
    config = resolve(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://base:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://traces:9999/custom",
    )
    assert config is not None and config.endpoint == "http://traces:9999/custom"


def test_grpc_endpoint_gets_no_path() -> None:
    config = resolve(OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    assert config is not None and config.endpoint == "http://localhost:4317"


def test_bad_variables_are_named() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(
            OTEL_TRACES_EXPORTER="zipkin",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/json",
            OTEL_TRACES_SAMPLER="sometimes",
            OTEL_TRACES_SAMPLER_ARG="half",
        )
    assert info.value.problems == [
        "OTEL_TRACES_EXPORTER: 'zipkin' is not supported (otlp, console or none)",
        "OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not supported (grpc or http/protobuf)",
        "OTEL_TRACES_SAMPLER: 'sometimes' is not one of always_on, always_off, traceidratio, "
        "parentbased_always_on, parentbased_always_off, parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG: 'half' is not a number",
    ]


def test_yaml_keys_are_validated() -> None:
    with pytest.raises(ValueError, match="'jaeger' is not an exporter"):
        TracingSettings(exporter="otlp,jaeger")


async def test_check_config_refuses_a_bad_otel_variable() -> None:
    code, _, err = await run_cli(
        "check-config",
        "--upstream",
        "127.0.0.1:50051",
        env=tracing_env(OTEL_TRACES_EXPORTER="otlp", OTEL_TRACES_SAMPLER_ARG="2"),
    )
    assert code == 2
    assert err == "grpc-bridge: config: OTEL_TRACES_SAMPLER_ARG: 2 is not between 0 and 1\n"


async def test_serve_without_opentelemetry_loaded_when_tracing_is_off(
    upstream: RunningServer,
) -> None:
    """Off, the bridge starts, serves and stops without importing any OpenTelemetry module."""
    script = (
        "import asyncio, sys\n"
        "import aiohttp\n"
        "from tests.helpers.harness import running_bridge\n"
        "async def main():\n"
        f"    async with running_bridge({upstream.target!r}) as bridge:\n"
        "        status, _, _ = await bridge.post('/bridgetest.v1.TestService/Echo', {})\n"
        "        assert status == 200, status\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=tracing_env(),
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines()[-1] == "[]"


def test_service_name_setting_wins_over_a_service_name_attribute() -> None:
    attribute = TracingSettings(enabled=True, resource_attributes={"service.name": "attr"})
    assert resolve(attribute).resource == {"service.name": "attr"}
    both = TracingSettings(
        enabled=True, service_name="named", resource_attributes={"service.name": "attr"}
    )
    assert resolve(both).resource == {"service.name": "named"}
    env = resolve(both, OTEL_RESOURCE_ATTRIBUTES="service.name=env-attr")
    assert env is not None and env.resource == {"service.name": "env-attr"}
    env = resolve(both, OTEL_RESOURCE_ATTRIBUTES="service.name=env-attr", OTEL_SERVICE_NAME="svc")
    assert env is not None and env.resource == {"service.name": "svc"}


def test_tracing_on_without_the_sdk_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A None entry makes the import system report the module as absent.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    assert check_tracing(TracingSettings(), {}) is None  # off: the SDK is not needed
    with pytest.raises(ConfigError, match=r"pip install 'grpc-bridge\[otel\]'"):
        check_tracing(TracingSettings(), {"OTEL_TRACES_EXPORTER": "otlp"})
