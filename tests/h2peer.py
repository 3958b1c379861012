"""A hostile gRPC upstream on the ``h2`` library: it answers every call with metadata of its choice.

grpcio refuses to send metadata keys that are not gRPC keys (a CR/LF, a
space); a peer written on ``h2``, with its header validation off, sends
whatever bytes a test asks for. Each call gets one empty message (any
message type parses from zero bytes) and the trailers, or a Trailers-Only
error when ``status`` is not 0. The bridge finds the methods in a descriptor
set (:func:`descriptor_set`), since this peer serves no reflection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from bridgetest.v1 import kitchen_pb2

from tests.descriptors import with_imports, write_set

Pairs = Sequence[tuple[bytes, bytes]]

_EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"


def descriptor_set(directory: Path) -> Path:
    """The test service's descriptors, for ``upstreams[].descriptor_sets``."""
    return write_set(directory / "kitchen.pb", *with_imports(kitchen_pb2.DESCRIPTOR))


@dataclass
class HostilePeer:
    initial: Pairs = ()
    trailing: Pairs = ()
    status: int = 0
    #: False: request data is never acknowledged, so the bridge's send window
    #: closes after the first 64 KiB (an upstream that stopped reading).
    reads: bool = True
    #: Request DATA bytes received, over every call.
    received: int = 0
    port: int = 0
    #: Request headers of every call, as received.
    calls: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> HostilePeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(
            client_side=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self._writers.append(writer)
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        self.calls.append(list(event.headers))
                    elif isinstance(event, h2.events.DataReceived):
                        self.received += len(event.data)
                        if self.reads:
                            conn.acknowledge_received_data(
                                event.flow_controlled_length, event.stream_id
                            )
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(conn, event.stream_id)
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    def _answer(self, conn: h2.connection.H2Connection, stream_id: int) -> None:
        head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
        if self.status:
            status = [(b"grpc-status", str(self.status).encode()), (b"grpc-message", b"nope")]
            conn.send_headers(stream_id, [*head, *status, *self.initial], end_stream=True)
            return
        conn.send_headers(stream_id, [*head, *self.initial])
        conn.send_data(stream_id, _EMPTY_MESSAGE)
        conn.send_headers(stream_id, [(b"grpc-status", b"0"), *self.trailing], end_stream=True)
