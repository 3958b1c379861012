"""A TCP relay between the bridge and a gRPC server that reads the HTTP/2 going by.

Frames are parsed with python-hyper's hyperframe and header blocks decoded with
its hpack, never with the bridge's own HTTP/2 code, so the tests see what was
really sent: each request's and response's headers, and for every gRPC
message whether its compressed flag was set.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hpack import Decoder
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass
class Exchange:
    """One HTTP/2 stream as seen in one direction."""

    headers: dict[str, str] = field(default_factory=dict)
    #: The compressed flag of each gRPC message, in order.
    compressed: list[bool] = field(default_factory=list)
    #: The length of each gRPC message on the wire, in order.
    sizes: list[int] = field(default_factory=list)
    _data: bytearray = field(default_factory=bytearray)

    def add_data(self, data: bytes) -> None:
        self._data += data
        while len(self._data) >= 5:
            size = int.from_bytes(self._data[1:5], "big")
            if len(self._data) < 5 + size:
                return
            self.compressed.append(self._data[0] == 1)
            self.sizes.append(size)
            del self._data[: 5 + size]


class _Direction:
    """The frames of one direction of one connection."""

    def __init__(self, preface: bool) -> None:
        self._buffer = bytearray()
        self._preface = preface
        self._decoder = Decoder()
        self._decoder.max_allowed_table_size = 1 << 20
        self._block: tuple[int, bytearray] | None = None
        self.streams: dict[int, Exchange] = {}

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if self._preface:
            if len(self._buffer) < len(_PREFACE):
                return
            del self._buffer[: len(_PREFACE)]
            self._preface = False
        while len(self._buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self._buffer[:9])))
            if len(self._buffer) < 9 + length:
                return
            frame.parse_body(memoryview(bytes(self._buffer[9 : 9 + length])))
            del self._buffer[: 9 + length]
            self._frame(frame)

    def _frame(self, frame: Frame) -> None:
        exchange = self.streams.setdefault(frame.stream_id, Exchange()) if frame.stream_id else None
        if isinstance(frame, HeadersFrame | ContinuationFrame):
            if isinstance(frame, HeadersFrame):
                self._block = (frame.stream_id, bytearray())
            assert self._block is not None
            self._block[1].extend(frame.data)
            if "END_HEADERS" in frame.flags and exchange is not None:
                for name, value in self._decoder.decode(bytes(self._block[1])):
                    exchange.headers[str(name)] = str(value)
                self._block = None
        elif isinstance(frame, DataFrame) and exchange is not None:
            exchange.add_data(frame.data)


class Wiretap:
    """``127.0.0.1:<port>`` relays to ``upstream_port``; what passed is in requests/responses."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        #: One entry per connection: (client → server, server → client).
        self.connections: list[tuple[_Direction, _Direction]] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def calls(self, path: str) -> list[tuple[Exchange, Exchange]]:
        """(request, response) of every call to ``path``."""
        out = []
        for up, down in self.connections:
            for stream_id, request in up.streams.items():
                if request.headers.get(":path") == path:
                    out.append((request, down.streams.get(stream_id, Exchange())))
        return out

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        self._writers += [writer, up_writer]
        up, down = _Direction(preface=True), _Direction(preface=False)
        self.connections.append((up, down))

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, seen: _Direction
        ) -> None:
            try:
                while data := await src.read(65536):
                    seen.feed(data)
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, up), pipe(up_reader, writer, down))

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
