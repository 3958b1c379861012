"""gRPC-Web client streams over HTTP/2 (h2c): request frames read as they arrive, in
binary and in text mode, however the body's bytes are cut, and a malformed body refused.

A peer on the ``h2`` library (tests/helpers/h2c_client.py), not the bridge's code.
"""

from __future__ import annotations

import base64
import re

import pytest
from bridgetest.v1 import kitchen_pb2

from tests.helpers.h2c_client import envelope, h2c_connection, unframe
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.both_edges

COLLECT = "/bridgetest.v1.TestService/ClientStream"
TEXTS = ["a", "bb" * 40, "ccc"]
FRAMES = b"".join(
    envelope(kitchen_pb2.StreamReply(index=n, text=t).SerializeToString())
    for n, t in enumerate(TEXTS)
)


@pytest.fixture
async def bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    return await make_bridge(upstream.target)


async def collect(bridge: RunningBridge, content_type: str, pieces: list[bytes]) -> dict[str, str]:
    """One gRPC-Web client-streaming call, its body sent in ``pieces``: the answer's headers
    and trailers, and its summary's texts under ``texts`` (joined by ``|``)."""
    async with h2c_connection(bridge.server.proxy_port) as client:
        stream = client.request(COLLECT, [("content-type", content_type)], b"", end=False)
        for piece in pieces:
            client.send(stream, piece)
            await client.writer.drain()
            await client.pump(0.005)  # each piece its own DATA frame, read on its own
        client.send(stream, b"", end=True)
        state = await client.answer(stream)
    body = bytes(state.body)
    if content_type.startswith("application/grpc-web-text"):
        # Each flushed chunk is base64 of its own: padding may end a piece mid-body.
        body = b"".join(base64.b64decode(piece) for piece in re.findall(rb"[^=]+=*", body))
    out = dict(state.headers)
    for flags, payload in unframe(body):
        if flags & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    out[name.strip()] = value.strip()
        else:
            summary = kitchen_pb2.StreamSummary.FromString(payload)
            out["texts"] = "|".join(summary.texts)
    return out


async def test_binary_frames_cut_anywhere_reach_the_upstream_in_order(
    bridge: RunningBridge,
) -> None:
    pieces = [FRAMES[i : i + 3] for i in range(0, len(FRAMES), 3)]
    answer = await collect(bridge, "application/grpc-web+proto", pieces)
    assert answer["grpc-status"] == "0", answer
    assert answer["texts"] == "|".join(TEXTS)


@pytest.mark.parametrize("cut", [1, 3, 5, 7])
async def test_text_frames_cut_across_base64_groups_reach_the_upstream_in_order(
    bridge: RunningBridge, cut: int
) -> None:
    text = base64.b64encode(FRAMES)
    pieces = [text[i : i + cut] for i in range(0, len(text), cut)]
    answer = await collect(bridge, "application/grpc-web-text", pieces)
    assert answer["grpc-status"] == "0", answer
    assert answer["texts"] == "|".join(TEXTS)


async def test_a_text_body_ending_inside_a_base64_group_is_refused(
    bridge: RunningBridge,
) -> None:
    text = base64.b64encode(FRAMES)[:-2]  # a group cut short
    answer = await collect(bridge, "application/grpc-web-text", [text])
    assert answer["grpc-status"] == "3", answer
    assert "incomplete 4-character group" in answer["grpc-message"], answer
