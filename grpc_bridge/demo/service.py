"""An in-memory shop: one method of each kind, with reflection and health."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from google.protobuf import empty_pb2, timestamp_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from grpc_bridge.demo import demo_pb2, demo_pb2_grpc
from grpc_bridge.demo.reflection import enable_reflection

SERVICE = "demo.v1.Shop"


def _now() -> Any:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


class Shop(demo_pb2_grpc.ShopServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self._ids = itertools.count(1)
        for name, category, price in (
            ("The Pragmatic Programmer", demo_pb2.BOOKS, 4200),
            ("Chess set", demo_pb2.GAMES, 2500),
            ("Hammer", demo_pb2.TOOLS, 1299),
            ("Designing Data-Intensive Applications", demo_pb2.BOOKS, 3999),
        ):
            self._add(demo_pb2.Item(name=name, category=category, price_cents=price, tags=["demo"]))

    def _add(self, item: Any) -> Any:
        stored = demo_pb2.Item()
        stored.CopyFrom(item)
        stored.id = str(next(self._ids))
        stored.created_at.CopyFrom(_now())
        self.items[stored.id] = stored
        return stored

    async def _get(self, item_id: str, context: grpc.aio.ServicerContext) -> Any:
        item = self.items.get(item_id)
        if item is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"item {item_id!r} not found")
        return item

    async def GetItem(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._get(request.id, context)

    async def CreateItem(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not request.item.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "item.name must not be empty")
        return self._add(request.item)

    async def UpdateItem(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        item = await self._get(request.item.id, context)
        paths = list(request.update_mask.paths) or ["name", "category", "price_cents", "tags"]
        for path in paths:
            if path not in ("name", "category", "price_cents", "tags"):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot update {path!r}")
            if path == "tags":
                del item.tags[:]
                item.tags.extend(request.item.tags)
            else:
                setattr(item, path, getattr(request.item, path))
        return item

    async def DeleteItem(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._get(request.id, context)
        del self.items[request.id]
        return empty_pb2.Empty()

    async def ListItems(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        interval = request.interval.ToTimedelta().total_seconds()
        for item in list(self.items.values()):
            if request.category and item.category != request.category:
                continue
            yield item
            if interval:
                await asyncio.sleep(interval)

    async def AddItems(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> Any:
        added = total = 0
        async for request in request_iterator:
            item = self._add(request.item)
            added += 1
            total += item.price_cents
        return demo_pb2.AddItemsResponse(added=added, total_price_cents=total)

    async def Chat(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        async for message in request_iterator:
            yield demo_pb2.ChatMessage(text=f"you said: {message.text}", sent_at=_now())

    async def Ping(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return demo_pb2.Pong(time=_now(), server=socket.gethostname())


class _Health(health.aio.HealthServicer):  # type: ignore[misc]
    """grpcio-health-checking's servicer, plus ``List``: its asyncio version leaves it
    unimplemented though reflection advertises it, so ``POST
    /grpc.health.v1.Health/List`` answered 501 (the OpenAPI fuzz test found it)."""

    def __init__(self) -> None:
        super().__init__()
        self._statuses: dict[str, Any] = {}

    async def set(self, service: str, status: Any) -> None:
        self._statuses[service] = status
        await super().set(service, status)

    async def List(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._statuses.items()
            }
        )


async def start_demo_server(host: str = "127.0.0.1", port: int = 0) -> tuple[grpc.aio.Server, int]:
    """Start the demo service with reflection (v1, v1alpha) and health; returns the port."""
    server = grpc.aio.server()
    demo_pb2_grpc.add_ShopServicer_to_server(Shop(), server)
    health_servicer = _Health()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, [SERVICE, health.SERVICE_NAME])
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return server, bound
