"""TLS and mutual TLS to upstreams, with certificates made by the test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.helpers.certs import Authority, Pair, issue, make_ca, write
from tests.helpers.harness import running_bridge
from tests.helpers.servers import StartServer

ECHO = "/bridgetest.v1.TestService/Echo"


@pytest.fixture(scope="module")
def ca() -> Authority:
    return make_ca()


@pytest.fixture(scope="module")
def server_pair(ca: Authority) -> Pair:
    # Valid for 127.0.0.1 and for a name that resolves nowhere (server_name / authority tests).
    return issue(ca, "upstream", dns=("upstream.internal",), ips=("127.0.0.1",))


def tls_upstream(target: str, **tls: Any) -> list[dict[str, Any]]:
    extra = tls.pop("extra", {})
    return [{"name": "secure", "targets": [target], "tls": {"enabled": True, **tls}, **extra}]


async def not_ready_reason(b: Any, within: float = 5.0) -> str:
    """The upstream's readiness reason once discovery has failed at least once."""
    async with asyncio.timeout(within):
        while True:
            async with b.session.get(f"{b.admin_url}/readyz") as resp:
                report = await resp.json()
            reason = report["upstreams"]["secure"].get("reason", "")
            if resp.status == 503 and reason.startswith("discovery failed"):
                return str(reason)
            await asyncio.sleep(0.05)


async def test_tls_verified_with_the_configured_ca(
    upstream_factory: StartServer, ca: Authority, server_pair: Pair, tmp_path: Path
) -> None:
    creds = grpc.ssl_server_credentials([(server_pair.key, server_pair.cert)])
    server = await upstream_factory(credentials=creds)
    ca_file = write(tmp_path, "ca.pem", ca.pem)
    async with running_bridge(None, upstreams=tls_upstream(server.target, ca_file=ca_file)) as b:
        status, body, _ = await b.post(ECHO, {"fString": "over TLS"})
        assert status == 200 and body["fString"] == "over TLS"
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            (info,) = (await resp.json())["upstreams"]
        assert info["tls"] is True and info["ready"] is True


async def test_server_name_override(
    upstream_factory: StartServer, ca: Authority, tmp_path: Path
) -> None:
    only_name = issue(ca, "named", dns=("upstream.internal",))  # no IP SAN
    creds = grpc.ssl_server_credentials([(only_name.key, only_name.cert)])
    server = await upstream_factory(credentials=creds)
    ca_file = write(tmp_path, "ca.pem", ca.pem)
    upstreams = tls_upstream(server.target, ca_file=ca_file, server_name="upstream.internal")
    async with running_bridge(None, upstreams=upstreams) as b:
        status, _, _ = await b.post(ECHO, {})
        assert status == 200
    # Without the override the certificate does not match 127.0.0.1.
    async with running_bridge(
        None, ready=False, upstreams=tls_upstream(server.target, ca_file=ca_file)
    ) as b:
        reason = await not_ready_reason(b)
        assert "UNAVAILABLE" in reason


async def test_authority_override_is_also_the_name_tls_checks(
    upstream_factory: StartServer, ca: Authority, tmp_path: Path
) -> None:
    only_name = issue(ca, "named", dns=("upstream.internal",))
    creds = grpc.ssl_server_credentials([(only_name.key, only_name.cert)])
    server = await upstream_factory(credentials=creds)
    upstreams = tls_upstream(
        server.target,
        ca_file=write(tmp_path, "ca.pem", ca.pem),
        extra={"authority": "upstream.internal:443"},
    )
    async with running_bridge(None, upstreams=upstreams) as b:
        status, _, _ = await b.post(ECHO, {})
        assert status == 200
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            (info,) = (await resp.json())["upstreams"]
        assert info["authority"] == "upstream.internal:443"


async def test_mutual_tls(
    upstream_factory: StartServer, ca: Authority, server_pair: Pair, tmp_path: Path
) -> None:
    creds = grpc.ssl_server_credentials(
        [(server_pair.key, server_pair.cert)], root_certificates=ca.pem, require_client_auth=True
    )
    server = await upstream_factory(credentials=creds)
    client = issue(ca, "grpc-bridge", client=True)
    ca_file = write(tmp_path, "ca.pem", ca.pem)
    mtls = tls_upstream(
        server.target,
        ca_file=ca_file,
        cert_file=write(tmp_path, "client.pem", client.cert),
        key_file=write(tmp_path, "client.key", client.key),
    )
    async with running_bridge(None, upstreams=mtls) as b:
        status, body, _ = await b.post(ECHO, {"fInt32": 7})
        assert status == 200 and body["fInt32"] == 7
    # The same upstream refuses a bridge without a client certificate.
    async with running_bridge(
        None, ready=False, upstreams=tls_upstream(server.target, ca_file=ca_file)
    ) as b:
        await not_ready_reason(b)
        status, body, _ = await b.post(ECHO, {})
        assert status == 503 and body["code"] == 14


async def test_wrong_ca_is_a_clear_not_ready_reason_and_fast_503(
    upstream_factory: StartServer, server_pair: Pair, tmp_path: Path
) -> None:
    creds = grpc.ssl_server_credentials([(server_pair.key, server_pair.cert)])
    server = await upstream_factory(credentials=creds)
    stranger = make_ca("some other CA")
    upstreams = tls_upstream(server.target, ca_file=write(tmp_path, "other.pem", stranger.pem))
    async with running_bridge(None, ready=False, upstreams=upstreams) as b:
        reason = await not_ready_reason(b)
        assert "secure" in reason or "handshake" in reason.lower() or "CERTIFICATE" in reason
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, body, _ = await b.post(ECHO, {})
        assert status == 503 and body["code"] == 14
        assert loop.time() - started < 2


async def test_rotated_ca_file_is_picked_up(
    upstream_factory: StartServer, ca: Authority, server_pair: Pair, tmp_path: Path
) -> None:
    creds = grpc.ssl_server_credentials([(server_pair.key, server_pair.cert)])
    server = await upstream_factory(credentials=creds)
    ca_file = write(tmp_path, "ca.pem", make_ca("stale CA").pem)
    upstreams = tls_upstream(server.target, ca_file=ca_file, extra={"resolve_interval_s": 0.1})
    async with running_bridge(None, ready=False, upstreams=upstreams) as b:
        await not_ready_reason(b)
        write(tmp_path, "ca.pem", ca.pem)  # the Secret was updated
        await b.wait_ready(timeout=5)
        status, _, _ = await b.post(ECHO, {})
        assert status == 200
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            (info,) = (await resp.json())["upstreams"]
        assert info["channels"]["generation"] >= 2


async def test_half_written_ca_file_keeps_the_working_channels(
    upstream_factory: StartServer, ca: Authority, server_pair: Pair, tmp_path: Path
) -> None:
    creds = grpc.ssl_server_credentials([(server_pair.key, server_pair.cert)])
    server = await upstream_factory(credentials=creds)
    ca_file = write(tmp_path, "ca.pem", ca.pem)
    upstreams = tls_upstream(server.target, ca_file=ca_file, extra={"resolve_interval_s": 0.1})
    async with running_bridge(None, upstreams=upstreams) as b:
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            (before,) = (await resp.json())["upstreams"]
        write(tmp_path, "ca.pem", ca.pem[: len(ca.pem) // 2])  # a rotation caught mid-write
        await asyncio.sleep(0.5)
        status, _, _ = await b.post(ECHO, {})
        assert status == 200
        async with b.session.get(f"{b.admin_url}/v1/upstreams") as resp:
            (after,) = (await resp.json())["upstreams"]
        assert after["channels"]["generation"] == before["channels"]["generation"]
