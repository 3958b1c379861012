"""What a newcomer sees when something is off: busy ports, typos, ``--version``, odd methods."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.process import BridgeProcess, bridge_env, run_cli, serve_args
from tests.helpers.servers import RunningServer


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process listens on (no SO_REUSEPORT: nobody can share it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def one_line(err: str) -> str:
    """The last line of stderr (log lines of the start-up may come before it)."""
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("serve", "--upstream", "127.0.0.1:1", "--port", "{busy}"), "the proxy (listen.port)"),
        (
            ("serve", "--upstream", "127.0.0.1:1", "--port", "0", "--admin-port", "{busy}"),
            "the admin endpoints (admin.port)",
        ),
        (
            ("serve", "--upstream", "127.0.0.1:1", "--port", "{busy}", "--workers", "2"),
            "the proxy (listen.port)",
        ),
        (
            ("serve", "--upstream", "127.0.0.1:1", "--workers", "2", "--admin-port", "{busy}"),
            "the admin endpoints (admin.port)",
        ),
        (("demo", "--port", "{busy}", "--admin-port", "0"), "the proxy (listen.port)"),
        (("demo", "--port", "0", "--admin-port", "{busy}"), "the admin endpoints (admin.port)"),
        (
            ("demo", "--port", "0", "--admin-port", "0", "--grpc-port", "{busy}"),
            "the demo gRPC service (--grpc-port)",
        ),
    ],
)
async def test_a_busy_port_is_one_line_and_exit_1(
    busy_port: int, args: tuple[str, ...], what: str
) -> None:
    argv = [a.format(busy=busy_port) for a in args]
    if argv[0] == "serve":
        argv += ["--host", "127.0.0.1", "--log-format", "json"]
    code, _, err = await run_cli(*argv, env=bridge_env(GRPC_BRIDGE_ADMIN__HOST="127.0.0.1"))
    assert code == 1, err
    assert one_line(err).startswith(
        f"grpc-bridge: cannot listen on 127.0.0.1:{busy_port} for {what}: "
    ), err
    if "grpc" not in what:
        assert "address already in use" in one_line(err)


async def test_demo_takes_its_ports_from_the_environment(busy_port: int) -> None:
    """`make demo PORT=...` passes flags; the documented variables work as for serve."""
    code, _, err = await run_cli(
        "demo", env=bridge_env(GRPC_BRIDGE_LISTEN__PORT=str(busy_port), GRPC_BRIDGE_ADMIN__PORT="0")
    )
    assert code == 1
    assert f"127.0.0.1:{busy_port} for the proxy" in one_line(err)


async def test_version_flag_and_command() -> None:
    for args in (("--version",), ("version",)):
        code, out, err = await run_cli(*args)
        assert code == 0, err
        assert out.strip().split()[-1][0].isdigit(), out


async def test_check_config_names_yaml_keys_and_suggests_the_closest(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(
        "lisen: {port: 1}\nadmin: {prot: 1}\n"
        "upstreams: [{targets: ['h:1'], refelction: true}]\njson: {emit_unpoplated: true}\n"
    )
    code, _, err = await run_cli("check-config", "--config", str(cfg))
    assert code == 2
    assert sorted(err.strip().splitlines()) == [
        "grpc-bridge: config: admin.prot: unknown key; did you mean `port`?",
        "grpc-bridge: config: json.emit_unpoplated: unknown key; did you mean `emit_unpopulated`?",
        "grpc-bridge: config: lisen: unknown key; did you mean `listen`?",
        "grpc-bridge: config: upstreams[0].refelction: unknown key; did you mean `reflection`?",
    ]


async def test_check_config_says_config_once(tmp_path: Path) -> None:
    code, _, err = await run_cli("check-config", "--config", str(tmp_path / "absent.yaml"))
    assert code == 2
    assert err.strip() == (
        f"grpc-bridge: config: cannot read '{tmp_path / 'absent.yaml'}': No such file or directory"
    )


async def test_check_config_names_the_environment_variable() -> None:
    env = bridge_env(
        GRPC_BRIDGE_UPSTREAM="127.0.0.1:1",
        GRPC_BRIDGE_LISTEN__PROT="9000",
        GRPC_BRIDGE_ADMIN__PORT="eighty",
    )
    code, _, err = await run_cli("check-config", env=env)
    assert code == 2
    assert sorted(err.strip().splitlines()) == [
        "grpc-bridge: config: GRPC_BRIDGE_ADMIN__PORT (admin.port): "
        "Input should be a valid integer, unable to parse string as an integer",
        "grpc-bridge: config: GRPC_BRIDGE_LISTEN__PROT (listen.prot): unknown key; "
        "did you mean GRPC_BRIDGE_LISTEN__PORT?",
    ]


async def test_a_mistyped_variable_is_a_warning_not_a_failure() -> None:
    """Kubernetes sets GRPC_BRIDGE_PORT & co. for a Service named grpc-bridge: never fatal."""
    env = bridge_env(
        GRPC_BRIDGE_UPSTREAM="127.0.0.1:1",
        GRPC_BRIDGE_LISTN__PORT="9000",
        GRPC_BRIDGE_PORT="tcp://10.0.0.1:8080",
        GRPC_BRIDGE_SERVICE_HOST="10.0.0.1",
        GRPC_BRIDGE_PORT_8080_TCP_ADDR="10.0.0.1",
    )
    code, out, err = await run_cli("check-config", env=env)
    assert code == 0, err
    assert "configuration is valid" in out
    assert err.strip().splitlines() == [
        "grpc-bridge: warning: GRPC_BRIDGE_LISTN__PORT is not a setting and is ignored; "
        "did you mean GRPC_BRIDGE_LISTEN__PORT?"
    ]


@pytest.mark.parametrize("fast_path", ["true", "false"])
async def test_an_unknown_method_token_is_405_on_a_route_and_404_elsewhere(
    upstream: RunningServer, fast_path: str
) -> None:
    """aiohttp's parser refuses methods it does not know; the answer is the router's."""
    env = bridge_env(GRPC_BRIDGE_LISTEN__FAST_PATH=fast_path)
    bp = await BridgeProcess.start(*serve_args(upstream.target), env=env)
    try:
        await bp.wait_for("discovered")
        proxy, admin = bp.proxy_port, bp.admin_port
        cases = [
            (proxy, "FOO", "/bridgetest.v1.TestService/Echo", 405, "POST"),
            (proxy, "FOO", "/nope?x=1", 404, None),
            (admin, "FOO", "/readyz", 405, "GET, HEAD"),
            (admin, "FOO", "/playground/call/a.B/C", 405, "POST"),
            (admin, "FOO", "/nope", 404, None),
            (proxy, "FO(O", "/bridgetest.v1.TestService/Echo", 400, None),
        ]
        for port, method, path, status, allow in cases:
            head, body = await raw_request(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head[0].startswith(f"HTTP/1.1 {status} "), (method, path, head)
            headers = dict(line.split(": ", 1) for line in head[1:])
            assert headers.get("Allow") == allow, (path, headers)
            code = {405: 12, 404: 5, 400: 3}[status]
            assert body.startswith(f'{{"code":{code},'), body
        assert any(e.get("http_status") == 405 for e in bp.events if e.get("event") == "request")
    finally:
        await bp.stop()


async def raw_request(port: int, request: str) -> tuple[list[str], str]:
    """Send bytes no HTTP client library would; the answer's head lines and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request.encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.split("\r\n"), body


