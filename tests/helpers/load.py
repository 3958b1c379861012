"""A small load generator: workers POSTing to the bridge in a loop, recording every outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Outcome:
    started: float
    seconds: float
    status: int
    body: Any


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)

    def since(self, moment: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.started >= moment]

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]


@contextlib.asynccontextmanager
async def steady_load(
    url: str, body: dict[str, Any], *, workers: int = 4, pause: float = 0.005
) -> AsyncIterator[Load]:
    """Keep ``workers`` requests going until the block ends."""
    load = Load()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    async def work(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            started = loop.time()
            async with session.post(url, json=body, headers={"Grpc-Timeout": "3S"}) as resp:
                payload = await resp.json(content_type=None)
                load.outcomes.append(Outcome(started, loop.time() - started, resp.status, payload))
            await asyncio.sleep(pause)

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(work(session)) for _ in range(workers)]
        try:
            yield load
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> None:
    try:
        async with asyncio.timeout(within):
            # Polling: the state lives in other tasks' results, not behind an event.
            while True:
                if predicate():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {within}s: {what}") from None
