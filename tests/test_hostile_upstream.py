"""A hostile HTTP/2 upstream cannot exhaust the bridge, stall its loop or slip past RFC 9113.

One real bridge process serves two upstreams: ``hostile`` (tests/helpers/h2peer.py, on
the ``h2`` library; each call's ``fString`` picks the attack) and ``healthy``
(a grpc.aio server). Each attack checks the answer the HTTP client gets, that
the bridge's RSS after the attack is within a few MB of before, and that calls
to the healthy upstream made during the attack were not held up.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from bridgetest.v1 import kitchen_pb2

from tests.helpers.h2peer import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PRIORITY,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    Exchange,
    HostilePeer,
    frame,
    grpc_message,
    start_beside_healthy,
)
from tests.helpers.process import BridgeProcess
from tests.helpers.servers import RunningServer, start_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

ECHO = "/bridgetest.v1.TestService/Echo"
WHOAMI = "/bridgetest.v1.Other/Whoami"
#: RSS growth an attack may leave behind (allocator slack, not the attack's bytes).
RSS_SLACK_KB = 8 * 1024
#: A call to the healthy upstream during an attack: generous for a loaded 2-CPU box.
HEALTHY_BOUND_S = 1.0

OK_HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def _block(*fields: tuple[bytes, bytes]) -> bytes:
    """Literal fields without indexing (RFC 7541 §6.2.2), lengths under 127."""
    out = bytearray()
    for name, value in fields:
        out += b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    return bytes(out)


STATUS_200 = b"\x88"  # static table index 8
GRPC_CT = _block((b"content-type", b"application/grpc"))


# -- the attacks ------------------------------------------------------------------------


async def _hpack_bomb(ex: Exchange, references: int) -> None:
    # The table set back to 4,096 bytes (the bridge asked for 0), one 4,000-byte
    # value inserted into it (literal with incremental indexing), then index 62
    # (0xbe) again and again: h2, which honours the bridge's settings, would never.
    resize = b"\x3f\xe1\x1f"
    insert = b"\x40\x05x-big\x7f\xa1\x1e" + b"v" * 4000
    block = resize + STATUS_200 + GRPC_CT + insert + b"\xbe" * references
    ex.raw(frame(HEADERS, END_HEADERS, ex.stream_id, block))


async def bomb_small(ex: Exchange) -> None:
    await _hpack_bomb(ex, 20_000)


async def bomb_large(ex: Exchange) -> None:
    await _hpack_bomb(ex, 100_000)


async def ping_flood_deaf(ex: Exchange) -> None:
    ex.peer.deaf = True
    await ex.flood(frame(PING, 0, 0, b"12345678"))


async def settings_flood_deaf(ex: Exchange) -> None:
    ex.peer.deaf = True
    await ex.flood(frame(SETTINGS, 0, 0))


async def empty_data_flood(ex: Exchange) -> None:
    ex.send_headers(OK_HEAD)
    await ex.flood(frame(DATA, 0, ex.stream_id))


async def continuation_flood(ex: Exchange) -> None:
    ex.raw(frame(HEADERS, 0, ex.stream_id, STATUS_200))
    await ex.flood(frame(CONTINUATION, 0, ex.stream_id))


async def window_update_flood(ex: Exchange) -> None:
    # Each frame is legal (1 more byte of window on an open stream): only the
    # bridge's per-callback slice keeps this one connection from taking the loop.
    ex.send_headers(OK_HEAD)
    await ex.flood(frame(WINDOW_UPDATE, 0, ex.stream_id, struct.pack(">L", 1)), seconds=6)


def _then(make: Any) -> Any:
    """Response headers, then the raw frame ``make(stream_id)``."""

    async def scenario(ex: Exchange) -> None:
        ex.send_headers(OK_HEAD)
        ex.raw(make(ex.stream_id))

    return scenario


def _headers(block: bytes, flags: int = END_HEADERS) -> Any:
    async def scenario(ex: Exchange) -> None:
        ex.raw(frame(HEADERS, flags, ex.stream_id, block))

    return scenario


def _trailers(block: bytes) -> Any:
    async def scenario(ex: Exchange) -> None:
        ex.send_headers(OK_HEAD)
        ex.send_data(grpc_message(kitchen_pb2.Kitchen(f_string="x")))
        ex.raw(frame(HEADERS, END_HEADERS | END_STREAM, ex.stream_id, block))

    return scenario


async def informational_first(ex: Exchange) -> None:
    ex.raw(frame(HEADERS, END_HEADERS, ex.stream_id, _block((b":status", b"103"))))
    ex.raw(frame(HEADERS, END_HEADERS, ex.stream_id, STATUS_200 + GRPC_CT))
    payload = grpc_message(kitchen_pb2.Kitchen(f_string="after 103"))
    ex.raw(frame(DATA, 0, ex.stream_id, payload))
    ex.raw(frame(HEADERS, END_HEADERS | END_STREAM, ex.stream_id, _block((b"grpc-status", b"0"))))


async def html_page(ex: Exchange) -> None:
    ex.send_headers([(b":status", b"200"), (b"content-type", b"text/html")])
    ex.send_data(b"<html><body>hello</body></html>", end_stream=True)


async def too_many_pings(ex: Exchange) -> None:
    ex.raw(frame(GOAWAY, 0, 0, struct.pack(">LL", ex.stream_id, 0xB) + b"too_many_pings"))
    ex.respond(kitchen_pb2.Kitchen(f_string="answered"))


async def big_gzip(ex: Exchange) -> None:
    """A compressed message over 64 KiB (inflated on a worker thread), trailers right behind."""
    text = os.urandom(150_000).hex()  # incompressible: stays large once gzipped
    payload = gzip.compress(kitchen_pb2.Kitchen(f_string=text).SerializeToString())
    head = [*OK_HEAD, (b"grpc-encoding", b"gzip")]
    ex.send_headers(head)
    message = b"\x01" + len(payload).to_bytes(4, "big") + payload
    await ex.send_data_within_window(message)
    ex.send_headers(
        [(b"grpc-status", b"0"), (b"x-length", str(len(text)).encode())], end_stream=True
    )


async def echo(ex: Exchange) -> None:
    ex.respond(kitchen_pb2.Kitchen.FromString(ex.body[5:]))


def _u32(value: int) -> bytes:
    return struct.pack(">L", value)


SCENARIOS: dict[str, Any] = {
    "": echo,
    "bomb-small": bomb_small,
    "bomb-large": bomb_large,
    "ping-flood": ping_flood_deaf,
    "settings-flood": settings_flood_deaf,
    "empty-data-flood": empty_data_flood,
    "continuation-flood": continuation_flood,
    "window-update-flood": window_update_flood,
    "informational": informational_first,
    "html": html_page,
    "too-many-pings": too_many_pings,
    "big-gzip": big_gzip,
    "unknown-pseudo": _headers(STATUS_200 + _block((b":path", b"/x")) + GRPC_CT),
    "pseudo-after-regular": _headers(GRPC_CT + STATUS_200),
    "duplicate-status": _headers(STATUS_200 + STATUS_200 + GRPC_CT),
    "missing-status": _headers(GRPC_CT),
    "pseudo-in-trailers": _trailers(STATUS_200 + _block((b"grpc-status", b"0"))),
    "connection-header": _headers(STATUS_200 + GRPC_CT + _block((b"connection", b"close"))),
    "settings-on-stream": _then(lambda sid: frame(SETTINGS, 0, sid)),
    "ping-on-stream": _then(lambda sid: frame(PING, 0, sid, b"12345678")),
    "goaway-on-stream": _then(lambda sid: frame(GOAWAY, 0, sid, _u32(0) + _u32(0))),
    "rst-on-zero": _then(lambda sid: frame(RST_STREAM, 0, 0, _u32(8))),
    "window-update-on-idle": _then(lambda sid: frame(WINDOW_UPDATE, 0, IDLE, _u32(1))),
    "headers-on-even": _then(lambda sid: frame(HEADERS, END_HEADERS, 2, STATUS_200)),
    "data-on-idle": _then(lambda sid: frame(DATA, 0, IDLE, b"x")),
    "short-priority": _then(lambda sid: frame(PRIORITY, 0, sid, b"\x00\x00")),
    "enable-push": _then(lambda sid: frame(SETTINGS, 0, 0, struct.pack(">HL", 0x2, 1))),
    "connection-window-overflow": _then(lambda sid: frame(WINDOW_UPDATE, 0, 0, _u32(2**31 - 1))),
    "stream-window-overflow": _then(lambda sid: frame(WINDOW_UPDATE, 0, sid, _u32(2**31 - 1))),
    "ping-wrong-size": _then(lambda sid: frame(PING, 0, 0, b"1234")),
}
#: A stream id the bridge never opened (odd, far above any it will use in this module).
IDLE = 0x7FFFFFF1


# -- the bridge and its upstreams -------------------------------------------------------


@dataclass
class Rig:
    bridge: BridgeProcess
    peer: HostilePeer
    healthy: RunningServer
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.bridge.proxy_port}"

    async def call(
        self, scenario: str, *, timeout: str | None = None
    ) -> tuple[int, dict[str, Any], float]:
        headers = {"Content-Type": "application/json"}
        if timeout is not None:
            headers["Grpc-Timeout"] = timeout
        start = time.monotonic()
        async with self.session.post(
            self.url + ECHO, data=orjson.dumps({"fString": scenario}), headers=headers
        ) as resp:
            body = orjson.loads(await resp.read())
        return resp.status, body, time.monotonic() - start

    async def healthy_call(self) -> float:
        start = time.monotonic()
        async with self.session.post(
            self.url + WHOAMI, data=b"{}", headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()
        return time.monotonic() - start

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.bridge.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    async def metric(self, code: str) -> float:
        url = f"http://127.0.0.1:{self.bridge.admin_port}/metrics"
        async with self.session.get(url) as resp:
            text = await resp.text()
        prefix = f'grpc_bridge_upstream_http2_errors_total{{code="{code}",upstream="hostile"}}'
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    async def attack(
        self, scenario: str, *, timeout: str | None = None
    ) -> tuple[int, dict[str, Any], float]:
        """The attack's call, with healthy calls beside it; checks RSS and their latency."""
        before = self.rss_kb()
        latencies: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:
            while not done.is_set():
                latencies.append(await self.healthy_call())
                await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe())
        try:
            result = await self.call(scenario, timeout=timeout)
        finally:
            done.set()
            await prober
        assert latencies and max(latencies) < HEALTHY_BOUND_S, (scenario, sorted(latencies)[-5:])
        after = self.rss_kb()
        assert after - before < RSS_SLACK_KB, (scenario, before, after)
        return result


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp = tmp_path_factory.mktemp("hostile")
    healthy = await start_server(name="healthy", services=("other",))
    try:
        async with _bridge(tmp, healthy) as rig:
            yield rig
    finally:
        await healthy.stop()


