"""The baseline: the JSON → gRPC proxy most people would write first with aiohttp.

``json_format.Parse`` in, ``json_format.MessageToJson`` out, one grpc.aio
channel, multi-callables made once at start-up, the default asyncio loop. No
validation, no metadata, no logging: it does less than grpc_bridge, so the
ratio against it is a lower bound on what the fast path buys.

    python bench/naive_proxy.py --port 8190 --upstream 127.0.0.1:50151 --gen DIR
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc
import grpc.aio
from aiohttp import web
from google.protobuf import json_format


def build_app(upstream: str, gen: str) -> web.Application:
    sys.path.insert(0, gen)
    from benchpb.v1 import bench_pb2  # generated at bench time by run.py

    service = bench_pb2.DESCRIPTOR.services_by_name["Bench"]
    classes = {
        m.name: getattr(bench_pb2, m.name) for m in service.file.message_types_by_name.values()
    }
    app = web.Application()
    state: dict[str, Any] = {}

    async def start(app: web.Application) -> Any:
        channel = grpc.aio.insecure_channel(upstream)
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                continue
            output = classes[method.output_type.name]
            call = channel.unary_unary(
                f"/{service.full_name}/{method.name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=output.FromString,
            )
            state[f"/{service.full_name}/{method.name}"] = (classes[method.input_type.name], call)
        yield
        await channel.close()

    async def handle(request: web.Request) -> web.Response:
        entry = state.get(request.path)
        if entry is None:
            raise web.HTTPNotFound()
        input_class, call = entry
        message = json_format.Parse(await request.read(), input_class())
        response = await call(message)
        body = json_format.MessageToJson(
            response, indent=None, always_print_fields_with_no_presence=True
        )
        return web.Response(text=body, content_type="application/json")

    app.cleanup_ctx.append(start)
    app.router.add_post("/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--gen", required=True)
    args = parser.parse_args()
    web.run_app(
        build_app(args.upstream, args.gen),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=lambda *_: print(f"naive proxy listening on 127.0.0.1:{args.port}", flush=True),
    )


if __name__ == "__main__":
    main()
