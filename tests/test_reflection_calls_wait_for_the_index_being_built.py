"""A reflection call made while the index is being built waits for it, and only it.

The bridge's local reflection upstream gets the index as a future: the
requests written meanwhile are held (as many as a call holds), answered in
order once it is built; the call's deadline still ends it while it waits; an
index that could not be built ends the call, INTERNAL for a bug, UNAVAILABLE
when the bridge stops (the index is cancelled), and a request a writer was
waiting to add is dropped.
"""

from __future__ import annotations

import asyncio

import pytest
from grpc_reflection.v1alpha import reflection_pb2

from grpc_bridge.codec.json_codec import JsonOptions
from grpc_bridge.discovery.reflection_index import ReflectionIndex
from grpc_bridge.errors import UpstreamError
from grpc_bridge.routing.plan import UpstreamLimits
from grpc_bridge.routing.reflection import reflection_plans
from grpc_bridge.status import Code
from grpc_bridge.upstream.local_reflection import PENDING, LocalReflection
from tests.helpers.servers import TEST_SERVICE

from bridgetest.v1 import kitchen_pb2  # isort: skip  (generated: on the path conftest.py sets)

Request = reflection_pb2.ServerReflectionRequest
(V1, _) = (plan.info for plan in reflection_plans(JsonOptions(), UpstreamLimits(10, 10)))


def request(**question: str) -> object:
    return V1.input_class.FromString(Request(**question).SerializeToString())


def kitchen_index() -> ReflectionIndex:
    services = kitchen_pb2.DESCRIPTOR.services_by_name.values()
    return ReflectionIndex.build(services)


async def test_requests_written_before_the_index_is_built_are_answered_once_it_is() -> None:
    index: asyncio.Future[ReflectionIndex] = asyncio.get_running_loop().create_future()
    local = LocalReflection(lambda: index, max_message_bytes=1 << 20)
    async with local.request_stream(V1, metadata=[], timeout=10) as call:
        for _ in range(PENDING - 1):
            assert await call.write(request(list_services=""))
        assert await call.write(request(file_containing_symbol=TEST_SERVICE))
        await call.done_writing()
        assert call.read_buffered(10, 1 << 20) == []  # nothing to answer from yet
        reading = asyncio.ensure_future(call.read())
        await asyncio.sleep(0.05)
        assert not reading.done()
        index.set_result(kitchen_index())
        answers = [await reading, *[await call.read() for _ in range(PENDING - 1)]]
        assert await call.read() is None
    listed = [s.name for s in answers[0].list_services_response.service]
    assert TEST_SERVICE in listed
    sent = answers[-1].file_descriptor_response.file_descriptor_proto
    assert sent[0] == kitchen_pb2.DESCRIPTOR.serialized_pb


async def test_a_call_waiting_for_the_index_ends_at_its_deadline() -> None:
    index: asyncio.Future[ReflectionIndex] = asyncio.get_running_loop().create_future()
    local = LocalReflection(lambda: index, max_message_bytes=1 << 20)
    async with local.request_stream(V1, metadata=[], timeout=0.1) as call:
        assert await call.write(request(list_services=""))
        with pytest.raises(UpstreamError) as failed:
            await call.read()
    assert failed.value.code == Code.DEADLINE_EXCEEDED
    index.cancel()


@pytest.mark.parametrize(
    ("outcome", "code", "message"),
    [
        ("crashed", Code.INTERNAL, "the reflection index was not built"),
        ("cancelled", Code.UNAVAILABLE, "the bridge is stopping"),
    ],
)
async def test_an_index_not_built_ends_the_call(outcome: str, code: Code, message: str) -> None:
    index: asyncio.Future[ReflectionIndex] = asyncio.get_running_loop().create_future()
    local = LocalReflection(lambda: index, max_message_bytes=1 << 20)
    async with local.request_stream(V1, metadata=[], timeout=10) as call:
        for _ in range(PENDING):
            assert await call.write(request(list_services=""))
        # A writer waiting for room: the call ends before its request is taken.
        waiting = asyncio.ensure_future(call.write(request(list_services="")))
        await asyncio.sleep(0)
        if outcome == "cancelled":  # the bridge stops
            index.cancel()
        else:
            index.set_exception(RuntimeError("a bug"))
        with pytest.raises(UpstreamError) as failed:
            await call.read()
        assert not await waiting
    assert (failed.value.code, str(failed.value)) == (code, message)
