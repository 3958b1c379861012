"""A hostile gRPC upstream on loopback, built on the ``h2`` library (not the bridge's client).

With *scenarios*, each request is handed to the one its request names: the
``f_string`` of a ``bridgetest.v1.Kitchen`` message (what
``TestService/Echo`` takes). A scenario answers through ``h2`` when ``h2`` can
say it, and writes raw frames (:func:`frame`, hand-packed as RFC 9113 §4.1
lays them out) when the attack is something ``h2`` refuses to produce.

Without, every call (any method) gets one empty message (any message type
parses from zero bytes; with ``echo``, the request's message bytes as they
arrived, so a pass-through shows byte for byte) and trailers, with the peer's
``initial`` and ``trailing`` metadata, or a Trailers-Only error when ``status`` is not 0:
grpcio refuses to send keys that are not gRPC keys (a CR/LF, a space), and
this peer, its header validation off, sends whatever bytes a test asks for.
The bridge finds the methods in a descriptor set (:func:`descriptor_set`),
since this peer serves no reflection.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import orjson
from bridgetest.v1 import kitchen_pb2, other_pb2

from tests.helpers.descriptors import with_imports, write_set
from tests.helpers.process import BridgeProcess, bridge_env

Pairs = Sequence[tuple[bytes, bytes]]

_HEADER = struct.Struct(">BHBBL")

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS = 0x4


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One raw frame: 24-bit length, type, flags, stream id, payload."""
    return _HEADER.pack(len(payload) >> 16, len(payload) & 0xFFFF, kind, flags, stream_id) + payload


def grpc_message(message: kitchen_pb2.Kitchen) -> bytes:
    payload = message.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def descriptor_set(directory: Path) -> Path:
    """The test service's descriptors, for ``upstreams[].descriptor_sets``."""
    return write_set(directory / "kitchen.pb", *with_imports(kitchen_pb2.DESCRIPTOR))


_OK_HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]
_EMPTY_MESSAGE = grpc_message(kitchen_pb2.Kitchen())


@dataclass
class Exchange:
    """One request as the peer received it, and the ways to answer it."""

    peer: PeerConnection
    stream_id: int
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def conn(self) -> h2.connection.H2Connection:
        return self.peer.h2

    def send_headers(self, headers: list[tuple[bytes, bytes]], *, end_stream: bool = False) -> None:
        self.conn.send_headers(self.stream_id, headers, end_stream=end_stream)
        self.peer.flush()

    def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        self.conn.send_data(self.stream_id, data, end_stream=end_stream)
        self.peer.flush()

    async def send_data_within_window(self, data: bytes) -> None:
        """``data`` in frames as the bridge's flow-control window allows, as a well-behaved
        server sends (``send_data`` leaves that to the caller)."""
        conn, view = self.conn, memoryview(data)
        while view:
            size = min(
                len(view),
                conn.local_flow_control_window(self.stream_id),
                conn.max_outbound_frame_size,
            )
            if not size:
                self.peer.window.clear()
                await asyncio.wait_for(self.peer.window.wait(), 10)
                continue
            self.send_data(bytes(view[:size]))
            view = view[size:]

    def respond(self, message: kitchen_pb2.Kitchen, status: int = 0) -> None:
        """A whole, well-formed gRPC response."""
        self.send_headers(_OK_HEAD)
        self.send_data(grpc_message(message))
        self.send_headers([(b"grpc-status", str(status).encode())], end_stream=True)

    def raw(self, data: bytes) -> None:
        """Bytes straight onto the socket, past ``h2``'s state machine."""
        self.peer.writer.write(data)

    async def drain(self) -> bool:
        """Until the socket takes more; False once the bridge closed the connection."""
        try:
            await self.peer.writer.drain()
        except (ConnectionError, RuntimeError):
            return False
        return not self.peer.writer.is_closing()

    async def flood(self, unit: bytes, *, batch: int = 500, seconds: float = 10.0) -> int:
        """Write ``unit`` over and over until the bridge hangs up (or ``seconds``): the count."""
        loop = asyncio.get_running_loop()
        stop = loop.time() + seconds
        chunk = unit * batch
        sent = 0
        while loop.time() < stop and not self.peer.lost.is_set():
            self.raw(chunk)
            sent += batch
            if not await self.drain():
                break
            await asyncio.sleep(0)
        self.peer.lost.set()
        return sent


Scenario = Callable[[Exchange], Awaitable[None]]


