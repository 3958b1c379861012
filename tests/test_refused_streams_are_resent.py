"""Streams the upstream refused before seeing them are sent once more, when their request is known.

REFUSED_STREAM, or a GOAWAY whose last stream is below the call's, says the
upstream's application never saw the call (RFC 9113 §8.7): a server-streaming
call, whose one request is known in full, is as safe to send again as a unary
call. A client or bidi stream is not: its messages are written as they come.
The peer is ``h2`` (tests/helpers/h2peer.py), not the bridge's client.
"""

from __future__ import annotations

import struct

import pytest
from bridgetest.v1 import kitchen_pb2

from grpc_bridge.errors import UpstreamError
from grpc_bridge.status import Code
from tests.helpers.h2peer import GOAWAY, Exchange, HostilePeer, frame, grpc_message
from tests.helpers.native_tools import method, native

SERVER_STREAM = method("ServerStream", kitchen_pb2.Kitchen)
BIDI_STREAM = method("Bidi", kitchen_pb2.Kitchen)
REFUSED_STREAM = 0x7


class Refusing:
    """Refuses the first ``refusals`` calls (RST_STREAM or GOAWAY), then answers two messages."""

    def __init__(self, how: str, refusals: int = 1) -> None:
        self.how = how
        self.refusals = refusals
        self.calls = 0

    async def __call__(self, exchange: Exchange) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            if self.how == "rst":
                exchange.conn.reset_stream(exchange.stream_id, REFUSED_STREAM)
                exchange.peer.flush()
            else:
                last = exchange.stream_id - 2  # below this call: never processed
                exchange.raw(frame(GOAWAY, 0, 0, struct.pack(">LL", max(last, 0), 0)))
            return
        exchange.send_headers(
            [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"x-try", b"2")]
        )
        for text in ("a", "b"):
            exchange.send_data(grpc_message(kitchen_pb2.Kitchen(f_string=text)))
        exchange.send_headers([(b"grpc-status", b"0")], end_stream=True)


@pytest.mark.parametrize("how", ["rst", "goaway"])
async def test_a_refused_server_stream_is_sent_again_once(how: str) -> None:
    refusing = Refusing(how)
    async with HostilePeer({"go": refusing}) as peer, native(peer.target) as invoker:
        call = invoker.server_stream(
            SERVER_STREAM, kitchen_pb2.Kitchen(f_string="go"), metadata=[], timeout=5
        )
        async with call:
            texts = []
            while (message := await call.read()) is not None:
                assert isinstance(message, kitchen_pb2.Kitchen)
                texts.append(message.f_string)
            initial = await call.initial_metadata()
    assert texts == ["a", "b"]
    assert ("x-try", "2") in initial  # the answered attempt's headers, not the refused one's
    assert refusing.calls == 2


async def test_initial_metadata_waits_for_the_resent_stream() -> None:
    """Headers asked for before any message come from the attempt that was answered."""
    refusing = Refusing("rst")
    async with HostilePeer({"go": refusing}) as peer, native(peer.target) as invoker:
        call = invoker.server_stream(
            SERVER_STREAM, kitchen_pb2.Kitchen(f_string="go"), metadata=[], timeout=5
        )
        async with call:
            initial = await call.initial_metadata()
            first = await call.read()
    assert ("x-try", "2") in initial
    assert isinstance(first, kitchen_pb2.Kitchen) and first.f_string == "a"


async def test_a_server_stream_refused_twice_fails_unavailable() -> None:
    refusing = Refusing("rst", refusals=5)
    async with HostilePeer({"go": refusing}) as peer, native(peer.target) as invoker:
        call = invoker.server_stream(
            SERVER_STREAM, kitchen_pb2.Kitchen(f_string="go"), metadata=[], timeout=5
        )
        async with call:
            with pytest.raises(UpstreamError) as failure:
                await call.read()
    assert failure.value.code == Code.UNAVAILABLE
    assert "REFUSED_STREAM" in failure.value.message or "error code 7" in failure.value.message
    assert refusing.calls == 2


async def test_a_refused_bidi_stream_is_not_sent_again() -> None:
    refusing = Refusing("rst")
    async with HostilePeer({"go": refusing}) as peer, native(peer.target) as invoker:
        call = invoker.request_stream(BIDI_STREAM, metadata=[], timeout=5)
        async with call:
            await call.write(kitchen_pb2.Kitchen(f_string="go"))
            await call.done_writing()
            with pytest.raises(UpstreamError) as failure:
                await call.read()
    assert failure.value.code == Code.UNAVAILABLE
    assert refusing.calls == 1
