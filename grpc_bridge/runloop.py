"""The event loop every entry point runs on: uvloop when it is installed.

Apart from cli.py so the processes cli.py starts (workers, ``openapi``) use it
without importing the command line back (no cli ↔ workers cycle).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

#: The cyclic collector's thresholds for a serving process (Python's are 700, 10, 10).
#: A young-generation collection walks every container object allocated since the last
#: one that is still alive; under load those are the objects of every call in flight,
#: walked again each time. At Python's 700 allocations that happened every few calls
#: (a unary call allocates a few hundred); at 10,000, an eighth as often for the same
#: walk. Only garbage with reference cycles waits longer (the rest is freed at once by
#: reference counting): at most 10,000 objects more.
SERVING_GC_THRESHOLDS = (10_000, 10, 10)


def run(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed: it makes aiohttp's I/O markedly cheaper."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def collect_less_often() -> None:
    """The collector thresholds of a process that serves calls (:data:`SERVING_GC_THRESHOLDS`)."""
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
