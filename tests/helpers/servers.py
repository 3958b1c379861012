"""Real grpc.aio upstreams for tests, on loopback ports.

``start_server()`` runs the bridgetest services (tests/protos) with health
checking and server reflection, the way a production upstream would. Tests
look at what the server saw through ``RunningServer.test`` (``completed`` and
``cancelled`` tags) and flip health through ``RunningServer.health``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
import grpc.aio
from bridgetest.v1 import (
    common_pb2,
    details_pb2,
    kitchen_pb2,
    kitchen_pb2_grpc,
    other_pb2,
    other_pb2_grpc,
)
from google.protobuf import any_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc._cython import cygrpc  # ExecuteBatchError: grpc.aio raises it, exports it not
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpc_bridge.demo import demo_pb2, demo_pb2_grpc
from grpc_bridge.demo.reflection import enable_reflection

STATUS_DETAILS_KEY = "grpc-status-details-bin"
MYSTERY_TYPE_URL = "type.googleapis.com/unknown.v1.Mystery"
#: What Fail(with_foreign_detail=true) attaches. No service file imports
#: details.proto: importing its module here puts it in the default pool, which
#: reflection serves, so a client finds it only by asking for the symbol.
FOREIGN_DETAIL = details_pb2.RetryAdvice(wait_seconds=30, why="rate limited")
#: Sent before it, and known nowhere: its name sorts first, so a client that asks for
#: the types one by one meets this failure before asking for RetryAdvice.
UNFINDABLE_TYPE_URL = "type.googleapis.com/aardvark.v1.Missing"

TEST_SERVICE = kitchen_pb2.DESCRIPTOR.services_by_name["TestService"].full_name
OTHER_SERVICE = other_pb2.DESCRIPTOR.services_by_name["Other"].full_name
INTERNAL_SERVICE = other_pb2.DESCRIPTOR.services_by_name["Internal"].full_name
DEMO_SERVICE = demo_pb2.DESCRIPTOR.services_by_name["Shop"].full_name
HEALTH_SERVICE = grpc_health.SERVICE_NAME

#: The deadline a test gives a client's call to a long Sleep when it then awaits the
#: upstream's cancellation: a client's clock starts before its request is out (buf
#: loads its schema and connects within ``--timeout``, so does ``grpc-bridge call
#: --max-time``), and on a loaded machine 0.3 s could pass before the call reached the
#: upstream, which then had nothing to cancel. Long enough to get there, far below the sleep.
CLIENT_DEADLINE_S = 2.0
CLIENT_DEADLINE_MS = int(CLIENT_DEADLINE_S * 1000)

_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    return _STATUS_CODES.get(number, grpc.StatusCode.UNKNOWN)


def rich_status(code: int, message: str) -> status_pb2.Status:
    """The google.rpc.Status that Fail(with_details=true) sends."""
    status = status_pb2.Status(code=code, message=message)
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="name", description="must not be empty"
            )
        ]
    )
    status.details.add().Pack(bad_request)
    status.details.add().Pack(common_pb2.CustomDetail(reason="flaky", attempt=3))
    status.details.append(any_pb2.Any(type_url=MYSTERY_TYPE_URL, value=b"\x01\x02\x03"))
    return status


async def _settle() -> None:
    """Let a client's cancellation arrive.

    grpc.aio ends a request iterator the same way for a half-close and for a
    cancelled call; the cancellation reaches the handler as CancelledError
    at its next await.
    """
    await asyncio.sleep(0.01)


async def _not_cancelled(context: Any) -> None:
    """After the request iterator ended: CancelledError if the client cancelled the call,
    rather than half-closed it.

    grpc.aio ends the iterator the same way for both, and the cancellation itself
    comes a moment later, at the handler's next await: a fixed wait for it (``_settle``)
    can end first on a loaded machine. Sending the response headers tells the two apart
    at once: grpc-core fails every batch on a cancelled call.
    """
    try:
        await context.send_initial_metadata(())
    except cygrpc.ExecuteBatchError as exc:
        raise asyncio.CancelledError from exc


class TestServiceImpl(kitchen_pb2_grpc.TestServiceServicer):
    """bridgetest.v1.TestService, as described in kitchen.proto."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self) -> None:
        #: Tags of Sleep / ServerStream calls that ran to the end.
        self.completed: list[str] = []
        #: Tags of Sleep / ServerStream calls cancelled (client gone, deadline).
        self.cancelled: list[str] = []
        #: Texts of ClientStream / Bidi request messages, recorded as each arrives.
        self.received: list[str] = []
        #: ServerStream messages written so far, by tag (backpressure tests).
        self.sent: dict[str, int] = {}
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        which: Literal["completed", "cancelled", "received"],
        tag: str | None,
        *,
        within: float = 5.0,
    ) -> None:
        """Wait until ``tag`` (None: any tag) shows up in ``completed``, ``cancelled``
        or ``received``.

        Cancellation reaches the server a moment after the client gives up,
        so tests wait for it rather than assert at once. TimeoutError after
        ``within`` seconds.
        """
        tags = {"completed": self.completed, "cancelled": self.cancelled}.get(which, self.received)
        async with asyncio.timeout(within):
            while (tag not in tags) if tag is not None else not tags:
                self._changed.clear()
                await self._changed.wait()

    def _record(self, tags: list[str], tag: str) -> None:
        tags.append(tag)
        self._changed.set()

    async def Echo(self, request: Any, context: Any) -> Any:
        return request

    async def Lookup(self, request: Any, context: Any) -> Any:
        return request

    async def Fail(self, request: Any, context: Any) -> Any:
        trailing: list[tuple[str, str | bytes]] = [
            (key, value.encode() if key.endswith("-bin") else value)
            for key, value in sorted(request.trailers.items())
        ]
        if request.with_details or request.with_foreign_detail:
            status = (
                rich_status(request.code, request.message)
                if request.with_details
                else status_pb2.Status(code=request.code, message=request.message)
            )
            if request.with_foreign_detail:
                status.details.append(any_pb2.Any(type_url=UNFINDABLE_TYPE_URL, value=b"\x07"))
                status.details.add().Pack(FOREIGN_DETAIL)
            trailing.append((STATUS_DETAILS_KEY, status.SerializeToString()))
        if request.code == 0:
            context.set_trailing_metadata(tuple(trailing))
            return empty_pb2.Empty()
        await context.abort(status_code(request.code), request.message, tuple(trailing))

    async def Sleep(self, request: Any, context: Any) -> Any:
        try:
            await asyncio.sleep(request.duration.ToTimedelta().total_seconds())
        except asyncio.CancelledError:
            self._record(self.cancelled, request.tag)
            raise
        self._record(self.completed, request.tag)
        return kitchen_pb2.SleepResponse(completed=True, tag=request.tag)

    async def EchoMetadata(self, request: Any, context: Any) -> Any:
        received: dict[str, list[str]] = {}
        for key, value in context.invocation_metadata() or ():
            text = base64.b64encode(value).decode() if key.endswith("-bin") else value
            received.setdefault(key, []).append(text)
        await context.send_initial_metadata((("x-initial", "yes"), ("x-initial-bin", b"\x00\x01")))
        context.set_trailing_metadata((("x-trailer", "done"), ("x-trailer-bin", b"\xff")))
        # A map holds one value per key: repeated keys are joined as HTTP does.
        return kitchen_pb2.MetadataResponse(
            received={key: ", ".join(values) for key, values in received.items()},
            peer=context.peer(),
        )

    async def ServerStream(self, request: Any, context: Any) -> None:
        # context.write rather than an async generator: cancellation then
        # arrives here as CancelledError instead of a later GeneratorExit.
        interval = request.interval.ToTimedelta().total_seconds()
        sent = request.count if not request.fail_code else min(request.count, request.fail_after)
        try:
            for index in range(sent):
                if index and interval:
                    await asyncio.sleep(interval)
                await context.write(
                    kitchen_pb2.StreamReply(index=index, text=f"{request.tag}-{index}")
                )
                self.sent[request.tag] = index + 1
        except asyncio.CancelledError:
            self._record(self.cancelled, request.tag)
            raise
        if request.fail_code:
            await context.abort(status_code(request.fail_code), f"failing after {sent}")
        self._record(self.completed, request.tag)

    async def ClientStream(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        # Cancellations are recorded under the first message's text.
        texts: list[str] = []
        try:
            async for message in request_iterator:
                texts.append(message.text)
                self._record(self.received, message.text)
            await _not_cancelled(context)
        except asyncio.CancelledError:
            self._record(self.cancelled, texts[0] if texts else "")
            raise
        context.set_trailing_metadata((("x-count", str(len(texts))),))
        return kitchen_pb2.StreamSummary(count=len(texts), texts=texts)

    async def Bidi(self, request_iterator: AsyncIterator[Any], context: Any) -> None:
        # Echoes each message at once; cancellations recorded under the first message's text.
        first: str | None = None
        try:
            async for message in request_iterator:
                first = message.text if first is None else first
                self._record(self.received, message.text)
                await context.write(
                    kitchen_pb2.StreamReply(index=message.index, text="echo: " + message.text)
                )
            await _settle()
        except asyncio.CancelledError:
            self._record(self.cancelled, first or "")
            raise


class OtherImpl(other_pb2_grpc.OtherServicer):
    def __init__(self, name: str) -> None:
        self._name = name

    async def Whoami(self, request: Any, context: Any) -> Any:
        return common_pb2.Nested(name=self._name, value=request.value)


class InternalImpl(other_pb2_grpc.InternalServicer):
    async def Secret(self, request: Any, context: Any) -> Any:
        return request


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    target: str  # "127.0.0.1:<port>"
    name: str
    test: TestServiceImpl
    health: grpc_health.aio.HealthServicer | None
    _stopped: bool = field(default=False, repr=False)

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving (idempotent); ``grace=None`` cancels calls in flight."""
        if not self._stopped:
            self._stopped = True
            await self.server.stop(grace)


async def start_server(
    *,
    name: str = "upstream-a",
    port: int = 0,
    services: Sequence[str] = ("test", "other", "internal"),
    reflection: Sequence[str] = ("v1", "v1alpha"),
    health: bool = True,
    credentials: grpc.ServerCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> RunningServer:
    """Start an upstream on 127.0.0.1 (``port=0``: an ephemeral port).

    ``credentials`` serves TLS (``grpc.ssl_server_credentials``); ``options``
    are extra grpc server options.

    ``services`` picks from ``test``, ``other``, ``internal`` and ``demo`` (the
    demo Shop's descriptors; its methods answer UNIMPLEMENTED), and ``rest`` /
    ``badrest`` (annotated, see tests/helpers/rest_service.py). ``reflection``
    lists the protocol versions served; empty serves none.
    """
    # Exclusive bind: with SO_REUSEPORT (grpc's default) a second server could
    # silently share a port a test believes is free or taken.
    server = grpc.aio.server(options=(("grpc.so_reuseport", 0), *options))
    test = TestServiceImpl()
    served: list[str] = []
    for service in services:
        if service == "test":
            kitchen_pb2_grpc.add_TestServiceServicer_to_server(test, server)
            served.append(TEST_SERVICE)
        elif service == "other":
            other_pb2_grpc.add_OtherServicer_to_server(OtherImpl(name), server)
            served.append(OTHER_SERVICE)
        elif service == "internal":
            other_pb2_grpc.add_InternalServicer_to_server(InternalImpl(), server)
            served.append(INTERNAL_SERVICE)
        elif service == "demo":
            demo_pb2_grpc.add_ShopServicer_to_server(demo_pb2_grpc.ShopServicer(), server)
            served.append(DEMO_SERVICE)
        elif service in ("rest", "badrest"):
            # REST-mapping services (tests/helpers/rest_service.py); imported here only.
            from tests.helpers import rest_service

            rest_service.add_to_server(service, server)
            served.append(
                rest_service.REST_SERVICE if service == "rest" else rest_service.BAD_REST_SERVICE
            )
        else:
            raise ValueError(f"unknown test service {service!r}")
    health_servicer = None
    if health:
        health_servicer = grpc_health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for service_name in ("", *served):
            await health_servicer.set(service_name, health_pb2.HealthCheckResponse.SERVING)
        served.append(HEALTH_SERVICE)
    if reflection:
        enable_reflection(server, served, reflection)
    try:
        address = f"127.0.0.1:{port}"
        if credentials is not None:
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
        await server.start()
    except BaseException:
        await server.stop(None)  # don't leave a half-made server to the GC
        raise
    return RunningServer(
        server=server,
        port=bound,
        target=f"127.0.0.1:{bound}",
        name=name,
        test=test,
        health=health_servicer,
    )


#: The type of the ``upstream_factory`` fixture: ``start_server`` with teardown.
StartServer = Callable[..., Awaitable[RunningServer]]
