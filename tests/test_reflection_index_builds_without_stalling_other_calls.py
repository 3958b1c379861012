"""Building the reflection index does not stall the bridge's other calls.

The first reflection request after a route table change builds the index of
what the bridge exposes. On a large API (here 400 services, each in its own
file importing the top of a 400-file import chain) that is real work, done
in slices between which the event loop serves every other client: another
client's unary calls keep a low latency while it builds, and the answers it
gives are complete. What keeps them low is the slicing, whatever the size of the
API: the second test proves it step by step.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool

from grpc_bridge.discovery.reflection_index import ReflectionIndex
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.reflection_client import Request, files_of, reflect
from tests.helpers.servers import HEALTH_SERVICE, TEST_SERVICE, StartServer

SERVICES = DEPTH = 400
ECHO = f"/{TEST_SERVICE}/Echo"
#: Generous on a loaded 2-CPU machine: building in one go held every call 300+ ms.
SLOW = 0.1
Proto = descriptor_pb2.FileDescriptorProto


def large_api() -> descriptor_pb2.FileDescriptorSet:
    """``chain/cN.proto`` imports ``chain/c(N-1).proto``; ``api/sN.proto`` (service
    ``large.SN``) imports the chain's top and uses its message."""
    files = []
    for i in range(DEPTH):
        chain = Proto(name=f"chain/c{i}.proto", package="chain", syntax="proto3")
        if i:
            chain.dependency.append(f"chain/c{i - 1}.proto")
        message = chain.message_type.add(name=f"M{i}")
        message.field.add(name="text", number=1, type=9, label=1)
        files.append(chain)
    top = f".chain.M{DEPTH - 1}"
    for i in range(SERVICES):
        api = Proto(name=f"api/s{i}.proto", package="large", syntax="proto3")
        api.dependency.append(f"chain/c{DEPTH - 1}.proto")
        api.service.add(name=f"S{i}").method.add(name="Call", input_type=top, output_type=top)
        files.append(api)
    return descriptor_pb2.FileDescriptorSet(file=files)


async def test_unary_calls_keep_their_latency_while_the_index_of_a_large_api_builds(
    upstream_factory: StartServer, make_bridge: MakeBridge, tmp_path: Path
) -> None:
    live = await upstream_factory(name="live", services=("test",))
    api = large_api()
    pb = tmp_path / "large.pb"
    pb.write_bytes(api.SerializeToString())
    bridge = await make_bridge(
        None,
        upstreams=[
            {"name": "live", "targets": [live.target]},
            # Never called: described by its descriptor set alone.
            {
                "name": "large",
                "targets": [live.target],
                "reflection": False,
                "descriptor_sets": [str(pb)],
            },
        ],
    )
    for _ in range(3):  # the connections and codecs the loop below uses are warm
        await echo(bridge)
    loop = asyncio.get_running_loop()
    calls: list[tuple[float, float]] = []
    done = asyncio.Event()
    caller = asyncio.create_task(call_until_set(bridge, done, calls))
    await echo(bridge)  # the caller is in its stride meanwhile
    asked = loop.time()
    try:
        listed, deepest, bottom, trailer = await reflect(
            bridge,
            Request(list_services=""),
            Request(file_containing_symbol=f"large.S{SERVICES - 1}.Call"),
            Request(file_containing_symbol="chain.M0.text"),
        )
    finally:
        answered = loop.time()
        done.set()
        await caller
    assert trailer == {}
    assert any(start < answered and asked < end for start, end in calls)
    slowest = max(end - start for start, end in calls)
    assert slowest < SLOW, f"a unary call took {slowest:.3f} s while the index built"
    # Complete: every service, and a service's file with the whole chain it imports.
    names = [s.name for s in listed.list_services_response.service]
    assert names == sorted(
        [HEALTH_SERVICE, TEST_SERVICE, *(f"large.S{i}" for i in range(SERVICES))]
    )
    sent = files_of(deepest)
    assert [f.name for f in sent] == [
        f"api/s{SERVICES - 1}.proto",
        *(f"chain/c{i}.proto" for i in reversed(range(DEPTH))),
    ]
    given = {f.name: f for f in api.file}
    assert all(f == given[f.name] for f in sent)
    # Already sent on this stream: the requested file alone.
    assert [f.name for f in files_of(bottom)] == ["chain/c0.proto"]


async def echo(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.post(ECHO, {"fString": "x"})
    assert (status, body["fString"]) == (200, "x"), body


async def call_until_set(
    bridge: RunningBridge, done: asyncio.Event, calls: list[tuple[float, float]]
) -> None:
    """Unary calls one after the other until ``done``, each's start and end in ``calls``."""
    loop = asyncio.get_running_loop()
    while not done.is_set():
        start = loop.time()
        await echo(bridge)
        calls.append((start, loop.time()))


async def test_the_index_is_built_a_step_at_a_time_with_other_tasks_run_between() -> None:
    pool = descriptor_pool.DescriptorPool()
    for file in large_api().file:
        pool.Add(file)
    services = [pool.FindServiceByName(f"large.S{i}") for i in range(SERVICES)]
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        index = await ReflectionIndex.build_in_slices(services, slice_s=0)
    finally:
        ticker.cancel()
    # A slice per step: each service's declaration, each file taken in.
    assert ticks >= SERVICES + len(index.files) == 2 * SERVICES + DEPTH
    assert index == ReflectionIndex.build(services)
