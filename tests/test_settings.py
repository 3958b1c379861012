"""Configuration sources, precedence and error reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpc_bridge.settings import ConfigError, load_settings, parse_upstream_shorthand


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("GRPC_BRIDGE_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    return path


BASIC = """
listen: {host: 127.0.0.1, port: 9000}
upstreams:
  - name: shop
    targets: ["127.0.0.1:50051"]
    timeout_s: 5
json: {use_proto_names: true}
"""


def test_defaults_match_the_spec(tmp_path: Path) -> None:
    s = load_settings(None, {"upstream": "127.0.0.1:50051"})
    assert (s.listen.host, s.listen.port) == ("0.0.0.0", 8080)
    assert (s.admin.host, s.admin.port) == ("0.0.0.0", 8081)
    up = s.upstreams[0]
    assert up.name == "default" and up.targets == ["127.0.0.1:50051"]
    assert up.reflection and up.pool_size == 2 and up.timeout_s == 30 and up.max_timeout_s == 300
    # 300, not the spec's 60: anything under a default server's 5-minute ping
    # allowance ends silent calls with GOAWAY too_many_pings (see README, Upstreams).
    assert (up.keepalive.time_s, up.keepalive.timeout_s) == (300, 20)
    assert s.json_.emit_unpopulated and not s.json_.use_proto_names
    assert s.metadata.forward_headers == ["x-request-id", "traceparent", "tracestate"]
    assert (s.limits.max_request_bytes, s.limits.max_json_depth, s.limits.max_metadata_bytes) == (
        4194304,
        64,
        8192,
    )
    # The lean path's former constant for a request begun; now one setting for both paths.
    assert s.limits.body_read_timeout_s == 75
    assert s.discovery.refresh_interval_s == 60
    assert s.websocket.heartbeat_s == 30 and s.websocket.max_message_size == 4194304
    assert s.cors.allowed_origins == [] and s.log.format == "auto"


def test_yaml_file(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, BASIC))
    assert s.listen.port == 9000 and s.listen.host == "127.0.0.1"
    assert s.upstreams[0].name == "shop" and s.upstreams[0].timeout_s == 5
    assert s.json_.use_proto_names


def test_env_overrides_yaml_and_flags_override_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, BASIC)
    monkeypatch.setenv("GRPC_BRIDGE_LISTEN__PORT", "9100")
    monkeypatch.setenv("GRPC_BRIDGE_JSON__ENUMS_AS_INTS", "true")
    s = load_settings(path)
    assert s.listen.port == 9100
    assert s.listen.host == "127.0.0.1"  # nested dicts merge across sources
    assert s.json_.enums_as_ints and s.json_.use_proto_names
    s = load_settings(path, {"listen": {"port": 9200}})
    assert s.listen.port == 9200


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_BRIDGE_CONFIG", str(write(tmp_path, BASIC)))
    assert load_settings().upstreams[0].name == "shop"


def test_lists_from_env_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GRPC_BRIDGE_UPSTREAMS", '[{"name": "a", "targets": ["10.0.0.1:1", "10.0.0.2:1"]}]'
    )
    monkeypatch.setenv("GRPC_BRIDGE_CORS__ALLOWED_ORIGINS", '["https://app.example"]')
    s = load_settings()
    assert s.upstreams[0].targets == ["10.0.0.1:1", "10.0.0.2:1"]
    assert s.cors.allowed_origins == ["https://app.example"]


def test_upstream_shorthand_env_and_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, BASIC)
    monkeypatch.setenv("GRPC_BRIDGE_UPSTREAM", "127.0.0.1:6000")
    assert [u.targets for u in load_settings(path).upstreams] == [["127.0.0.1:6000"]]
    s = load_settings(path, {"upstream": "a=127.0.0.1:7000,a=127.0.0.1:7001,b=dns:///b.ns:80"})
    assert [(u.name, u.targets) for u in s.upstreams] == [
        ("a", ["127.0.0.1:7000", "127.0.0.1:7001"]),
        ("b", ["dns:///b.ns:80"]),
    ]


def test_shorthand_parsing() -> None:
    ups = parse_upstream_shorthand(["x=[::1]:50051", "127.0.0.1:1"])
    assert [(u.name, u.targets) for u in ups] == [
        ("x", ["[::1]:50051"]),
        ("default", ["127.0.0.1:1"]),
    ]


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("upstreams: []", "upstreams: at least one upstream is required"),
        ("upstreams: [{targets: []}]", "upstreams[0].targets:"),
        ("upstreams: [{targets: ['nope']}]", "upstreams[0].targets: 'nope' is not HOST:PORT"),
        ("upstreams: [{targets: ['h:99999']}]", "upstreams[0].targets: 'h:99999' is not HOST:PORT"),
        ("listen: {port: -1}\nupstreams: [{targets: ['h:1']}]", "listen.port:"),
        ("listen: {prot: 1}\nupstreams: [{targets: ['h:1']}]", "listen.prot: unknown key"),
        ("bogus: 1\nupstreams: [{targets: ['h:1']}]", "bogus: unknown key"),
        ("limits: {max_json_depth: 0}\nupstreams: [{targets: ['h:1']}]", "limits.max_json_depth:"),
        (
            "limits: {body_read_timeout_s: 0}\nupstreams: [{targets: ['h:1']}]",
            "limits.body_read_timeout_s:",
        ),
        (
            "json: {emit_unpopulated: maybe}\nupstreams: [{targets: ['h:1']}]",
            "json.emit_unpopulated:",
        ),
        (
            "upstreams: [{targets: ['h:1'], reflection: false}]",
            "upstreams[0]: needs reflection: true or at least one descriptor_sets file",
        ),
        (
            "upstreams: [{targets: ['h:1'], descriptor_sets: [/no/such.pb]}]",
            "is not a readable file",
        ),
        (
            "upstreams: [{name: a, targets: ['h:1']}, {name: a, targets: ['h:2']}]",
            "the name 'a' is used twice",
        ),
        (
            "metadata: {forward_headers: [grpc-timeout]}\nupstreams: [{targets: ['h:1']}]",
            "metadata.forward_headers: 'grpc-timeout' is reserved",
        ),
        (
            "upstreams: [{targets: ['h:1'], tls: {enabled: true, cert_file: /x}}]",
            "cert_file and key_file go together",
        ),
        (
            "routes: [{method: a.B/C}]\nupstreams: [{targets: ['h:1']}]",
            "routes[0]: exactly one of get, put, post, delete, patch, custom is required",
        ),
        (
            "routes: [{method: nope, get: /x}]\nupstreams: [{targets: ['h:1']}]",
            "routes[0].method: 'nope' is not a full method name",
        ),
        ("listen: [1\n", "is not valid YAML at line"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_invalid_configuration_names_the_key(tmp_path: Path, yaml_text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, yaml_text))
    assert any(expected in line for line in info.value.problems), info.value.problems


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = "listen: {port: -1}\nadmin: {port: 70000}\nupstreams: [{targets: ['x']}]"
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    keys = [line.split(":")[0] for line in info.value.problems]
    assert keys == ["listen.port", "admin.port", "upstreams[0].targets"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml")


def test_bad_json_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_BRIDGE_UPSTREAMS", "not json")
    with pytest.raises(ConfigError, match="GRPC_BRIDGE_UPSTREAMS: not valid JSON"):
        load_settings()


def test_unprefixed_json_env_var_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only GRPC_BRIDGE_* configures the bridge; a pod's own JSON=... must not."""
    monkeypatch.setenv("JSON__USE_PROTO_NAMES", "true")
    monkeypatch.setenv("JSON", '{"enums_as_ints": true}')
    s = load_settings(None, {"upstream": "127.0.0.1:1"})
    assert not s.json_.use_proto_names and not s.json_.enums_as_ints


