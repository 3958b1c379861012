"""Upstream settings, target parsing, the addresses dialled and the TLS they are dialled with."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

import pytest

from grpc_bridge.settings import ConfigError, Upstream, load_settings
from grpc_bridge.upstream.dial import Address as Dialled
from grpc_bridge.upstream.dial import ConnectionPlan, addresses_of, tls_context
from grpc_bridge.upstream.resolver import (
    Address,
    ConnectionTargets,
    ResolveError,
    address_list,
    parse_target,
    resolve_targets,
    unresolved,
)
from grpc_bridge.upstream.tls import load_tls
from tests.helpers.certs import make_ca, write


def upstream(**extra: object) -> Upstream:
    return Upstream.model_validate({"targets": ["127.0.0.1:1"], **extra})


def problems(**extra: object) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_settings(None, {"upstreams": [{"targets": ["127.0.0.1:1"], **extra}]})
    return exc.value.problems


def test_defaults() -> None:
    up = upstream()
    assert (up.keepalive.time_s, up.keepalive.permit_without_calls) == (300, False)
    assert (up.reconnect.initial_backoff_s, up.reconnect.max_backoff_s) == (0.25, 5)
    assert up.retries.max_attempts == 3 and up.retries.throttle.max_tokens == 10
    assert up.compression == "none" and up.resolve_interval_s == 10
    assert up.health_check is False and up.health_interval_s == 5 and up.health_service == ""


@pytest.mark.parametrize("off", [0, False])
def test_retries_off(off: object) -> None:
    assert upstream(retries=off).retries.max_attempts == 1


def test_invalid_upstream_settings_name_the_key(tmp_path: Path) -> None:
    assert problems(retries={"max_attempts": 6}) == [
        "upstreams[0].retries.max_attempts: Input should be less than or equal to 5"
    ]
    assert problems(compression="brotli") == [
        "upstreams[0].compression: Input should be 'none' or 'gzip'"
    ]
    assert problems(reconnect={"initial_backoff_s": 10}) == [
        "upstreams[0].reconnect: initial_backoff_s must not exceed max_backoff_s"
    ]
    ca = write(tmp_path, "ca.pem", make_ca().pem)
    assert problems(tls={"ca_file": ca}) == ["upstreams[0].tls: ca_file set but enabled is false"]
    not_pem = write(tmp_path, "ca.txt", b"hello")
    (line,) = problems(tls={"enabled": True, "ca_file": not_pem})
    assert line.startswith("upstreams[0].tls: ca_file") and "is not PEM" in line


def test_tls_verifies_unless_the_plan_says_not() -> None:
    """``verify=False`` (the CLI's --insecure) checks neither the certificate nor the name."""
    up = upstream(tls={"enabled": True})
    targets = unresolved([parse_target("127.0.0.1:1")])
    material = load_tls(up.tls)
    verified = tls_context(up, ConnectionPlan(targets, material))
    assert verified is not None
    assert (verified.verify_mode, verified.check_hostname) == (ssl.CERT_REQUIRED, True)
    unverified = tls_context(up, ConnectionPlan(targets, material, verify=False))
    assert unverified is not None
    assert (unverified.verify_mode, unverified.check_hostname) == (ssl.CERT_NONE, False)
    assert ConnectionPlan(targets, material) != ConnectionPlan(targets, material, verify=False)


def test_a_dns_server_of_its_own_is_refused_naming_the_key() -> None:
    (line,) = problems(targets=["dns://8.8.8.8/svc:1"])
    assert line.startswith("upstreams[0].targets: ")
    assert "dns:///HOST:PORT" in line


def test_the_retired_grpcio_transport_is_still_accepted() -> None:
    """An old config keeps starting; the bridge logs ``setting_retired`` (docs/upstreams.md)."""
    assert upstream(transport="grpcio").transport == "grpcio"


def test_addresses_of_every_target_form() -> None:
    targets = ConnectionTargets(
        ("ipv4:10.0.0.1:1,10.0.0.2:2", "unix:///run/a.sock", "unix-abstract:bridge", "shop:7"),
        None,
    )
    assert [str(a) for a in addresses_of(targets)] == [
        "10.0.0.1:1",
        "10.0.0.2:2",
        "unix:/run/a.sock",
        "unix-abstract:bridge",
        "shop:7",
    ]
    assert addresses_of(ConnectionTargets(("dns:///shop",), None)) == [Dialled("shop", 443)]


def test_parse_target() -> None:
    assert parse_target("10.0.0.1:50051").host == "10.0.0.1"
    assert parse_target("dns:///svc.ns:50051").authority == "svc.ns:50051"
    v6 = parse_target("[::1]:50051")
    assert (v6.host, v6.port, v6.authority, v6.is_name) == ("::1", 50051, "[::1]:50051", False)
    assert parse_target("shop:50051").is_name
    for opaque in ("unix:/run/app.sock", "dns://8.8.8.8/svc:1", "ipv4:1.2.3.4:5,1.2.3.5:5"):
        assert parse_target(opaque).host is None


def test_address_lists() -> None:
    assert address_list([("10.0.0.1", 1), ("10.0.0.2", 2)]) == "ipv4:10.0.0.1:1,10.0.0.2:2"
    # gRPC has no mixed scheme: IPv4 joins an IPv6 list in its mapped form.
    assert address_list([("127.0.0.1", 1), ("::1", 1)]) == "ipv6:[::ffff:127.0.0.1]:1,[::1]:1"
    literal = unresolved([parse_target("10.0.0.1:1"), parse_target("10.0.0.2:1")])
    assert literal.targets == ("ipv4:10.0.0.1:1,10.0.0.2:1",)
    assert unresolved([parse_target("unix:/a"), parse_target("unix:/b")]).targets == (
        "unix:/a",
        "unix:/b",
    )


async def test_resolve_targets_dedupes_and_names_failures() -> None:
    async def resolve(host: str, port: int) -> Sequence[Address]:
        if host == "gone":
            raise OSError("Name or service not known")
        return [("10.0.0.2", port), ("10.0.0.1", port), ("10.0.0.2", port)]

    targets = await resolve_targets(
        [parse_target("svc:80"), parse_target("10.0.0.9:81")], resolve, 1
    )
    assert targets.targets == ("ipv4:10.0.0.1:80,10.0.0.2:80,10.0.0.9:81",)
    assert targets.authority == "svc:80"
    with pytest.raises(ResolveError, match="'gone'"):
        await resolve_targets([parse_target("gone:80")], resolve, 1)
