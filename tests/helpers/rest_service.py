"""bridgetest.v1.RestService and BadRest (tests/protos/bridgetest/v1/rest.proto), for REST tests.

Most methods answer with their request, so a test sees exactly what the
bridge built from the path, the query and the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bridgetest.v1 import rest_pb2, rest_pb2_grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2

REST_SERVICE = rest_pb2.DESCRIPTOR.services_by_name["RestService"].full_name
BAD_REST_SERVICE = rest_pb2.DESCRIPTOR.services_by_name["BadRest"].full_name


class RestServiceImpl(rest_pb2_grpc.RestServiceServicer):
    async def _echo(self, request: Any, context: Any) -> Any:
        return request

    Get = GetSpecial = GetResource = GetFile = GetOperation = GetTyped = _echo
    Create = CreateNested = Replace = Update = Archive = Search = Plain = _echo

    async def Delete(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    async def Upload(self, request: Any, context: Any) -> Any:
        return rest_pb2.Thing(id=request.id, name=request.file.content_type, data=request.file.data)

    async def EchoBody(self, request: Any, context: Any) -> Any:
        return request

    async def Download(self, request: Any, context: Any) -> Any:
        csv = "".join(f"{tag}\n" for tag in request.tags).encode()
        return httpbody_pb2.HttpBody(content_type="text/csv", data=csv)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield request
        yield request

    async def Collect(self, requests: AsyncIterator[Any], context: Any) -> Any:
        return rest_pb2.Thing(tags=[f"{r.id}|{r.name}|{r.num}" async for r in requests])

    async def Converse(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            yield request

    async def Chunks(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for tag in request.tags:
            yield httpbody_pb2.HttpBody(content_type="text/csv", data=f'{tag},"x"\n'.encode())


class BadRestImpl(rest_pb2_grpc.BadRestServicer):
    async def _echo(self, request: Any, context: Any) -> Any:
        return request

    Clash = Malformed = UnknownField = _echo


def add_to_server(service: str, server: Any) -> None:
    """``service``: ``rest`` (RestService) or ``badrest`` (BadRest)."""
    if service == "rest":
        rest_pb2_grpc.add_RestServiceServicer_to_server(RestServiceImpl(), server)
    else:
        rest_pb2_grpc.add_BadRestServicer_to_server(BadRestImpl(), server)
