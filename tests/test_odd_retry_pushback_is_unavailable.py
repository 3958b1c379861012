"""Attack repro: a hostile upstream's grpc-retry-pushback-ms that str.isdigit() accepts but
int() does not (a superscript digit, or more than 4300 digits) is a bridge bug (500) instead
of the call's UNAVAILABLE (upstream/retry.py pushback_s)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.helpers.h2peer import HostilePeer, descriptor_set
from tests.helpers.raw_http import bridge_on, request, response_to

ECHO = "/bridgetest.v1.TestService/Echo"


@pytest.fixture
async def peer() -> AsyncIterator[HostilePeer]:
    hostile = await HostilePeer().start()
    try:
        yield hostile
    finally:
        await hostile.stop()


@pytest.mark.parametrize("value", ["\u00b2".encode(), b"1" * 5000], ids=["superscript", "5000"])
async def test_an_odd_pushback_is_unavailable_not_a_bug(
    peer: HostilePeer, tmp_path: Path, value: bytes
) -> None:
    peer.status = 14
    peer.initial = ((b"grpc-retry-pushback-ms", value),)
    upstream = {
        "name": "hostile",
        "targets": [peer.target],
        "reflection": False,
        "descriptor_sets": [str(descriptor_set(tmp_path))],
    }
    async with bridge_on(None, "aiohttp", config={"upstreams": [upstream]}) as bridge:
        status, _, body = await response_to(bridge, request("POST", ECHO, b"{}"))
    assert status == 503, body
    assert orjson.loads(body)["code"] == 14
