"""Every curl line in the README works as printed against `grpc-bridge demo`."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest

from tests.process import bridge_env

README = Path(__file__).parent.parent / "README.md"


def readme_curl_lines() -> list[str]:
    """Curl commands in fenced shell blocks that target the demo's ports (8080, 8081)."""
    lines: list[str] = []
    in_block = False
    pending = ""
    for raw in README.read_text().splitlines():
        if raw.startswith("```"):
            in_block = not in_block and raw.strip() in ("```sh", "```bash")
            continue
        if not in_block:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("curl ") and re.search(r"127\.0\.0\.1:808[01]", line):
            lines.append(line)
    return lines


def test_readme_has_curl_lines() -> None:
    assert len(readme_curl_lines()) >= 5


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="needs curl")
async def test_readme_curl_lines_work_against_the_demo() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *shlex.split("-m grpc_bridge demo --port 0 --admin-port 0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=bridge_env(),
    )
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
            curl = await asyncio.create_subprocess_shell(
                cmd + " -o /dev/null -w '%{http_code}'", stdout=asyncio.subprocess.PIPE
            )
            out, _ = await curl.communicate()
            assert out.decode() in ("200", "404"), (line, out)
            if '"404"' not in line:
                assert out.decode() == "200", (line, out)
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await proc.wait()
