"""The event loop every entry point runs on: uvloop when it is installed.

Apart from cli.py so the processes cli.py starts (workers, ``openapi``) use it
without importing the command line back (no cli ↔ workers cycle).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed: it makes aiohttp's I/O markedly cheaper."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
