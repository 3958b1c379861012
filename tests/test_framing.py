"""Stream framings and Accept negotiation, as pure functions."""

from __future__ import annotations

import orjson
import pytest

from grpc_bridge.codec.framing import (
    NDJSON_FRAMING,
    SSE_FRAMING,
    WEBSOCKET_FRAMING,
    StreamEnd,
)
from grpc_bridge.pipeline.negotiate import stream_framing

OK = StreamEnd(0)
FAILED = StreamEnd(9, "line\nbreak")
PAYLOAD = orjson.dumps({"text": "multi\nline"})


def test_ndjson() -> None:
    assert NDJSON_FRAMING.message(PAYLOAD) == b'{"result":{"text":"multi\\nline"}}\n'
    assert orjson.loads(NDJSON_FRAMING.error(FAILED)) == {"error": FAILED.status()}
    assert NDJSON_FRAMING.error(FAILED).count(b"\n") == 1
    assert NDJSON_FRAMING.end(OK) == b"" and NDJSON_FRAMING.open() == b""


def test_sse() -> None:
    assert SSE_FRAMING.message(PAYLOAD) == b'event: message\ndata: {"text":"multi\\nline"}\n\n'
    end = SSE_FRAMING.end(OK)
    assert end == b'event: end\ndata: {"code":0,"message":"","details":[]}\n\n'
    # Failures use the same explicit end event, one data line whatever the message.
    assert SSE_FRAMING.error(FAILED).startswith(b"event: end\ndata: ")
    assert SSE_FRAMING.error(FAILED).count(b"\n") == 3


def test_websocket() -> None:
    assert orjson.loads(WEBSOCKET_FRAMING.message(PAYLOAD)) == {"result": {"text": "multi\nline"}}
    assert orjson.loads(WEBSOCKET_FRAMING.error(FAILED)) == {"error": FAILED.status()}
    assert WEBSOCKET_FRAMING.end(OK) == b""


@pytest.mark.parametrize(
    ("accept", "name"),
    [
        (None, "ndjson"),
        ("", "ndjson"),
        ("text/event-stream", "sse"),
        ("TEXT/EVENT-STREAM", "sse"),
        ("text/*", "sse"),
        ("text/*;q=0.5, application/*", "ndjson"),
        ("text/event-stream;q=0.9, application/x-ndjson;q=0.8", "sse"),
        ("text/event-stream;q=0.5, application/x-ndjson", "ndjson"),
        ("text/event-stream;q=0, */*", "ndjson"),
        ("text/event-stream;q=oops", "ndjson"),
        ("garbage", "ndjson"),
        ("text/html", "ndjson"),
    ],
)
def test_negotiation(accept: str | None, name: str) -> None:
    assert stream_framing(accept).name == name
