"""gRPC-Web from a raw HTTP/1.1 client against bridge processes, the lean path on and off:
both paths give gRPC-Web requests the same answers (the lean path hands them over), however
the body is framed, split or stalled."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator

import pytest
from bridgetest.v1 import kitchen_pb2

from tests.helpers.grpc_web_tools import split_frames, text_decode, trailer_lines
from tests.helpers.process import BridgeProcess
from tests.helpers.raw_http import (
    PATHS,
    bridge_on,
    comparable,
    exchange,
    next_request_log,
    read_answer,
)
from tests.helpers.servers import RunningServer

ECHO = "/bridgetest.v1.TestService/Echo"
MESSAGE = kitchen_pb2.Kitchen(f_string="raw", r_int32=[7]).SerializeToString()
FRAME = struct.pack(">BI", 0, len(MESSAGE)) + MESSAGE


@pytest.fixture(params=PATHS)
async def bridge(
    request: pytest.FixtureRequest, upstream: RunningServer
) -> AsyncIterator[BridgeProcess]:
    async with bridge_on(
        upstream.target,
        request.param,
        env={"GRPC_BRIDGE_LIMITS__BODY_READ_TIMEOUT_S": "1"},
    ) as running:
        yield running


def post(body: bytes, *headers: str, content_type: str = "application/grpc-web") -> bytes:
    head = [f"POST {ECHO} HTTP/1.1", "Host: bridge", f"Content-Type: {content_type}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize(
    "data",
    [
        post(FRAME, f"Content-Length: {len(FRAME)}"),
        post(chunked(FRAME[:1], FRAME[1:4], FRAME[4:9], FRAME[9:]), "Transfer-Encoding: chunked"),
        post(
            chunked(base64.b64encode(FRAME[:2]), base64.b64encode(FRAME[2:])),
            "Transfer-Encoding: chunked",
            content_type="application/grpc-web-text",
        ),
    ],
    ids=["content-length", "chunked, split frame head", "text, padded pieces"],
)
async def test_a_framed_call_is_answered_alike_on_both_paths(
    bridge: BridgeProcess, data: bytes
) -> None:
    answer = await exchange(bridge.proxy_port, data)
    assert not isinstance(answer, str), answer
    status, headers, body = answer
    assert status == 200
    if "text" in headers["content-type"]:
        body = text_decode(body)
    frames = split_frames(body)
    assert frames[0] == (0, MESSAGE)
    assert trailer_lines(frames[1][1]) == [("grpc-status", "0")]
    assert (await next_request_log(bridge))["protocol"] == "grpc-web"


async def test_a_body_that_stalls_mid_frame_is_answered_and_the_connection_closed(
    bridge: BridgeProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.proxy_port)
    try:
        writer.write(post(FRAME[:7], f"Content-Length: {len(FRAME)}"))
        async with asyncio.timeout(15):
            status, headers, body = await read_answer(reader)
            assert (status, body, headers["grpc-status"]) == (200, b"", "4")
            assert "limits.body_read_timeout_s" in headers["grpc-message"]
            assert await reader.read() == b""  # closed: the rest is never awaited
    finally:
        writer.close()


async def test_both_paths_refuse_a_malformed_body_with_the_same_answer(
    upstream: RunningServer,
) -> None:
    data = post(FRAME + b"\x00", f"Content-Length: {len(FRAME) + 1}")
    answers = []
    for path in PATHS:
        async with bridge_on(upstream.target, path) as running:
            answers.append(comparable(await exchange(running.proxy_port, data)))
    assert answers[0] == answers[1]
    status, headers, body = answers[0]
    assert (status, body, headers["grpc-status"]) == (200, b"", "3")
