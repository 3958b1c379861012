"""A reflection stream whose client stops reading holds its requests, not their answers.

Every ``file_by_filename`` answer carries the whole file, up to the message
bound (API files with their comments reach megabytes): a few dozen bytes of
requests, repeated on many streams of one connection, must not make the
bridge build and hold an answer per request. The local call answers a
request when its answer is read; a stream that reads nothing holds about
the one answer in flight.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from pathlib import Path

from bridgetest.v1 import other_pb2
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from grpc_bridge.upstream.local_reflection import PENDING
from tests.helpers.descriptors import fdp, with_imports
from tests.helpers.h2c_client import envelope, h2c_connection
from tests.helpers.harness import MakeBridge, RunningBridge, scrape
from tests.helpers.servers import StartServer

V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
CONNECT_STREAM = [("content-type", "application/connect+proto")]
OTHER = "bridgetest/v1/other.proto"
MIB = 1 << 20
STREAMS = 20


async def test_streams_that_read_nothing_hold_no_answer_per_request(
    upstream_factory: StartServer, make_bridge: MakeBridge, tmp_path: Path
) -> None:
    server = await upstream_factory(name="docs", services=("other",), reflection=())
    files = [fdp(f) for f in with_imports(other_pb2.DESCRIPTOR)]
    # other.proto as protoc writes it with a 1 MiB comment on its service.
    (other,) = [f for f in files if f.name == OTHER]
    other.source_code_info.location.add(path=[6, 0], span=[7, 0, 9, 1], leading_comments="c" * MIB)
    pb = tmp_path / "docs.pb"
    pb.write_bytes(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
    upstreams = [
        {
            "name": "docs",
            "targets": [server.target],
            "reflection": False,
            "descriptor_sets": [str(pb)],
        }
    ]
    bridge = await make_bridge(None, upstreams=upstreams)
    question = reflection_pb2.ServerReflectionRequest(file_by_filename=OTHER)
    body = envelope(question.SerializeToString()) * (2 * PENDING)
    gc.collect()
    tracemalloc.start()
    try:
        async with h2c_connection(bridge.server.proxy_port, auto_window=False) as client:
            for _ in range(STREAMS):
                client.request(V1, CONNECT_STREAM, body, end=False)
            # Each stream's feeder writes until PENDING requests wait behind the one answer
            # in flight (stuck on the window): then it waits too, and the bridge is still.
            await _until_sent(bridge, STREAMS * (PENDING + 1))
            gc.collect()
            held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # About two copies of the answer in flight (its message, its frame), not PENDING more.
    assert held < STREAMS * 3 * MIB, f"{held / MIB:.0f} MiB held by {STREAMS} streams"


async def _until_sent(bridge: RunningBridge, count: int) -> None:
    """Until the reflection calls took ``count`` requests (``grpc_client_msg_sent``)."""
    async with asyncio.timeout(60):
        while True:
            samples = await scrape(bridge)
            sent = sum(
                v for (name, _), v in samples.items() if name == "grpc_client_msg_sent_total"
            )
            if sent >= count:
                return
            await asyncio.sleep(0.05)
