"""``--insecure``: TLS to the server without verifying its certificate, through a loopback tunnel.

grpcio has no switch to skip certificate verification (its credentials always
verify), yet grpcurl's ``-insecure`` is how people reach servers with
self-signed certificates. So the channel talks plaintext HTTP/2 to a
listener on 127.0.0.1 that this process owns, and each of its connections is
relayed over a TLS connection (ALPN h2, the client certificate when given)
made with the stdlib's ``ssl`` and verification off. Nothing else can use the
tunnel for long: it lives as long as the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from grpc_bridge.client.session import ClientError
from grpc_bridge.upstream.resolver import parse_target

__all__ = ["InsecureTunnel"]

_CHUNK = 64 * 1024


class InsecureTunnel:
    def __init__(self, server: asyncio.Server, target: str) -> None:
        self._server = server
        self._tasks: set[asyncio.Task[None]] = set()
        #: Where the channel connects instead of the real target.
        self.target = target

    @classmethod
    async def open(cls, target: str, args: Any) -> InsecureTunnel:
        endpoint = parse_target(target)
        if endpoint.host is None:
            raise ClientError(f"--insecure needs a HOST:PORT target, not {target!r}")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        if args.cert and args.key:
            try:
                context.load_cert_chain(args.cert, args.key)
            except (OSError, ssl.SSLError) as exc:
                raise ClientError(
                    f"--cert {args.cert!r} / --key {args.key!r}: not a matching PEM "
                    f"certificate and key: {exc}"
                ) from exc
        host, port = endpoint.host, endpoint.port
        server_name = args.servername or host

        tunnel: InsecureTunnel

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tunnel._tasks.add(task)
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=server_name
                )
            except (OSError, ssl.SSLError):
                writer.close()  # the channel sees the connection fail: UNAVAILABLE
                tunnel._tasks.discard(task)
                return
            try:
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
            finally:
                tunnel._tasks.discard(task)

        server = await asyncio.start_server(relay, "127.0.0.1", 0)
        bound = server.sockets[0].getsockname()[1]
        tunnel = cls(server, f"127.0.0.1:{bound}")
        return tunnel

    async def close(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()
