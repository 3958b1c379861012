"""A process that serves calls runs the cyclic collector's young generation every
10,000 allocations, not Python's 700 (grpc_bridge/runloop.py says why)."""

from __future__ import annotations

import gc
import os
import signal

from grpc_bridge.app import Server, serve
from grpc_bridge.runloop import SERVING_GC_THRESHOLD
from tests.helpers.harness import bridge_settings
from tests.helpers.servers import RunningServer


async def test_serve_raises_the_collectors_thresholds_once_started(
    upstream: RunningServer,
) -> None:
    seen: list[tuple[int, int, int]] = []

    async def started(server: Server) -> None:
        seen.append(gc.get_threshold())
        os.kill(os.getpid(), signal.SIGTERM)  # serve() stops on it, as in a pod

    before = gc.get_threshold()
    try:
        assert before[0] != SERVING_GC_THRESHOLD
        assert await serve(bridge_settings(upstream.target), on_started=started) == 0
    finally:
        gc.set_threshold(*before)
    # The young generation's threshold raised; the older ones as they were.
    assert seen == [(SERVING_GC_THRESHOLD, *before[1:])]