@asynccontextmanager
async def _bridge(tmp: Path, healthy: RunningServer) -> AsyncIterator[Rig]:
    async with HostilePeer(SCENARIOS) as peer:
        bridge = await start_beside_healthy(tmp, peer.target, healthy.target)
        session = aiohttp.ClientSession()
        rig = Rig(bridge, peer, healthy, session)
        try:
            await _until_ready(rig)
            # Warm up both paths (first-call allocations are not an attack's).
            for _ in range(3):
                await rig.call("")
                await rig.healthy_call()
                await rig.call("html")
            yield rig
        finally:
            await session.close()
            await bridge.stop()


async def _until_ready(rig: Rig) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                status, _, _ = await rig.call("")
                if status == 200:
                    await rig.healthy_call()
                    return
            except (aiohttp.ClientError, AssertionError):
                pass
            await asyncio.sleep(0.1)


# -- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "http", "code", "words"),
    [
        # 20,000 references: a 24 KB block that would decode to 80 MB; the table
        # size update above the 0 we advertised is a COMPRESSION_ERROR (and the
        # insert would be evicted at once from a size-0 table anyway).
        ("bomb-small", 503, 14, "bad header block"),
        # 100,000: longer than any header list under the limit can be: not decoded.
        ("bomb-large", 429, 8, "header list over 65536 bytes"),
    ],
)
async def test_hpack_bomb_is_refused_while_decoding(
    rig: Rig, scenario: str, http: int, code: int, words: str
) -> None:
    status, body, _ = await rig.attack(scenario)
    assert (status, body["code"]) == (http, code), body
    assert words in body["message"]


