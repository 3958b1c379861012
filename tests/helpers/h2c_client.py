"""An HTTP/2 (h2c, prior knowledge) client of the bridge's proxy port, on the ``h2`` library.

Built on an implementation other than the bridge's server code, for hostile
peers: it can send too many streams, an oversize header block, reset a
stream mid-call, never give a response window back (``auto_window=False``),
or send header fields RFC 9113 forbids (``validate=False``), and reports every
event ``h2`` makes of the bridge's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes

_ENVELOPE = struct.Struct(">BI")


def envelope(payload: bytes, flags: int = 0) -> bytes:
    """A Connect envelope / gRPC-Web frame: flag byte, big-endian length, payload."""
    return _ENVELOPE.pack(flags, len(payload)) + payload


def unframe(body: bytes) -> list[tuple[int, bytes]]:
    """Envelopes (or gRPC-Web frames) of a whole body, as (flags, payload)."""
    out = []
    while body:
        flags, length = _ENVELOPE.unpack_from(body)
        out.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


@dataclass
class StreamState:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the bridge's RST_STREAM error code


class _KeepsWhatCame(asyncio.StreamReader):
    """A lost connection ends the stream after the bytes that came before it.

    asyncio's reader raises the error at once, dropping what it holds: a flood's
    GOAWAY, read into it just before a write to the closed socket failed (EPIPE) or
    the bridge's RST came back, was lost while the test was busy sending.
    """

    def set_exception(self, exc: BaseException) -> None:
        if isinstance(exc, ConnectionError):
            self.feed_eof()
        else:
            super().set_exception(exc)


class H2cClient:
    """One connection; ``events`` are everything ``h2`` reported, in order."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        auto_window: bool,
        validate: bool = True,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.auto_window = auto_window
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        self.conn = h2.connection.H2Connection(config)
        self.streams: dict[int, StreamState] = {}
        self.events: list[h2.events.Event] = []
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.closed = False

    @classmethod
    async def open(
        cls, port: int, *, auto_window: bool = True, preface: bool = True, validate: bool = True
    ) -> H2cClient:
        loop = asyncio.get_running_loop()
        # asyncio.open_connection's construction, with the reader above.
        reader = _KeepsWhatCame(limit=2**16, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        client = cls(reader, writer, auto_window, validate)
        if preface:
            client.conn.initiate_connection()
            client.flush()
        return client

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    def request(
        self,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = b"",
        *,
        end: bool = True,
        method: str = "POST",
    ) -> int:
        """A request (its body and END_STREAM unless ``end`` is False); the stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        fields = [
            (":method", method),
            (":scheme", "http"),
            (":authority", "127.0.0.1"),
            (":path", path),
            *headers,
        ]
        self.streams[stream_id] = StreamState()
        self.conn.send_headers(stream_id, fields, end_stream=body is None and end)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=end)
        self.flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        self.conn.send_data(stream_id, data, end_stream=end)
        self.flush()

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id)
        self.flush()

    async def pump(self, timeout: float = 10.0) -> bool:
        """Read once (nothing came within ``timeout``: True all the same) and handle what
        came; False when the connection closed."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            return True
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self._event(event)
        self.flush()
        return True

    async def until(self, done: Any, timeout: float = 20.0) -> None:
        """Pump until ``done()`` is true or the connection closes."""
        async with asyncio.timeout(timeout):
            while not done():
                if not await self.pump(timeout):
                    return

    async def answer(self, stream_id: int, timeout: float = 20.0) -> StreamState:
        state = self.streams[stream_id]
        await self.until(lambda: state.ended or state.reset is not None, timeout)
        return state

    def _event(self, event: h2.events.Event) -> None:
        self.events.append(event)
        if isinstance(event, h2.events.ResponseReceived):
            state = self.streams[event.stream_id]
            state.headers.update((str(k), str(v)) for k, v in event.headers or ())
        elif isinstance(event, h2.events.DataReceived):
            state = self.streams[event.stream_id]
            state.body += event.data or b""
            if self.auto_window and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            state = self.streams[event.stream_id]
            state.headers.update((str(k), str(v)) for k, v in event.headers or ())
        elif isinstance(event, h2.events.StreamEnded):
            self.streams[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            if event.stream_id in self.streams:
                self.streams[event.stream_id].reset = int(event.error_code or 0)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def send_body(client: H2cClient, stream: int, body: bytes, *, wait: float = 1.0) -> None:
    """All of ``body`` on ``stream``, then END_STREAM, as the bridge's windows open."""
    while body:
        window = min(client.conn.local_flow_control_window(stream), 16384)
        if window <= 0:
            await client.pump(wait)
            continue
        chunk, body = body[:window], body[window:]
        client.send(stream, chunk, end=not body)


async def fill_windows(
    client: H2cClient, streams: Sequence[int], message: bytes, *, wait: float = 1.0
) -> None:
    """``message`` after ``message`` on ``streams`` while the bridge's windows let it, until
    three rounds let nothing more (or 20 rounds, should a call be served meanwhile)."""
    idle = 0
    async with asyncio.timeout(60):
        for _ in range(20):
            if idle >= 3:
                return
            progress = False
            for stream in streams:
                while client.conn.local_flow_control_window(stream) >= len(message):
                    client.send(stream, message)
                    progress = True
            await client.writer.drain()
            await client.pump(wait)
            idle = 0 if progress else idle + 1


async def trickle(client: H2cClient, stream: int, data: bytes, every: float = 0.25) -> bool:
    """``data`` one byte every ``every`` s (reading what comes meanwhile), until all is sent
    or the bridge ended or reset the stream; True when all of it was sent."""
    state = client.streams[stream]
    for byte in data:
        if state.ended or state.reset is not None:
            return False
        client.send(stream, bytes([byte]))
        await asyncio.sleep(every)
        await client.pump(0.01)
    return True


async def flooded(client: H2cClient, batch: bytes, times: int) -> h2.events.ConnectionTerminated:
    """``batch`` written up to ``times`` times (reading between, as a client does) until the
    bridge hangs up: its GOAWAY, checked by :func:`calmed`."""
    for _ in range(times):
        if client.closed:
            break
        client.writer.write(batch)
        await client.writer.drain()
        await client.pump(0.01)
    return await calmed(client)


async def calmed(client: H2cClient) -> h2.events.ConnectionTerminated:
    """The GOAWAY that ends a flood, waited for: ENHANCE_YOUR_CALM (checked), returned."""
    await client.until(lambda: client.closed, 20)
    assert client.terminated is not None
    assert client.terminated.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    return client.terminated


@contextlib.asynccontextmanager
async def h2c_connection(
    port: int, *, auto_window: bool = True, validate: bool = True
) -> AsyncIterator[H2cClient]:
    """An :class:`H2cClient` closed on the way out, whatever happened."""
    client = await H2cClient.open(port, auto_window=auto_window, validate=validate)
    try:
        yield client
    finally:
        await client.close()