async def test_admin_refusals_are_status_json(upstream: RunningServer) -> None:
    bp = await BridgeProcess.start(*serve_args(upstream.target))
    try:
        admin = f"http://127.0.0.1:{bp.admin_port}"
        async with aiohttp.ClientSession() as session:
            for method, path, status in (
                ("POST", "/playground/call/not-a-service", 400),
                ("POST", "/playground/call/", 400),
                ("GET", "/no-such-admin-path", 404),
                ("PUT", "/readyz", 405),
            ):
                async with session.request(method, admin + path) as resp:
                    assert resp.status == status, path
                    assert resp.content_type == "application/json"
                    body = await resp.json()
                    assert body["code"] == {400: 3, 404: 5, 405: 12}[status] and body["message"]
    finally:
        await bp.stop()


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ((), "grpc-bridge demo --grpc-port 50051"),
        (
            ("PORT=9080", "ADMIN_PORT=9081", "GRPC_PORT=9082"),
            "grpc-bridge demo --grpc-port 9082 --port 9080 --admin-port 9081",
        ),
    ],
)
def test_make_demo_passes_the_ports_on(variables: tuple[str, ...], expected: str) -> None:
    """`make demo PORT=9080 ADMIN_PORT=9081 GRPC_PORT=9082`; without them the environment's
    or 8080/8081, and the demo's gRPC service on 50051 (docs/cli.md calls it there)."""
    root = Path(__file__).resolve().parent.parent
    # Not the variables of a make this suite may run under (`make test`): they would
    # make this one a sub-make that prints "Entering directory" lines.
    dropped = ("PORT", "ADMIN_PORT", "GRPC_PORT", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-W", "pyproject.toml", "demo", *variables],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.split("/bin/", 1)[-1].strip() == expected, result.stdout


async def test_an_unknown_method_token_on_the_workers_parent_admin_port(
    upstream: RunningServer,
) -> None:
    """The parent answers for its workers' admin endpoints (all GETs) and the playground."""
    bp = await BridgeProcess.spawn(*serve_args(upstream.target, "--workers", "2"))
    try:
        async with asyncio.timeout(60):
            while not any(e.get("event") == "listening" and "workers" in e for e in bp.events):
                await bp.wait_for("listening")
                await asyncio.sleep(0.1)
        (parent,) = [e for e in bp.events if e.get("event") == "listening" and "workers" in e]
        admin = int(parent["admin"].rsplit(":", 1)[1])
        for path, status, allow in (
            ("/v1/services", 405, "GET, HEAD"),
            ("/playground/call/a.B/C", 405, "POST"),
        ):
            head, body = await raw_request(admin, f"FOO {path} HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head[0].startswith(f"HTTP/1.1 {status} "), (path, head)
            assert dict(line.split(": ", 1) for line in head[1:]).get("Allow") == allow
            assert body.startswith('{"code":12,'), body
    finally:
        await bp.stop()
