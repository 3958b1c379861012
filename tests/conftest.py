"""Shared fixtures: real grpc.aio upstreams on ephemeral loopback ports, bridges in front."""

from __future__ import annotations

import sys
from pathlib import Path

# Generated code for tests/protos (see `make protos`); its imports are rooted
# at the proto package (``from bridgetest.v1 import common_pb2``).
sys.path.insert(0, str(Path(__file__).parent / "gen"))

# Imported after the sys.path line above: tests.helpers.servers needs the generated code.
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.helpers.harness import EDGES, MakeBridge, RunningBridge, running_bridge
from tests.helpers.js_clients import close_connect_node
from tests.helpers.process import close_fork_server
from tests.helpers.servers import RunningServer, StartServer, start_server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test (or module) marked ``both_edges`` that uses ``edge`` (through ``bridge``,
    ``make_bridge`` or a fixture of its module) runs on each edge: ``[lean]``, ``[aiohttp]``."""
    if "edge" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_edges"):
        metafunc.parametrize("edge", list(EDGES), indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` first: pytest-xdist hands out tests in this order, and a
    long test started last would end the run alone on one worker."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture
async def upstream() -> AsyncIterator[RunningServer]:
    """One upstream with every test service, health and reflection v1 + v1alpha."""
    server = await start_server()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def upstream_factory() -> AsyncIterator[StartServer]:
    """``await upstream_factory(**start_server_kwargs)``; all are stopped at teardown."""
    started: list[RunningServer] = []

    async def start(**kwargs: Any) -> RunningServer:
        server = await start_server(**kwargs)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop()


@pytest.fixture
def hand_overs(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every request the lean HTTP/1.1 path hands over to aiohttp (tests/helpers/lean_path.py)."""
    from tests.helpers.lean_path import spy_hand_overs

    return spy_hand_overs(monkeypatch)


@pytest.fixture
def edge(request: pytest.FixtureRequest) -> str | None:
    """The HTTP/1.1 edge a bridge runs: "lean" or "aiohttp" in a module marked
    ``both_edges``, else None (the setting's default, lean)."""
    return getattr(request, "param", None)


@pytest.fixture
async def make_bridge(edge: str | None) -> AsyncIterator[MakeBridge]:
    """``await make_bridge(target, **running_bridge_overrides)``: an in-process bridge on
    the test's ``edge`` unless ``listen.fast_path`` is given; all are stopped at teardown."""
    async with AsyncExitStack() as stack:

        async def make(upstream: str | None, **overrides: Any) -> RunningBridge:
            if edge is not None:
                overrides["listen"] = {"fast_path": EDGES[edge], **overrides.get("listen", {})}
            return await stack.enter_async_context(running_bridge(upstream, **overrides))

        yield make


@pytest.fixture
async def bridge(upstream: RunningServer, make_bridge: MakeBridge) -> RunningBridge:
    """A bridge in front of ``upstream`` with the default settings."""
    return await make_bridge(upstream.target)


def pytest_sessionfinish() -> None:
    """The fork server and the Node driver (each started on first use) end with the
    session, waited for: none outlives it, and their CPU counts as this process's."""
    close_fork_server()
    close_connect_node()
