"""The benchmark's gRPC upstream: echoes bytes, so the proxies, not it, are what is measured.

Handlers are generic with identity (de)serializers: a unary request's bytes go
straight back, a stream repeats one pre-serialized ``Ping``. It runs pinned to
a CPU of its own (``run.py`` starts it under ``taskset``).

With ``--protobuf-only`` the unary methods parse their request as its protobuf
message first, as a server built from generated code (grpc-go, grpcio) does,
and refuse what does not parse with ``INTERNAL`` and a message quoting the
first bytes received: ``run.py`` checks with it which proxies really send
protobuf upstream.

    python bench/upstream.py --port 50151 --gen DIR [--protobuf-only]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError


def _identity(data: bytes) -> bytes:
    return data


async def _echo(request: bytes, context: Any) -> bytes:
    return request


def _strict(message: Any) -> Any:
    """An echo that first parses the request as ``message``, as generated code would."""

    async def echo(request: bytes, context: Any) -> bytes:
        try:
            return bytes(message.FromString(request).SerializeToString())
        except DecodeError:
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"not a protobuf {message.DESCRIPTOR.full_name}: "
                f"{len(request)} bytes starting {request[:16]!r}",
            )
            raise

    return echo


def _handlers(gen: str, protobuf_only: bool) -> grpc.GenericRpcHandler:
    sys.path.insert(0, gen)
    from benchpb.v1 import bench_pb2  # generated at bench time by run.py

    ping = bench_pb2.Ping(id="stream", seq=1).SerializeToString()
    order, echo_ping, get_ping = (
        (_strict(bench_pb2.Order), _strict(bench_pb2.Ping), _strict(bench_pb2.Ping))
        if protobuf_only
        else (_echo, _echo, _echo)
    )

    async def stream_pings(request: bytes, context: Any) -> AsyncIterator[bytes]:
        count = bench_pb2.StreamRequest.FromString(request).count
        for _ in range(count):
            yield ping

    async def chat_pings(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    kw: dict[str, Any] = {"request_deserializer": _identity, "response_serializer": _identity}
    return grpc.method_handlers_generic_handler(
        "benchpb.v1.Bench",
        {
            "EchoOrder": grpc.unary_unary_rpc_method_handler(order, **kw),
            "EchoPing": grpc.unary_unary_rpc_method_handler(echo_ping, **kw),
            "GetPing": grpc.unary_unary_rpc_method_handler(get_ping, **kw),
            "StreamPings": grpc.unary_stream_rpc_method_handler(stream_pings, **kw),
            "ChatPings": grpc.stream_stream_rpc_method_handler(chat_pings, **kw),
        },
    )


async def serve(port: int, gen: str, protobuf_only: bool) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handlers(gen, protobuf_only),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"upstream listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gen", required=True, help="directory with the generated benchpb code")
    parser.add_argument(
        "--protobuf-only", action="store_true", help="unary requests must parse as protobuf"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port, args.gen, args.protobuf_only))
    except ImportError:
        asyncio.run(serve(args.port, args.gen, args.protobuf_only))


if __name__ == "__main__":
    main()
