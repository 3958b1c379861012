"""``grpc-bridge demo``: the demo service and a bridge in front of it, with curl lines to try."""

from __future__ import annotations

import sys

from grpc_bridge.app import Server, serve
from grpc_bridge.demo.service import start_demo_server
from grpc_bridge.edge.listen import ListenError
from grpc_bridge.settings import load_settings


def curl_lines(port: int, admin_port: int) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    json = "-H 'Content-Type: application/json'"
    return [
        "# unary call on the generic route (POST /package.Service/Method)",
        f'curl -s {base}/demo.v1.Shop/GetItem {json} -d \'{{"id": "1"}}\'',
        "# GET with the request in the query string (methods marked NO_SIDE_EFFECTS)",
        f"curl -s '{base}/demo.v1.Shop/GetItem?id=2'",
        f"curl -s {base}/demo.v1.Shop/CreateItem {json} "
        '-d \'{"item": {"name": "Kite", "category": "GAMES", "priceCents": "1500"}}\'',
        "# REST paths from the service's google.api.http annotations",
        f"curl -s {base}/v1/items/1",
        f'curl -s -X PATCH {base}/v1/items/2 {json} -d \'{{"priceCents": "1999"}}\'',
        "# streaming: NDJSON lines as items arrive, Server-Sent Events, request streams",
        f"curl -sN '{base}/demo.v1.Shop/ListItems?interval=0.5s'",
        f"curl -sN '{base}/demo.v1.Shop/ListItems?category=BOOKS' -H 'Accept: text/event-stream'",
        f"curl -s {base}/demo.v1.Shop/AddItems {json} "
        '-d \'[{"item": {"name": "Top"}}, {"item": {"name": "Ball"}}]\'',
        f'curl -sN {base}/demo.v1.Shop/Chat {json} -d \'[{{"text": "hello"}}, {{"text": "bye"}}]\'',
        "# errors come back as google.rpc.Status JSON with the mapped HTTP status",
        f'curl -s -i {base}/demo.v1.Shop/GetItem {json} -d \'{{"id": "404"}}\'',
        f"curl -s {base}/demo.v1.Shop/Ping {json} -d '{{}}'",
        "# admin port: health, readiness, introspection, the OpenAPI document",
        f"curl -s http://127.0.0.1:{admin_port}/readyz",
        f"curl -s http://127.0.0.1:{admin_port}/v1/services/demo.v1.Shop",
        f"curl -s http://127.0.0.1:{admin_port}/v1/openapi.yaml",
    ]


async def run_demo(port: int | None, admin_port: int | None, grpc_port: int = 0) -> int:
    """Ports None: ``listen.port``/``admin.port`` as for serve (environment, else 8080/8081)."""
    listen: dict[str, object] = {"host": "127.0.0.1"}
    admin: dict[str, object] = {"host": "127.0.0.1"}
    if port is not None:
        listen["port"] = port
    if admin_port is not None:
        admin["port"] = admin_port
    try:
        grpc_server, bound = await start_demo_server(port=grpc_port)
    except RuntimeError as exc:  # grpc's "Failed to bind to address ..."
        raise ListenError(
            f"cannot listen on 127.0.0.1:{grpc_port} for the demo gRPC service (--grpc-port): "
            "the address is in use or not available"
        ) from exc
    try:
        upstream = f"demo=127.0.0.1:{bound}"
        settings = load_settings(None, {"upstream": upstream, "listen": listen, "admin": admin})
    except BaseException:
        await grpc_server.stop(None)
        raise

    async def announce(server: Server) -> None:
        await server.bridge.wait_discovered()
        print(
            f"\ngrpc-bridge demo: gRPC service demo.v1.Shop on 127.0.0.1:{bound}, "
            f"bridge on 127.0.0.1:{server.proxy_port} (admin {server.admin_port}).\n"
            "Try these (Ctrl-C stops):\n",
            file=sys.stdout,
        )
        for line in curl_lines(server.proxy_port, server.admin_port):
            print(f"  {line}", file=sys.stdout)
        if server.bridge.settings.admin.playground:
            print(
                f"\nOr open the playground: http://127.0.0.1:{server.admin_port}/playground",
                file=sys.stdout,
            )
        print(flush=True)

    try:
        return await serve(settings, on_started=announce)
    finally:
        await grpc_server.stop(1.0)
