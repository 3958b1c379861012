"""Running grpc-bridge the way the image and the chart do, outside a container."""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.helpers.packaging_tools import (
    ROOT,
    VENV_BIN,
    Dockerfile,
    Manifest,
    parse_dockerfile,
    tool,
)
from tests.helpers.process import bridge_env

#: Where config/ examples expect TLS files: a Secret mounted into the pod.
TLS_DIR = "/etc/grpc-bridge/tls/"
#: The image's virtualenv; outside a container, this test run's virtualenv stands in for it.
IMAGE_VENV_BIN = "/opt/grpc-bridge/bin"
#: The python base image's environment, before the Dockerfile's own ENV.
BASE_IMAGE_ENV = {"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}


def dockerfile() -> Dockerfile:
    return parse_dockerfile(ROOT / "Dockerfile", BASE_IMAGE_ENV)


async def check_config(path: Path) -> tuple[int, str]:
    """``grpc-bridge check-config --config PATH`` as a process: (exit code, output)."""
    proc = await asyncio.create_subprocess_exec(
        str(tool(VENV_BIN / "grpc-bridge", "pip install -e '.[test]'")),
        "check-config",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=bridge_env(),
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def with_tls_files(text: str, directory: Path) -> str:
    """Point TLS_DIR paths at placeholder files: check-config only needs them readable."""
    tls = directory / "tls"
    tls.mkdir(exist_ok=True)
    for name in re.findall(re.escape(TLS_DIR) + r"([\w.-]+)", text):
        (tls / name).write_text("-----BEGIN PLACEHOLDER-----\n")
    return text.replace(TLS_DIR, f"{tls}/")


def container_env(image: Dockerfile, container: Manifest) -> dict[str, str]:
    """The image's ENV (its virtualenv mapped to ours), then the container's env on top."""
    env = {k: v.replace(IMAGE_VENV_BIN, str(VENV_BIN)) for k, v in image.env.items()}
    for var in container.get("env", []):
        assert "value" in var, f"env {var['name']} has no literal value to reproduce here"
        env[var["name"]] = var["value"]
    return env


@dataclass
class BridgeRun:
    """A bridge started from a container's argv; it logs JSON events on stderr."""

    proc: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str], cwd: Path) -> BridgeRun:
        # Resolved through the image's PATH, as the container runtime does.
        executable = shutil.which(argv[0], path=env["PATH"])
        assert executable == str(VENV_BIN / argv[0]), (argv, env["PATH"])
        proc = await asyncio.create_subprocess_exec(
            executable,
            *argv[1:],
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def wait_for(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    raise AssertionError(f"exited before logging {name!r}: {self.events}")
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                self.events.append(event)
                if event.get("event") == name:
                    return dict(event)

    async def ports(self) -> tuple[int, int]:
        """(proxy, admin): the ports bound, from the ``listening`` event."""
        event = await self.wait_for("listening")
        return int(event["proxy"].rsplit(":", 1)[1]), int(event["admin"].rsplit(":", 1)[1])

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def probe(session: aiohttp.ClientSession, port: int, container: Manifest, kind: str) -> int:
    """What the kubelet sees for one of the container's httpGet probes."""
    get = container[kind]["httpGet"]
    async with session.get(f"http://127.0.0.1:{port}{get['path']}") as resp:
        return resp.status


async def wait_ready(
    session: aiohttp.ClientSession, port: int, container: Manifest, timeout: float = 15.0
) -> None:
    async with asyncio.timeout(timeout):
        while True:  # the readiness probe passes once the upstream is discovered
            if await probe(session, port, container, "readinessProbe") == 200:
                return
            await asyncio.sleep(0.05)