@pytest.mark.parametrize(
    ("scenario", "what"),
    [
        ("ping-flood", "PING"),
        ("settings-flood", "SETTINGS"),
        ("empty-data-flood", "empty DATA"),
        ("continuation-flood", "CONTINUATION"),
    ],
)
async def test_control_and_empty_frame_floods_end_the_connection(
    rig: Rig, scenario: str, what: str
) -> None:
    """The peer floods (without reading our ACKs for PING/SETTINGS): GOAWAY ENHANCE_YOUR_CALM."""
    before = await rig.metric("ENHANCE_YOUR_CALM")
    status, body, elapsed = await rig.attack(scenario)
    assert (status, body["code"]) == (503, 14), body
    assert "flood" in body["message"] and what in body["message"], body
    assert elapsed < 5, elapsed
    assert await rig.metric("ENHANCE_YOUR_CALM") > before
    event = await rig.bridge.wait_for("upstream_protocol_error")
    assert event["code"] in ("ENHANCE_YOUR_CALM", "COMPRESSION_ERROR")


async def test_a_flood_of_legal_frames_takes_only_slices_of_the_loop(rig: Rig) -> None:
    """WINDOW_UPDATEs of 1 on an open stream: each legal, endless together.

    The deadline (2 s) still fires on time and the healthy upstream answers
    meanwhile (checked by ``attack``): the flooded connection gets a slice of
    frames per callback, then waits its turn.
    """
    status, body, elapsed = await rig.attack("window-update-flood", timeout="2S")
    assert (status, body["code"]) == (504, 4), body
    assert elapsed < 3.5, elapsed


