"""At shutdown, a client that reads nothing is cut off after a short grace.

A connection closed with its last response still unsent stays open until the
client has read it: asyncio's ``close()`` flushes first. A client that reads
nothing would keep it open for ever, and the socket would outlive the loop (an
unraisable "unclosed transport" ResourceWarning). Both edges close their
connections at shutdown, then give the rest :data:`FLUSH_GRACE` and abort
them: the lean edge its own (edge/fastpath.py), the h2c edge its HTTP/2 ones
once they have had their GOAWAY (edge/h2c.py), :class:`CutOffServer` aiohttp's
(the aiohttp-only edge's, and those the lean edge handed over).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any, Protocol

from aiohttp import web

#: At shutdown, how long a client has to take its last response before it is cut off.
FLUSH_GRACE = 1.0


class Abortable(Protocol):
    def abort(self) -> None: ...


async def cut_off(connections: Collection[Abortable], emptied: asyncio.Event, grace: float) -> None:
    """Wait up to ``grace`` for ``connections`` to be gone (``emptied``), then abort the rest."""
    if connections:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(emptied.wait(), grace)
    for connection in list(connections):
        connection.abort()
    await asyncio.sleep(0)  # connection_lost, which releases the socket, runs now


class CutOffServer(web.Server):
    """aiohttp's low-level server, knowing its connections' transports until they are lost
    (aiohttp forgets them at shutdown, before they are)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: dict[web.RequestHandler, asyncio.Transport] = {}
        self._emptied = asyncio.Event()

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._open[handler] = transport
        self._emptied.clear()

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self._open.pop(handler, None)
        if not self._open:
            self._emptied.set()

    async def cut_off(self) -> None:
        """After aiohttp's shutdown: what is still open has :data:`FLUSH_GRACE`, then is aborted."""
        await cut_off(self._open.values(), self._emptied, FLUSH_GRACE)
