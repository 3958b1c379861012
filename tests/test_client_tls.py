"""The client over TLS: --cacert, mutual TLS, --servername, --insecure (test-made certificates)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.helpers.certs import Authority, Pair, issue, make_ca, write
from tests.helpers.client_tools import TEST_SERVICE, run_client
from tests.helpers.servers import StartServer

ECHO = f"{TEST_SERVICE}/Echo"


@pytest.fixture(scope="module")
def ca() -> Authority:
    return make_ca()


@pytest.fixture(scope="module")
def server_pair(ca: Authority) -> Pair:
    return issue(ca, "upstream", dns=("upstream.internal",), ips=("127.0.0.1",))


async def echo(target: str, *flags: str) -> tuple[int, str]:
    result = await run_client(
        "call", target, ECHO, "-d", '{"fInt32": 7}', "--no-emit-defaults", *flags
    )
    return result.code, result.out if result.code == 0 else result.err


async def test_verified_with_cacert(
    upstream_factory: StartServer, ca: Authority, server_pair: Pair, tmp_path: Path
) -> None:
    server = await upstream_factory(
        credentials=grpc.ssl_server_credentials([(server_pair.key, server_pair.cert)])
    )
    ca_file = write(tmp_path, "ca.pem", ca.pem)
    assert await echo(server.target, "--cacert", ca_file) == (0, '{"fInt32":7}\n')
    # Without the CA the system roots don't know it: the handshake fails (UNAVAILABLE
    # while reflecting, exit 1), and --plaintext to a TLS port fails too.
    code, err = await echo(server.target)
    assert code == 1 and "UNAVAILABLE" in err
    code, err = await echo(server.target, "--plaintext")
    assert code == 1 and "UNAVAILABLE" in err


async def test_servername_verifies_another_name(
    upstream_factory: StartServer, ca: Authority, tmp_path: Path
) -> None:
    only_name = issue(ca, "named", dns=("upstream.internal",))
    server = await upstream_factory(
        credentials=grpc.ssl_server_credentials([(only_name.key, only_name.cert)])
    )
    ca_file = write(tmp_path, "ca.pem", ca.pem)
    code, _ = await echo(server.target, "--cacert", ca_file)
    assert code == 1  # the certificate doesn't name 127.0.0.1
    flags = ("--cacert", ca_file, "--servername", "upstream.internal")
    assert await echo(server.target, *flags) == (0, '{"fInt32":7}\n')


async def test_authority_is_the_name_verified(
    upstream_factory: StartServer, ca: Authority, tmp_path: Path
) -> None:
    """``--authority`` is sent as ``:authority`` and, without --servername, verified by TLS."""
    only_name = issue(ca, "named", dns=("upstream.internal",))
    server = await upstream_factory(
        credentials=grpc.ssl_server_credentials([(only_name.key, only_name.cert)])
    )
    ca_file = write(tmp_path, "ca.pem", ca.pem)
    code, _ = await echo(server.target, "--cacert", ca_file, "--authority", "other.internal")
    assert code == 1
    flags = ("--cacert", ca_file, "--authority", "upstream.internal")
    assert await echo(server.target, *flags) == (0, '{"fInt32":7}\n')


async def _requiring_client_certs(
    upstream_factory: StartServer, ca: Authority, server_pair: Pair, tmp_path: Path
) -> tuple[str, str, str]:
    """A server that asks for a client certificate; its target, and the CLI's cert and key."""
    server = await upstream_factory(
        credentials=grpc.ssl_server_credentials(
            [(server_pair.key, server_pair.cert)],
            root_certificates=ca.pem,
            require_client_auth=True,
        )
    )
    client = issue(ca, "grpc-bridge-cli", client=True)
    cert = write(tmp_path, "client.pem", client.cert)
    key = write(tmp_path, "client.key", client.key)
    return server.target, cert, key


async def test_mutual_tls(
    upstream_factory: StartServer, ca: Authority, server_pair: Pair, tmp_path: Path
) -> None:
    target, cert, key = await _requiring_client_certs(upstream_factory, ca, server_pair, tmp_path)
    ca_file = write(tmp_path, "ca.pem", ca.pem)
    assert await echo(target, "--cacert", ca_file, "--cert", cert, "--key", key) == (
        0,
        '{"fInt32":7}\n',
    )
    code, _ = await echo(target, "--cacert", ca_file)
    assert code == 1
    # A certificate without its key is a usage error, named as such.
    code, err = await echo(target, "--cacert", ca_file, "--cert", cert)
    assert code == 2 and "--cert and --key go together" in err


async def test_insecure_skips_verification(upstream_factory: StartServer, tmp_path: Path) -> None:
    stranger = issue(make_ca("some other CA"), "stranger", dns=("elsewhere.example",))
    server = await upstream_factory(
        credentials=grpc.ssl_server_credentials([(stranger.key, stranger.cert)])
    )
    code, _ = await echo(server.target)
    assert code == 1
    assert await echo(server.target, "--insecure") == (0, '{"fInt32":7}\n')
    result = await run_client("list", "--insecure", server.target)
    assert result.code == 0 and TEST_SERVICE in result.out.split(), result.err


async def test_insecure_with_a_client_certificate(
    upstream_factory: StartServer, ca: Authority, server_pair: Pair, tmp_path: Path
) -> None:
    target, cert, key = await _requiring_client_certs(upstream_factory, ca, server_pair, tmp_path)
    assert await echo(target, "--insecure", "--cert", cert, "--key", key) == (
        0,
        '{"fInt32":7}\n',
    )
