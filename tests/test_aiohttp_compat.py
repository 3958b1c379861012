"""The aiohttp internals grpc_bridge/edge/aiohttp_compat.py relies on are there and behave.

Each check names the internal it probes, so an aiohttp release that renames or
changes one fails here, by name, before anything subtler fails elsewhere.
pyproject.toml pins aiohttp to the releases this file passes on.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.http_parser import HttpRequestParserPy
from multidict import CIMultiDict

from grpc_bridge.edge import aiohttp_compat as compat
from grpc_bridge.edge.parse_errors import parse_error
from grpc_bridge.errors import BridgeError, MethodNotAllowed


def _slots(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}


def test_err_info_carries_the_exception() -> None:
    module = importlib.import_module("aiohttp.web_protocol")
    assert hasattr(module, "_ErrInfo"), "aiohttp.web_protocol._ErrInfo is gone"
    fields = set(getattr(module._ErrInfo, "__annotations__", {}))
    assert "exc" in fields, f"aiohttp.web_protocol._ErrInfo has no 'exc' field: {fields}"


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (web.RequestHandler, "_messages"),
        (web.RequestHandler, "_current_request"),
        (web.RequestHandler, "_close"),
        (web.RequestHandler, "_waiter"),
        (web.RequestHandler, "_parser"),
        (web.RequestHandler, "_upgraded"),
        (web.RequestHandler, "max_headers"),
        (web.BaseSite, "_server"),
        (web.BaseSite, "_backlog"),
        (web.TCPSite, "_host"),
        (web.TCPSite, "_port"),
        (web.TCPSite, "_reuse_address"),
        (web.TCPSite, "_reuse_port"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else v,
)
def test_slot_exists(cls: type, name: str) -> None:
    assert name in _slots(cls), f"aiohttp's {cls.__qualname__}.{name} is gone"


def test_base_request_attributes_exist() -> None:
    attrs = web.BaseRequest.ATTRS
    for name in ("_cache", "_version"):
        assert name in attrs, f"aiohttp's BaseRequest.{name} is gone"


def test_app_runner_make_server_is_a_hook_without_arguments() -> None:
    make = getattr(web.AppRunner, "_make_server", None)
    assert make is not None, "aiohttp's AppRunner._make_server is gone"
    assert inspect.iscoroutinefunction(make), "AppRunner._make_server is no longer async"
    assert list(inspect.signature(make).parameters) == ["self"], (
        f"AppRunner._make_server's signature changed: {inspect.signature(make)}"
    )


def test_base_site_start_takes_only_the_site() -> None:
    assert list(inspect.signature(web.BaseSite.start).parameters) == ["self"], (
        "aiohttp's BaseSite.start signature changed"
    )


def test_request_handler_takes_the_server_and_loop() -> None:
    params = inspect.signature(web.RequestHandler.__init__).parameters
    for name in ("manager", "loop", "max_headers"):
        assert name in params, f"aiohttp's RequestHandler.__init__ has no {name!r} argument"


async def test_server_keeps_its_loop_and_handler_arguments() -> None:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    server = web.Server(handle, max_headers=7)
    assert compat.server_loop(server) is asyncio.get_running_loop(), "web.Server._loop changed"
    assert compat.server_kwargs(server) == {"max_headers": 7}, "web.Server._kwargs changed"
    handler = server()
    assert handler.max_headers == 7
    assert len(compat.queued_messages(handler)) == 0, "RequestHandler._messages changed"
    assert compat.current_request(handler) is None, "RequestHandler._current_request changed"


# --- behaviour, over real connections -------------------------------------------------------


class _Recorder(web.RequestHandler):
    """Keeps every message the parser queued (what parse_errors.py inspects)."""

    seen: list[Any]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        for message, _ in compat.queued_messages(self):
            _Recorder.seen.append(message)


class _RecordingRunner(compat.RemadeServerRunner):
    remade = 0

    def remake_server(self, made: web.Server) -> web.Server:
        _RecordingRunner.remade += 1
        loop, kwargs = compat.server_loop(made), compat.server_kwargs(made)

        class Server(web.Server):
            def __call__(self) -> web.RequestHandler:
                return _Recorder(self, loop=loop, **kwargs)

        return Server(made.request_handler, request_factory=made.request_factory)


class _HandOver(asyncio.Protocol):
    """Reads the first bytes itself, then gives the connection to aiohttp (the fast path's way)."""

    def __init__(self, server: web.Server) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.pause_reading()
        compat.adopt_connection(self.server(), self.transport, data, paused=True)


async def _handle(request: web.Request) -> web.StreamResponse:
    if request.path == "/close":
        compat.close_after_answer(request.protocol, request)
    if request.path == "/http10":
        compat.answer_as_http11(request)
    if request.path == "/ws":
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        return ws
    return web.Response(text=f"{request.version.major}.{request.version.minor}")


@pytest.fixture
async def site() -> AsyncIterator[tuple[_RecordingRunner, int]]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _handle)
    runner = _RecordingRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    assert runner.server is not None
    site = compat.ProtocolSite(
        runner, lambda: _HandOver(runner.server), "127.0.0.1", 0, reuse_port=None
    )
    await site.start()
    _Recorder.seen = []
    try:
        yield runner, compat.bound_port(runner)
    finally:
        await runner.cleanup()


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(10):
            return await reader.read(65536)
    finally:
        writer.close()


