"""One upstream and a lean + aiohttp bridge process on it, shared by a module's tests.

A bridge process costs about a CPU-second to start and stop (imports,
discovery, interpreter exit); on the 2-CPU box the suite is CPU-bound, so
tests that only send bytes to a bridge with given settings, and look at the
answers alone (not at the bridge's log lines nor at what the upstream saw),
share one pair started once per module (per xdist worker):

    @pytest.fixture(scope="module")
    def edges() -> Iterator[SharedBridges]:
        with shared_bridges() as pair:
            yield pair

    async def test_x(edges: SharedBridges) -> None:
        answer = await exchange(edges.port("lean"), data)

They run on a loop of their own in a thread (:class:`Background`), so that
tests of any loop scope, or none, use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass

from tests.helpers.background import Background
from tests.helpers.process import BridgeProcess
from tests.helpers.raw_http import bridge_on, wait_ready
from tests.helpers.servers import start_server


@dataclass(frozen=True)
class SharedBridges:
    lean: BridgeProcess
    plain: BridgeProcess

    def port(self, path: str | bool) -> int:
        """The proxy port of the ``"lean"`` (or True) / ``"aiohttp"`` (or False) bridge."""
        return (self.lean if path in ("lean", True) else self.plain).proxy_port


@contextmanager
def shared_bridges(**env: str) -> Iterator[SharedBridges]:
    """Both bridges (``env``: their GRPC_BRIDGE_* settings) ready, on a fresh upstream."""
    background = Background()
    stack = AsyncExitStack()

    async def start() -> SharedBridges:
        upstream = await start_server()
        stack.push_async_callback(upstream.stop)
        lean, plain = [
            await stack.enter_async_context(bridge_on(upstream.target, path, env=env))
            for path in ("lean", "aiohttp")
        ]
        for bridge in (lean, plain):
            await wait_ready(bridge)
        return SharedBridges(lean, plain)

    try:
        yield background.run(start())
    finally:
        try:
            background.run(stack.aclose())
        finally:
            background.close()
