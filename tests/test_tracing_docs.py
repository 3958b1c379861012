"""docs/tracing.md's runnable example: the demo with the console exporter, its curl line."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tests.helpers.packaging_tools import ROOT
from tests.helpers.process import demo_process
from tests.helpers.tracing_tools import CLIENT_SPAN_ID, CLIENT_TRACE_ID, tracing_env

DOC = ROOT / "docs" / "tracing.md"


def test_readme_links_the_page() -> None:
    assert "[Tracing with OpenTelemetry](docs/tracing.md)" in (ROOT / "README.md").read_text()


async def test_the_console_example_prints_both_spans() -> None:
    text = DOC.read_text(encoding="utf-8")
    lines = text.splitlines()
    [command] = [line for line in lines if line.startswith("OTEL_TRACES_EXPORTER=console")]
    env = tracing_env()
    env.pop("OTEL_BSP_SCHEDULE_DELAY")
    env.update(re.findall(r"(OTEL_\w+)=(\S+)", command))
    [curl] = [line for line in lines if line.startswith("curl ")]
    async with demo_process(env) as (demo, ports), asyncio.timeout(60):
        assert demo.stdout is not None
        proc = await asyncio.create_subprocess_shell(
            curl.replace("127.0.0.1:8080", f"127.0.0.1:{ports['proxy']}")
            + " -o /dev/null -w '%{http_code}'",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert out == b"200"
        # The console exporter writes each span as an indented JSON object.
        spans: dict[str, Any] = {}
        block: list[bytes] = []
        while len(spans) < 2:
            line = await demo.stdout.readline()
            assert line, "the demo exited"
            if line.startswith(b"{"):
                block = []
            block.append(line)
            if line.rstrip() == b"}":
                span = json.loads(b"".join(block))
                spans[span["name"]] = span
    server, client = spans["GET /v1/items/{id}"], spans["demo.v1.Shop/GetItem"]
    assert server["kind"] == "SpanKind.SERVER" and client["kind"] == "SpanKind.CLIENT"
    assert server["parent_id"] == f"0x{CLIENT_SPAN_ID}"
    assert client["parent_id"] == server["context"]["span_id"]
    assert server["context"]["trace_id"] == f"0x{CLIENT_TRACE_ID}"
