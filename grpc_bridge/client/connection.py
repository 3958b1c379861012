"""The command-line client's connection: the bridge's own HTTP/2 client, built from an upstream.

The same :class:`~grpc_bridge.upstream.pool.ConnectionPool` and
:class:`~grpc_bridge.upstream.invoker.Invoker` as ``serve``'s,
so TLS files, server-name override, ``:authority``, keepalive, compression,
message-size limits and the mapping of failures to status codes are the
bridge's, not written again here. The CLI sees only the upstream API
(:class:`~grpc_bridge.upstream.api.CallInvoker`). Targets are used as given
(a name is resolved when dialled): a command is too short-lived for the
serving bridge's re-resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.api import CallInvoker
from grpc_bridge.upstream.dial import ConnectionPlan
from grpc_bridge.upstream.invoker import Invoker
from grpc_bridge.upstream.pool import ConnectionPool
from grpc_bridge.upstream.resolver import parse_target, unresolved
from grpc_bridge.upstream.tls import load_tls

__all__ = ["Connection"]


@dataclass(frozen=True, slots=True)
class Connection:
    """The calls of one command (``invoker``) and what carries them, closed at its end."""

    invoker: CallInvoker
    _pool: ConnectionPool

    @classmethod
    def open(cls, upstream: Upstream, *, verify: bool = True) -> Connection:
        """Connect at once (inside the running loop); ``verify=False`` is ``--insecure``.

        Raises :class:`~grpc_bridge.upstream.tls.TlsFileError` naming an unusable TLS file.
        """
        targets = unresolved(tuple(parse_target(t) for t in upstream.targets))
        pool = ConnectionPool(upstream)
        pool.open(ConnectionPlan(targets, load_tls(upstream.tls), verify))
        return cls(Invoker(pool), pool)

    async def close(self) -> None:
        # The command is over: whatever is still in flight is cancelled.
        await self._pool.close()
