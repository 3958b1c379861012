"""Shared fixtures: real grpc.aio upstreams on ephemeral loopback ports."""

from __future__ import annotations

import sys
from pathlib import Path

# Generated code for tests/protos (see `make protos`); its imports are rooted
# at the proto package (``from bridgetest.v1 import common_pb2``).
sys.path.insert(0, str(Path(__file__).parent / "gen"))

# Imported after the sys.path line above: tests.helpers.servers needs the generated code.
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.helpers.servers import RunningServer, StartServer, start_server


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
