"""Every curl line in the README works as printed against `grpc-bridge demo`."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import pytest

from tests.packaging_tools import shell_commands
from tests.process import curl_status, expected_status, spawn_demo

README = Path(__file__).parent.parent / "README.md"


def readme_curl_lines() -> list[str]:
    """Curl commands in fenced shell blocks that target the demo's ports (8080, 8081)."""
    return [
        line
        for line in shell_commands(README.read_text())
        if line.startswith("curl ") and re.search(r"127\.0\.0\.1:808[01]", line)
    ]


def test_readme_has_curl_lines() -> None:
    assert len(readme_curl_lines()) >= 5


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="needs curl")
async def test_readme_curl_lines_work_against_the_demo() -> None:
    proc = await spawn_demo()
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "demo exited early"
                match = re.search(r"bridge on 127\.0\.0\.1:(\d+) \(admin (\d+)\)", line)
                if match:
                    port, admin = match.groups()
                    break
        for line in readme_curl_lines():
            cmd = line.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace(
                "127.0.0.1:8081", f"127.0.0.1:{admin}"
            )
            assert await curl_status(cmd) == expected_status(line), line
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await proc.wait()