async def test_remade_server_runner_protocol_site_and_bound_port(
    site: tuple[_RecordingRunner, int],
) -> None:
    """RemadeServerRunner's hook runs at setup; ProtocolSite listens; adopt_connection serves."""
    _, port = site
    assert _RecordingRunner.remade >= 1, "AppRunner._make_server is no longer called by setup()"
    assert port != 0, "bound_port: BaseSite._server has no listening sockets"
    answer = await _exchange(port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b"1.1"), "a RequestHandler given a live connection did not serve it"


async def test_keep_alive_cache_closes_the_connection(site: tuple[_RecordingRunner, int]) -> None:
    _, port = site
    answer = await _exchange(port, b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"\r\nConnection: close\r\n" in answer, (
        "BaseRequest._cache['keep_alive'] / RequestHandler._close no longer close: " + repr(answer)
    )


async def test_request_version_is_what_the_status_line_says(
    site: tuple[_RecordingRunner, int],
) -> None:
    _, port = site
    answer = await _exchange(port, b"GET /http10 HTTP/1.0\r\nHost: a\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), f"BaseRequest._version changed: {answer!r}"


async def test_parse_errors_are_queued_as_err_info(site: tuple[_RecordingRunner, int]) -> None:
    _, port = site
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(200))
    await _exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    errors = [m for m in _Recorder.seen if isinstance(m, compat.ErrInfo)]
    assert errors, f"no _ErrInfo in RequestHandler._messages: {_Recorder.seen!r}"
    exc = errors[0].exc
    assert isinstance(exc, HttpProcessingError), f"_ErrInfo.exc is {exc!r}"
    assert exc.message == compat.TOO_MANY_HEADERS, f"aiohttp's message changed: {exc.message!r}"


async def test_unknown_method_message_quotes_the_request_line(
    site: tuple[_RecordingRunner, int],
) -> None:
    """parse_errors reads the method and path back from aiohttp's message for a 405."""
    _, port = site
    await _exchange(port, b"FOO /things HTTP/1.1\r\nHost: a\r\n\r\n")
    errors = [m.exc for m in _Recorder.seen if isinstance(m, compat.ErrInfo)]
    assert errors and isinstance(errors[0], BadHttpMethod), f"{_Recorder.seen!r}"
    refused: list[tuple[str, str]] = []

    def refuse(method: str, path: str) -> BridgeError:
        refused.append((method, path))
        return MethodNotAllowed("no", allowed=["GET"])

    parse_error(errors[0], 128, refuse)
    assert refused == [("FOO", "/things")], f"BadHttpMethod's message: {errors[0].message!r}"


async def _idle(runner: _RecordingRunner) -> web.RequestHandler:
    """The site's one connection, once it awaits the next request (10 s at most)."""
    assert runner.server is not None
    for _ in range(1000):
        connections = runner.server.connections
        if connections and compat.waiting_for_request(connections[0]):
            return connections[0]
        await asyncio.sleep(0.01)
    raise AssertionError("RequestHandler._waiter is never pending: waiting_for_request changed")


async def test_an_idle_handler_tells_a_head_begun_from_none(
    site: tuple[_RecordingRunner, int],
) -> None:
    """waiting_for_request (``RequestHandler._waiter``) and end_unfinished_head (the
    parser's ``feed_eof``), as edge/head_deadline.py asks them when a head is late."""
    runner, port = site
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        async with asyncio.timeout(10):
            await reader.readuntil(b"\r\n\r\n1.1")  # the whole answer: the handler is done
        handler = await _idle(runner)
        assert not compat.upgraded(handler)
        assert not compat.end_unfinished_head(handler), "feed_eof() between requests changed"
        # Left as it was: the next request is served.
        writer.write(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHo")
        async with asyncio.timeout(10):
            await reader.readuntil(b"\r\n\r\n1.1")
        assert await _idle(runner) is handler
        assert compat.end_unfinished_head(handler), "feed_eof() of part of a head changed"
    finally:
        writer.close()


async def test_a_websocket_connection_is_upgraded(site: tuple[_RecordingRunner, int]) -> None:
    """upgraded (``BaseProtocol._upgraded``): after a 101 no more heads are read."""
    runner, port = site
    assert runner.server is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        (handler,) = runner.server.connections
        assert compat.upgraded(handler), "BaseProtocol._upgraded is not set by an upgrade"
    finally:
        writer.close()


def test_the_pure_python_parser_keeps_the_head_lines_read() -> None:
    """Without aiohttp's C parser, end_unfinished_head reads ``_lines`` and ``_tail``."""
    loop = asyncio.new_event_loop()
    try:
        parser = HttpRequestParserPy(None, loop, 2**16)  # type: ignore[arg-type]
        assert not (parser._lines or parser._tail)
        parser.feed_data(b"GET / HTTP/1.1\r\nHo")
        assert parser._lines or parser._tail, "HttpRequestParserPy._lines/_tail changed"
    finally:
        loop.close()


def test_installed_aiohttp_is_within_the_pin() -> None:
    """pyproject.toml's aiohttp range holds the release these checks ran on."""
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    spec = next(d for d in pyproject["project"]["dependencies"] if d.startswith("aiohttp"))
    pin = re.fullmatch(r"aiohttp>=(\d+)\.(\d+),<(\d+)\.(\d+)", spec)
    assert pin is not None, f"aiohttp is not pinned to a range of minor versions: {spec!r}"
    low, high = (int(pin[1]), int(pin[2])), (int(pin[3]), int(pin[4]))
    installed = tuple(int(part) for part in aiohttp.__version__.split(".")[:2])
    assert low <= installed < high, f"aiohttp {aiohttp.__version__} is outside {spec!r}"


# --- the parser and head writer the lean HTTP/1.1 path shares with aiohttp ------------------------


async def _head_parser(**server_kwargs: Any) -> Any:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    make = compat.head_parser(web.Server(handle, **server_kwargs))
    assert make is not None, "aiohttp runs without its C HTTP parser (aiohttp._http_parser)"
    return make()


async def test_head_parser_reads_one_head_per_feed_and_skips_the_body() -> None:
    parser = await _head_parser()
    head = b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    messages, upgraded, _ = parser.feed_data(head)
    assert not upgraded and len(messages) == 1, (
        "response_with_body=False no longer ends at the head"
    )
    message = messages[0][0]
    assert isinstance(message, compat.RawRequestMessage)
    assert (message.method, message.path, message.should_close) == ("POST", "/a?b=1", False)
    assert message.headers.getall("X-A") == ["1", "2"]
    # The body is never fed: the parser is ready for the next head at once.
    messages, _, _ = parser.feed_data(b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [(m.method, m.should_close) for m, _ in messages] == [("GET", True)]


async def test_head_parser_refuses_what_aiohttp_refuses_with_the_servers_limits() -> None:
    parser = await _head_parser(max_headers=3)
    with pytest.raises(HttpProcessingError, match=compat.TOO_MANY_HEADERS):
        parser.feed_data(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
    for bad in (b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nX(y): 1\r\n\r\n"):
        with pytest.raises(HttpProcessingError):
            (await _head_parser()).feed_data(bad)


def test_serialize_head_is_aiohttps_head_writer() -> None:
    headers = CIMultiDict([("Content-Type", "application/json"), ("X-A", "1"), ("x-a", "2")])
    assert compat.serialize_head("HTTP/1.1 200 OK", headers) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    )
    with pytest.raises(ValueError, match="control character"):
        compat.serialize_head("HTTP/1.1 200 OK", CIMultiDict([("X", "a\r\nY: b")]))


# --- an HTTP/2 stream's request, made without a RequestHandler (edge/h2c_stream.py) -----------


class _Pacer:
    """What ``StreamReader`` calls on its protocol: the h2c stream's flow control."""

    connected = True

    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self, resume_parser: bool = True) -> None:
        self.paused = False


async def test_stream_reader_pauses_above_twice_its_limit_and_resumes_below_it() -> None:
    pacer = _Pacer()
    reader = compat.body_reader(pacer, 16, asyncio.get_running_loop())
    reader.feed_data(b"x" * 32)
    assert not pacer.paused, "StreamReader paused at twice its limit (it should above it)"
    reader.feed_data(b"x")
    assert pacer.paused, "StreamReader no longer calls pause_reading() above 2x its limit"
    await reader.readexactly(20)
    assert not pacer.paused, "StreamReader no longer calls resume_reading() below its limit"


class _StandIn:
    ssl_context = None
    peername = ("192.0.2.7", 4242)
    sockname = ("127.0.0.1", 8080)
    transport = None

    def force_close(self) -> None:
        pass


class _Writer(aiohttp.abc.AbstractStreamWriter):
    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        pass

    async def write_eof(self, chunk: bytes = b"") -> None:
        pass

    async def drain(self) -> None:
        pass

    def enable_compression(self, encoding: str = "deflate", strategy: int | None = None) -> None:
        pass

    def enable_chunking(self) -> None:
        pass

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        pass


async def test_a_request_made_with_a_stand_in_for_its_handler_reads_as_any() -> None:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    headers: CIMultiDict[str] = CIMultiDict({"host": "example.test", "x-a": "1"})
    message = compat.h2_message("POST", "/pkg.S/M?q=%2F", headers, ())
    reader = compat.body_reader(_Pacer(), 16, asyncio.get_running_loop())
    task = asyncio.current_task()
    assert task is not None
    request = compat.h2_request(web.Server(handle), message, reader, _StandIn(), _Writer(), task)
    assert request.version == aiohttp.HttpVersion(2, 0)
    assert (request.method, request.rel_url.raw_path, request.query["q"]) == (
        "POST",
        "/pkg.S/M",
        "/",
    )
    assert (request.host, request.remote, request.headers["X-A"]) == (
        "example.test",
        "192.0.2.7",
        "1",
    )
    assert request.content is reader
