"""Server reflection through a bridge, read with grpcio-reflection's messages over a
Connect stream on h2c (the h2 library's client, not the bridge's code)."""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.helpers.h2c_client import envelope, h2c_connection, unframe
from tests.helpers.harness import RunningBridge

V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
CONNECT_STREAM = [("content-type", "application/connect+proto")]
Request = reflection_pb2.ServerReflectionRequest
Response = reflection_pb2.ServerReflectionResponse


async def reflect(bridge: RunningBridge, *requests: Any, path: str = V1ALPHA) -> list[Any]:
    """One Connect stream over h2c with ``requests``: the answers, then the end frame's JSON."""
    body = b"".join(envelope(r.SerializeToString()) for r in requests)
    async with h2c_connection(bridge.server.proxy_port) as client:
        state = await client.answer(client.request(path, CONNECT_STREAM, body))
    assert state.headers[":status"] == "200", state
    frames = unframe(bytes(state.body))
    *messages, (flags, end) = frames
    assert flags == 0x02 and all(f == 0 for f, _ in messages), frames
    return [*(Response.FromString(m) for _, m in messages), orjson.loads(end)]


def files_of(answer: Any) -> list[descriptor_pb2.FileDescriptorProto]:
    assert answer.WhichOneof("message_response") == "file_descriptor_response", answer
    blobs = answer.file_descriptor_response.file_descriptor_proto
    return [descriptor_pb2.FileDescriptorProto.FromString(b) for b in blobs]
