"""Every curl line of docs/openapi.md works as printed against `grpc-bridge demo`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.packaging_tools import shell_commands
from tests.helpers.process import curl_status, expected_status, running_demo

DOC = Path(__file__).parent.parent / "docs" / "openapi.md"


def doc_curl_lines() -> list[str]:
    return [
        line
        for line in shell_commands(DOC.read_text())
        if line.startswith("curl ") and re.search(r"127\.0\.0\.1:808[01]", line)
    ]


def test_openapi_doc_has_curl_lines_for_the_admin_port() -> None:
    lines = doc_curl_lines()
    assert len(lines) >= 3
    assert all("127.0.0.1:8081/v1/openapi." in line for line in lines)


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="needs curl")
async def test_openapi_doc_curl_lines_work_against_the_demo() -> None:
    async with running_demo() as ports:
        port, admin = ports["proxy"], ports["admin"]
        for line in doc_curl_lines():
            cmd = line.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace(
                "127.0.0.1:8081", f"127.0.0.1:{admin}"
            )
            assert await curl_status(cmd) == expected_status(line), line
