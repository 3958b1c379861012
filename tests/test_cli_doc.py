"""Every command in docs/cli.md's shell blocks works as written against `grpc-bridge demo`."""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.helpers.packaging_tools import shell_commands
from tests.helpers.process import bridge_env, running_demo

DOC = Path(__file__).parent.parent / "docs" / "cli.md"
DEMO_GRPC = "127.0.0.1:50051"


def doc_commands() -> list[str]:
    """Commands that run ``grpc-bridge`` against the demo's gRPC address."""
    return [
        line
        for line in shell_commands(DOC.read_text())
        if "grpc-bridge " in line and DEMO_GRPC in line
    ]


def expected_exit(command: str) -> int:
    """0, or what a trailing ``# exits N`` comment says."""
    match = re.search(r"# exits (\d+)\s*$", command)
    return int(match.group(1)) if match else 0


def test_doc_has_commands_for_every_verb() -> None:
    commands = doc_commands()
    for verb in ("list", "describe", "call"):
        assert any(f"grpc-bridge {verb} " in c for c in commands), verb
    assert any(expected_exit(c) for c in commands)


@pytest.mark.long
async def test_doc_commands_work_against_the_demo() -> None:
    async with running_demo() as ports:
        address = f"127.0.0.1:{ports['grpc']}"
        python = f"{shlex.quote(sys.executable)} -m grpc_bridge "
        for command in doc_commands():
            shell = command.replace(DEMO_GRPC, address).replace("grpc-bridge ", python)
            run = await asyncio.create_subprocess_shell(
                shell,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=bridge_env(),
            )
            async with asyncio.timeout(60):
                out, err = await run.communicate()
            assert run.returncode == expected_exit(command), (command, err.decode())
            if run.returncode == 0:
                assert out.strip(), command
            else:
                assert err.decode().startswith('{"code":'), (command, err.decode())