def test_bad_prefixed_json_env_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_BRIDGE_JSON__EMIT_UNPOPULATED", "maybe")
    with pytest.raises(ConfigError, match=r"json\.emit_unpopulated"):
        load_settings(None, {"upstream": "127.0.0.1:1"})


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "upstreams: [{targets: ['h:1'], keepalive: {time_s: 3000000}}]",
            "upstreams[0].keepalive.time_s: Input should be less than or equal to 2147483",
        ),
        (
            "upstreams: [{targets: ['h:1'], max_receive_message_bytes: 4294967296}]",
            "upstreams[0].max_receive_message_bytes: Input should be less than or equal to",
        ),
        ("upstreams: [{targets: ['a..b:50051']}]", "dot-separated part of the host"),
        ("upstreams: [{targets: ['h:1']}]\non: x\n", "True: keys must be setting names"),
    ],
)
def test_values_serve_could_not_use_are_config_errors(
    tmp_path: Path, yaml_text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, yaml_text))
    assert any(expected in line for line in info.value.problems), info.value.problems


@pytest.mark.parametrize(
    ("name", "value"),
    [("GRPC_BRIDGE_METADATA__FORWARD_HEADERS", "x-a"), ("GRPC_BRIDGE_JSON", "{bad")],
)
def test_bad_json_env_names_the_variable_that_was_set(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"upstream": "127.0.0.1:1"})
    assert info.value.problems == [f"{name}: not valid JSON (lists and maps are JSON)"]
