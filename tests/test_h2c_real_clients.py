"""Real HTTP/2 clients on the proxy port (h2c, prior knowledge): buf curl and connect-node.

``buf curl --reflect`` fetches the schema by server reflection, a bidi call,
answered by the bridge itself: over h2c its Connect and gRPC-Web calls answer
what the same calls give over the JSON routes. Connect bidi and gRPC-Web bidi,
which need HTTP/2, work end to end. What reflection lists with several
upstreams and filters: tests/test_reflection_answers_what_the_bridge_exposes.py.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import tempfile
from typing import Any

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from grpc_bridge.admin.openapi_docs import JSON_PATH as OPENAPI_JSON
from tests.helpers.doc_samples import (
    ROOT,
    Command,
    buf_examples,
    for_demo,
    normalise,
    output_mismatch,
)
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.js_clients import CallResult, buf_curl, connect_node_call, node_modules
from tests.helpers.process import running_demo
from tests.helpers.servers import RunningServer
from tests.helpers.streamtools import NDJSON

pytestmark = pytest.mark.both_edges

TEST = "bridgetest.v1.TestService"
KITCHEN = {"fString": "h2c", "fInt64": "-7", "rString": ["a", "b"], "fBool": True}
STREAM = {"count": 3, "tag": "h2c"}
CHAT = [{"index": 1, "text": "one"}, {"index": 2, "text": "two"}, {"text": "three"}]


@pytest.fixture
async def bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(upstream.target)


def parsed(cls: type[Message], values: list[dict[str, Any]]) -> list[Message]:
    return [json_format.ParseDict(value, cls()) for value in values]


async def json_route(bridge: RunningBridge, method: str, body: Any) -> list[dict[str, Any]]:
    """The answer of the JSON routes (NDJSON for a stream), as messages."""
    headers = {"Content-Type": "application/json", "Accept": NDJSON}
    async with bridge.session.post(
        f"{bridge.url}/{TEST}/{method}", data=orjson.dumps(body), headers=headers
    ) as resp:
        assert resp.status == 200, await resp.text()
        raw = await resp.read()
    if resp.content_type == NDJSON:
        return [orjson.loads(line)["result"] for line in raw.splitlines() if line]
    return [orjson.loads(raw)]


def ok(result: CallResult) -> list[dict[str, Any]]:
    assert result.error is None, result.error
    return result.messages


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
async def test_buf_curl_reflects_through_the_bridge_and_answers_as_the_json_routes(
    bridge: RunningBridge, protocol: Any
) -> None:
    unary = await buf_curl(
        bridge.url, f"{TEST}/Echo", KITCHEN, protocol=protocol, reflect=True, http2=True
    )
    expected = await json_route(bridge, "Echo", KITCHEN)
    assert parsed(kitchen_pb2.Kitchen, ok(unary)) == parsed(kitchen_pb2.Kitchen, expected)
    assert ok(unary)[0]["fString"] == "h2c"

    stream = await buf_curl(
        bridge.url, f"{TEST}/ServerStream", STREAM, protocol=protocol, reflect=True, http2=True
    )
    expected = await json_route(bridge, "ServerStream", STREAM)
    assert len(expected) == 3
    assert parsed(kitchen_pb2.StreamReply, ok(stream)) == parsed(kitchen_pb2.StreamReply, expected)
    # The call itself went over HTTP/2 too.
    assert "HTTP/2.0 200" in stream.raw["stderr"]


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
async def test_buf_curl_streams_both_ways_over_h2c(bridge: RunningBridge, protocol: Any) -> None:
    bidi = await buf_curl(
        bridge.url, f"{TEST}/Bidi", requests=CHAT, protocol=protocol, reflect=True, http2=True
    )
    assert [m["text"] for m in ok(bidi)] == ["echo: one", "echo: two", "echo: three"]
    client = await buf_curl(
        bridge.url, f"{TEST}/ClientStream", requests=CHAT, protocol=protocol, http2=True
    )
    assert ok(client) == [{"count": 3, "texts": ["one", "two", "three"]}]


@pytest.mark.parametrize(
    ("protocol", "binary"), [("connect", False), ("connect", True), ("grpcweb", True)]
)
async def test_connect_node_on_http2_calls_bidi_through_the_bridge(
    bridge: RunningBridge, upstream: RunningServer, protocol: Any, binary: bool
) -> None:
    tag = f"node-{protocol}-{binary}"
    result = await connect_node_call(
        bridge.url,
        f"{TEST}/Bidi",
        requests=[{"index": 1, "text": tag}, {"index": 2, "text": "more"}],
        protocol=protocol,
        binary=binary,
        http_version="2",
    )
    assert ok(result) == [{"index": 1, "text": f"echo: {tag}"}, {"index": 2, "text": "echo: more"}]
    assert tag in upstream.test.received


async def test_connect_bidi_over_http11_still_says_it_needs_http2(bridge: RunningBridge) -> None:
    result = await connect_node_call(
        bridge.url, f"{TEST}/Bidi", requests=[{"text": "x"}], http_version="1.1"
    )
    assert result.error is not None and result.error.code == "unimplemented"
    assert "over HTTP/2 (h2c" in result.error.message


async def test_reflection_is_answered_by_the_bridge_and_listed_nowhere(
    bridge: RunningBridge,
) -> None:
    path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
    async with bridge.session.post(
        f"{bridge.url}{path}",
        data=b'{"listServices": ""}\n',
        headers={"Content-Type": NDJSON, "Accept": NDJSON},
    ) as resp:
        assert resp.status == 200
        (line,) = [orjson.loads(line) for line in (await resp.read()).splitlines() if line]
    names = {s["name"] for s in line["result"]["listServicesResponse"]["service"]}
    # What the bridge exposes, not what the upstream's own reflection lists (itself too).
    assert TEST in names and not any(n.startswith("grpc.reflection.") for n in names)
    async with bridge.session.get(f"{bridge.admin_url}/v1/services") as resp:
        text = await resp.text()
        assert "grpc.reflection" not in text
        assert names == {s["name"] for s in orjson.loads(text)["services"]}
    async with bridge.session.get(f"{bridge.admin_url}{OPENAPI_JSON}") as resp:
        assert resp.status == 200 and "grpc.reflection" not in await resp.text()


@pytest.mark.parametrize(
    "example",
    [c for page in ("connect.md", "grpc-web.md") for c in buf_examples(ROOT / "docs" / page)],
    ids=str,
)
async def test_the_documented_buf_curl_examples_print_what_is_shown(example: Command) -> None:
    async with running_demo() as ports:
        command = for_demo(example.command, ports)
        binary = shlex.quote(str(node_modules() / ".bin" / "buf"))
        proc = await asyncio.create_subprocess_shell(
            binary + command.removeprefix("buf"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "BUF_CACHE_DIR": tempfile.gettempdir() + "/grpc-bridge-buf-cache"},
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert example.expected is not None
    expected, actual = normalise(example.expected, ports), normalise(out.decode(), ports)
    assert output_mismatch(example.lang, expected, actual) is None, (expected, actual)
