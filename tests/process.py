"""Run ``grpc-bridge`` as a real process and read its JSON log lines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson


def bridge_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_BRIDGE_")}
    env.update(extra)
    return env


@dataclass
class BridgeProcess:
    proc: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    proxy_port: int = 0
    admin_port: int = 0

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> BridgeProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "grpc_bridge",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env or bridge_env(),
        )
        bp = cls(proc)
        event = await bp.wait_for("listening")
        bp.proxy_port = int(event["proxy"].rsplit(":", 1)[1])
        bp.admin_port = int(event["admin"].rsplit(":", 1)[1])
        return bp

    async def wait_for(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("event") == name:
                return event
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    raise AssertionError(f"process exited before logging {name!r}: {self.events}")
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                self.events.append(event)
                if event.get("event") == name:
                    return dict(event)

    async def drain_logs(self) -> None:
        assert self.proc.stderr is not None
        for line in (await self.proc.stderr.read()).splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                self.events.append(orjson.loads(line))

    async def wait(self, timeout: float = 20.0) -> int:
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(20):
            return await self.proc.wait()


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "grpc_bridge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or bridge_env(),
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
