"""The event loop every entry point runs on: uvloop when it is installed.

Apart from cli.py so the processes cli.py starts (workers, ``openapi``) use it
without importing the command line back (no cli ↔ workers cycle).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

#: How many allocations a serving process lets pass between young-generation
#: collections of the cyclic collector (Python's default is 700). A young collection
#: walks every container object allocated since the last one that is still alive;
#: under load those are the objects of every call in flight, walked again each time.
#: At 700 allocations that happened every few calls (a unary call allocates a few
#: hundred); at 10,000, about a fourteenth as often for the same walk. Only garbage with
#: reference cycles waits longer (the rest is freed at once by reference counting): up
#: to 10,000 container objects more, and whatever they hold (the bridge makes no cycles
#: per call: bench/PROFILE.md section 16).
SERVING_GC_THRESHOLD = 10_000


def run(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed: it makes aiohttp's I/O markedly cheaper."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def collect_less_often() -> None:
    """Young collections every :data:`SERVING_GC_THRESHOLD` allocations; the older
    generations' settings stay Python's own (they mean different things across versions)."""
    gc.set_threshold(SERVING_GC_THRESHOLD, *gc.get_threshold()[1:])
