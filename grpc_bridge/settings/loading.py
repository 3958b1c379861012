"""The settings model and its sources: CLI overrides, ``GRPC_BRIDGE_*`` variables, the YAML file.

Errors name the key, or the variable that set it (hints.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

import grpc_bridge.settings.hints as hints
from grpc_bridge.settings.base import CONFIG_ENV, ENV_PREFIX, ConfigError
from grpc_bridge.settings.http import (
    AdminListener,
    CompressionSettings,
    Cors,
    DiscoverySettings,
    JsonSettings,
    Limits,
    MetadataSettings,
    ProxyListener,
    RestSettings,
    Route,
    ShutdownSettings,
    StreamSettings,
    WebSocketSettings,
)
from grpc_bridge.settings.observability import LogSettings, TracingSettings
from grpc_bridge.settings.upstream import Upstream, parse_upstream_shorthand


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
    """One line per problem, naming the key, or the variable that set it (hints.py)."""
    lines = []
    for err in exc.errors(include_url=False):
        path = [_key_part(part) for part in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        unknown = err["type"] == "extra_forbidden"
        if unknown:
            message = "unknown key"
        shown = _format_loc(err["loc"])
        lines.append(
            hints.explain(
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
    return hints.stray_variables(Settings, ENV_PREFIX, os.environ)


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
