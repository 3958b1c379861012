"""A request head aiohttp reads must be in whole within ``limits.body_read_timeout_s``.

The lean edge (edge/fastpath.py) reads each head under that deadline, from the
request's first byte, and closes the connection when it is up. aiohttp has no
such deadline: a client could trickle a head one byte at a time and hold a
connection until the keep-alive timeout (75 s from its last answer). Every
connection aiohttp serves (the aiohttp-only edge, and every connection the lean
edge hands over, for the rest of its life) gets the same deadline here, in the
same way: the connection closes, nothing is answered.

The C parser does not say where a head begins, only where one ends (a message
queued), so the timer starts at bytes that may begin one:

- bytes that end no head, read when no body is open: a head's, surely;
- bytes that end a head or a body: more may follow them in the same read
  (unless the read ends with the end of a head without a body, as most do).

When it is up while an earlier request is still served, it starts again (as on
the lean edge, the deadline of a pipelined head runs once the connection is
free); when it is up and the handler is idle, the parser is asked whether it
holds part of a head (:func:`end_unfinished_head`), and the connection closes
if it does. A timer started at bytes that only may begin a head is replaced
once by one started at bytes that surely do: a head begun long after a body is
not cut short by the body's timer, and a trickled head still gets at most twice
the deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.streams import EMPTY_PAYLOAD

from grpc_bridge.edge.aiohttp_compat import (
    end_unfinished_head,
    queued_messages,
    upgraded,
    waiting_for_request,
)


class HeadDeadlineHandler(web.RequestHandler):
    """aiohttp's connection protocol, closing a connection whose head is late.

    ``head_timeout`` None: no deadline (aiohttp's own behaviour).
    """

    __slots__ = ("_body", "_head_surely", "_head_timeout", "_head_timer")

    def __init__(self, manager: web.Server, *, head_timeout: float | None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        #: Whether the running timer was started at bytes that surely begin a head.
        self._head_surely = False
        #: The body of the last request whose head was read (None: none yet).
        self._body: StreamReader | None = None

    def data_received(self, data: bytes) -> None:
        if self._head_timeout is None or not data or upgraded(self):
            super().data_received(data)
            return
        messages = queued_messages(self)
        queued = len(messages)
        body = self._body
        in_body = body is not None and not body.is_eof()
        super().data_received(data)
        if upgraded(self):
            self._stop_timer()  # what follows is WebSocket frames, no head
            return
        if len(messages) > queued:
            # A head came in whole: its timer is done; the read may go on past it.
            self._stop_timer()
            body = self._body = messages[-1][1]
            # A read that ends with a head without a body ends where a head would.
            if body.is_eof() and (body is not EMPTY_PAYLOAD or not data.endswith(b"\r\n\r\n")):
                self._start_timer(surely=False)
        elif not in_body:
            self._start_timer(surely=True)
        elif body is not None and body.is_eof():
            self._start_timer(surely=False)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _start_timer(self, *, surely: bool) -> None:
        timer = self._head_timer
        if timer is not None:
            if self._head_surely or not surely:
                return
            timer.cancel()
        self._head_surely = surely
        assert self._head_timeout is not None
        self._head_timer = self._loop.call_later(self._head_timeout, self._head_late)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport is None:
            return
        if not waiting_for_request(self):
            # An earlier request is still served: the deadline runs once it is done.
            self._start_timer(surely=self._head_surely)
            return
        if end_unfinished_head(self):
            self.force_close()