class LoopbackTransport:
    """Stands in for the socket of a client ``Connection`` fed bytes by a test.

    Takes every write; closing reports the loss on the next iteration, as asyncio does.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.closed = False
        self.written = 0
        #: What was written, for a test that reads the frames back.
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.data += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.conn.connection_lost, None)

    abort = close


@dataclass
class PeerConnection:
    h2: h2.connection.H2Connection
    writer: asyncio.StreamWriter
    #: While set the peer reads nothing more (the bridge's writes then back up).
    deaf: bool = False
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when the bridge opened flow-control window (WINDOW_UPDATE, SETTINGS).
    window: asyncio.Event = field(default_factory=asyncio.Event)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.writer.write(data)


class HostilePeer:
    """``async with HostilePeer(scenarios) as peer`` (or ``await HostilePeer().start()``,
    then ``stop()``): listens on ``peer.target``."""

    def __init__(
        self,
        scenarios: dict[str, Scenario] | None = None,
        *,
        settings: dict[int, int] | None = None,
        reads: bool = True,
        echo: bool = False,
    ) -> None:
        self.scenarios = scenarios
        self.echo = echo
        self.settings = settings or {}
        #: False: request data is never acknowledged, so the bridge's send window
        #: closes after the first 64 KiB (an upstream that stopped reading).
        self.reads = reads
        #: What the answer without scenarios carries (see the module docstring).
        self.initial: Pairs = ()
        self.trailing: Pairs = ()
        self.status = 0
        #: Request DATA bytes received, over every call.
        self.received = 0
        #: Request headers of every call, as received.
        self.calls: list[list[tuple[bytes, bytes]]] = []
        self.connections: list[PeerConnection] = []
        self.target = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HostilePeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.target = f"127.0.0.1:{port}"
        return self

    async def start(self) -> HostilePeer:
        return await self.__aenter__()

    async def stop(self) -> None:
        await self.__aexit__()

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.connections:
            conn.writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        conn = PeerConnection(h2.connection.H2Connection(config=config), writer)
        self.connections.append(conn)
        conn.h2.initiate_connection()
        if self.settings:
            conn.h2.update_settings(self.settings)
        conn.flush()
        heads: dict[int, dict[bytes, bytes]] = {}
        bodies: dict[int, bytearray] = {}
        try:
            while True:
                if conn.deaf:
                    await conn.lost.wait()  # set by the scenario once the bridge hung up
                    break
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    events = conn.h2.receive_data(data)
                except h2.exceptions.ProtocolError:
                    break  # the bridge's frames after our raw bytes: h2 has lost track
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        self.calls.append(list(event.headers))  # type: ignore[arg-type]
                        heads[event.stream_id] = dict(event.headers)  # type: ignore[arg-type]
                        bodies[event.stream_id] = bytearray()
                    elif isinstance(event, h2.events.DataReceived):
                        assert event.stream_id is not None and event.data is not None
                        bodies[event.stream_id] += event.data
                        self.received += len(event.data)
                        if self.reads:
                            conn.h2.acknowledge_received_data(
                                event.flow_controlled_length or 0, event.stream_id
                            )
                    elif isinstance(
                        event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)
                    ):
                        conn.window.set()
                    elif isinstance(event, h2.events.StreamEnded):
                        assert event.stream_id is not None
                        self._start(conn, event.stream_id, heads, bodies)
                conn.flush()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            conn.lost.set()
            writer.close()

    def _start(
        self,
        conn: PeerConnection,
        stream_id: int,
        heads: dict[int, dict[bytes, bytes]],
        bodies: dict[int, bytearray],
    ) -> None:
        body = bytes(bodies.pop(stream_id, b""))
        scenario: Scenario = self._answer
        if self.scenarios is not None:
            request = kitchen_pb2.Kitchen.FromString(body[5:]) if len(body) >= 5 else None
            name = request.f_string if request is not None else ""
            scenario = self.scenarios.get(name) or self.scenarios.get("", _unknown)
        exchange = Exchange(conn, stream_id, heads.pop(stream_id, {}), body)
        task = asyncio.create_task(scenario(exchange))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, exchange: Exchange) -> None:
        if self.status:
            status = [(b"grpc-status", str(self.status).encode()), (b"grpc-message", b"nope")]
            exchange.send_headers([*_OK_HEAD, *status, *self.initial], end_stream=True)
            return
        exchange.send_headers([*_OK_HEAD, *self.initial])
        exchange.send_data(exchange.body if self.echo else _EMPTY_MESSAGE)
        exchange.send_headers([(b"grpc-status", b"0"), *self.trailing], end_stream=True)


async def _unknown(exchange: Exchange) -> None:
    exchange.respond(kitchen_pb2.Kitchen(f_string="no such scenario"), status=12)


async def start_beside_healthy(tmp: Path, hostile: str, healthy: str) -> BridgeProcess:
    """A bridge process with two upstreams: ``hostile`` (TestService from a descriptor
    set, no reflection; one connection, no retries, quick reconnects) and ``healthy``,
    whose calls show what an attack on the other costs everyone else."""
    api = write_set(tmp / "api.pb", *with_imports(kitchen_pb2.DESCRIPTOR, other_pb2.DESCRIPTOR))
    config = {
        "upstreams": [
            {
                "name": "hostile",
                "targets": [hostile],
                "reflection": False,
                "descriptor_sets": [str(api)],
                "services": {"include": ["bridgetest.v1.TestService"]},
                "pool_size": 1,
                "retries": {"max_attempts": 1},
                "reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5},
            },
            {"name": "healthy", "targets": [healthy], "pool_size": 1},
        ]
    }
    path = tmp / "bridge.json"
    path.write_bytes(orjson.dumps(config))
    args = ("serve", "--config", str(path), "--host", "127.0.0.1", "--port", "0")
    return await BridgeProcess.start(
        *args, "--admin-port", "0", "--log-format", "json", env=bridge_env()
    )
