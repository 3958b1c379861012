"""The proxy listener's sites: where each new connection starts.

- :class:`FastSite`: on the lean HTTP/1.1 edge (edge/fastpath.py), which also
  tells HTTP/2's preface (h2c with prior knowledge, edge/h2c.py) by the first
  bytes.
- :class:`SniffSite`, aiohttp-only (``listen.fast_path: false``, or tracing
  on): nothing looks at a connection's first bytes before aiohttp's
  ``RequestHandler`` does, so its connections start on :class:`Sniff`, which
  reads just enough to tell the preface from HTTP/1.1 and hands the
  connection, and the bytes read, to edge/h2c.py or to aiohttp. Everything
  after that is as on aiohttp's own ``TCPSite``. Until then the site owns it:
  its first bytes are a head begun (``limits.body_read_timeout_s``, as on the
  lean edge), and it is closed when the site stops (neither server knows it).
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web

from grpc_bridge.edge.aiohttp_compat import ProtocolSite, adopt_connection
from grpc_bridge.edge.fastpath import FastPath
from grpc_bridge.edge.h2c import IDLE_TIMEOUT_S, H2cEdge, preface_state


class Sniff(asyncio.Protocol):
    """A new connection until its first bytes say HTTP/2 or HTTP/1.1."""

    def __init__(
        self, server: web.Server, h2c: H2cEdge, undecided: set[Sniff], head_timeout: float
    ) -> None:
        self._server = server
        self._h2c = h2c
        self._head_timeout = head_timeout
        # Neither aiohttp nor the h2c edge knows this connection yet, so neither closes
        # it at shutdown: the site does (SniffSite.stop).
        self._undecided = undecided
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)
        self._undecided.add(self)
        # Silent clients are closed as an idle keep-alive connection would be.
        self._timer = asyncio.get_running_loop().call_later(IDLE_TIMEOUT_S, transport.close)

    def data_received(self, data: bytes) -> None:
        first = not self._buffer
        self._buffer += data
        http2 = preface_state(self._buffer)
        transport = self._transport
        if transport is None:
            return
        if http2 is None:
            if first and self._timer is not None:
                # A head has begun (the lean edge's request timer, edge/head_deadline.py's).
                self._timer.cancel()
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self._head_timeout, transport.close)
            return
        self._transport = None
        self._undecided.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if http2:
            self._h2c.adopt(transport, self._buffer, paused=False)
        else:
            adopt_connection(self._server(), transport, self._buffer, paused=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._undecided.discard(self)
        if self._timer is not None:
            self._timer.cancel()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class SniffSite(ProtocolSite):
    """aiohttp's TCP site whose connections may also be HTTP/2 with prior knowledge."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        reuse_port: bool | None,
        shutdown_timeout: float,
        head_timeout: float,
        stall_timeout: float,
    ) -> None:
        assert runner.server is not None
        server = runner.server
        self.h2c = H2cEdge(server, head_timeout=head_timeout, stall_timeout=stall_timeout)
        undecided: set[Sniff] = set()
        self._undecided = undecided
        super().__init__(
            runner,
            lambda: Sniff(server, self.h2c, undecided, head_timeout),
            host,
            port,
            reuse_port=reuse_port,
        )
        self._drain_timeout = shutdown_timeout

    async def stop(self) -> None:
        await super().stop()
        # Nothing was asked on these yet (nothing to answer or flush).
        for sniff in list(self._undecided):
            sniff.abort()
        await self.h2c.shutdown(self._drain_timeout)


class FastSite(ProtocolSite):
    """aiohttp's TCP site with connections that start on the fast path."""

    def __init__(
        self,
        runner: web.AppRunner,
        fast: FastPath,
        host: str,
        port: int,
        *,
        reuse_port: bool | None,
        shutdown_timeout: float,
    ) -> None:
        super().__init__(runner, fast.protocol, host, port, reuse_port=reuse_port)
        self.fast = fast
        self._drain_timeout = shutdown_timeout

    async def stop(self) -> None:
        """Stop listening, then let fast requests in flight finish (aiohttp's own follow)."""
        await super().stop()
        await self.fast.shutdown(self._drain_timeout)
