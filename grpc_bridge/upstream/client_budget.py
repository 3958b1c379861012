"""What the upstream calls of one client connection may hold together.

A client that stops reading leaves each of its calls holding up to its
stream's budget (``upstreams[].stream_buffer_bytes``: messages waiting for the
client plus the window the upstream may still use). An HTTP/1.1 connection
carries one call at a time; an HTTP/2 one (h2c on the proxy port) up to 100,
so one connection that reads nothing could pin 100 budgets (~400 MiB with the
defaults).

The edge that serves such a connection hands each of its calls the same
:class:`ClientBudget` through :data:`CLIENT_BUDGET` (a context variable: the
call's upstream stream is opened in the request's own task), and the HTTP/2
client (upstream/h2/response.py) grants a stream window only within what the
budget has left: once the connection's calls hold one stream's budget between
them, their upstreams are paused by flow control, as Envoy bounds what one
downstream connection buffers (``per_connection_buffer_limit_bytes``). Calls
of other connections are not held back: each connection has its own.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["CLIENT_BUDGET", "ClientBudget"]


class ClientBudget:
    """Bytes the upstream calls of one client connection hold, or let their upstreams send."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = 0

    def add(self, delta: int) -> None:
        """A call holds ``delta`` bytes more (or fewer)."""
        self.held += delta


#: The budget of the client connection the current call serves (None: a call of its own).
CLIENT_BUDGET: ContextVar[ClientBudget | None] = ContextVar("client_budget", default=None)