@pytest.mark.parametrize(
    ("scenario", "words"),
    [
        ("unknown-pseudo", "pseudo-header ':path'"),
        ("pseudo-after-regular", ":status after a regular header"),
        ("duplicate-status", ":status twice"),
        ("missing-status", "without :status"),
        ("pseudo-in-trailers", "pseudo-header in trailers"),
        ("connection-header", "connection-specific header field 'connection'"),
    ],
)
async def test_malformed_responses_are_stream_errors(rig: Rig, scenario: str, words: str) -> None:
    status, body, _ = await rig.call(scenario)
    assert (status, body["code"]) == (500, 13), body
    assert words in body["message"], body


@pytest.mark.parametrize(
    ("scenario", "words"),
    [
        ("settings-on-stream", "SETTINGS on a stream"),
        ("ping-on-stream", "PING on a stream"),
        ("goaway-on-stream", "GOAWAY on a stream"),
        ("rst-on-zero", "RST_STREAM on stream 0"),
        ("window-update-on-idle", "which is idle"),
        ("headers-on-even", "which it cannot open"),
        ("data-on-idle", "which is idle"),
        ("enable-push", "SETTINGS_ENABLE_PUSH=1"),
        ("connection-window-overflow", "overflowed the connection window"),
        ("ping-wrong-size", "PING that is not 8 bytes"),
    ],
)
async def test_frames_against_rfc_9113_are_connection_errors(
    rig: Rig, scenario: str, words: str
) -> None:
    status, body, _ = await rig.call(scenario)
    assert (status, body["code"]) == (503, 14), body
    assert words in body["message"], body


@pytest.mark.parametrize(
    ("scenario", "words"),
    [
        ("short-priority", "PRIORITY that is not 5 bytes"),
        ("stream-window-overflow", "overflowed the stream's window"),
    ],
)
async def test_stream_level_frame_errors_fail_only_the_call(
    rig: Rig, scenario: str, words: str
) -> None:
    status, body, _ = await rig.call(scenario)
    assert (status, body["code"]) == (500, 13), body
    assert words in body["message"], body


async def test_a_non_grpc_answer_is_mapped_like_grpc_go(rig: Rig) -> None:
    status, body, _ = await rig.call("html")
    assert (status, body["code"]) == (500, 2), body
    assert "content-type 'text/html', not application/grpc" in body["message"]


async def test_informational_headers_before_the_final_ones_are_allowed(rig: Rig) -> None:
    status, body, _ = await rig.call("informational")
    assert status == 200 and body["fString"] == "after 103", body


async def test_goaway_too_many_pings_doubles_the_keepalive_interval(rig: Rig) -> None:
    status, body, _ = await rig.call("too-many-pings")
    assert status == 200 and body["fString"] == "answered", body
    event = await rig.bridge.wait_for("upstream_keepalive_backoff")
    assert event["keepalive_time_s"] == 600  # the default 300 s, doubled


async def test_a_large_compressed_message_is_inflated_off_the_loop_in_order(rig: Rig) -> None:
    status, body, _ = await rig.attack("big-gzip")
    assert status == 200 and len(body["fString"]) == 300_000, (status, str(body)[:200])
