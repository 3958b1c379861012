"""Request streams over HTTP/1.1: client-streaming and bidi calls, NDJSON or JSON-array bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.load import wait_until
from tests.helpers.servers import RunningServer
from tests.helpers.streamtools import BIDI, CLIENT_STREAM, NDJSON, ndjson_lines, sse_events

ND = {"Content-Type": NDJSON}


def lines(*texts: str) -> bytes:
    return b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts)


async def test_ndjson_lines_reach_the_upstream_before_the_body_ends(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    async def slow_body() -> AsyncIterator[bytes]:
        yield lines("first")
        # The upstream has message 1 while the client has not finished sending.
        await upstream.test.wait_for("received", "first", within=2.0)
        await asyncio.sleep(0.1)
        yield b'{"text": "second"}'  # a last line without a newline counts

    status, body, headers = await bridge.post(CLIENT_STREAM, slow_body(), headers=ND)
    assert status == 200
    assert body == {"count": 2, "texts": ["first", "second"]}
    assert headers["Grpc-Trailer-x-count"] == "2"


@pytest.mark.parametrize(
    ("body", "texts"),
    [
        (b'[{"text": "a"}, {"text": "b"}, {"text": "c"}]', ["a", "b", "c"]),
        (b'{"text": "solo"}', ["solo"]),
        (b"[]", []),
        (b"", []),
    ],
)
async def test_json_bodies(bridge: RunningBridge, body: bytes, texts: list[str]) -> None:
    status, got, _ = await bridge.post(CLIENT_STREAM, body)
    assert status == 200
    assert got == {"count": len(texts), "texts": texts}


async def test_blank_lines_and_crlf_are_accepted(bridge: RunningBridge) -> None:
    status, got, _ = await bridge.post(
        CLIENT_STREAM, b'{"text": "a"}\r\n\n  \n{"text": "b"}\r\n', headers=ND
    )
    assert (status, got["texts"]) == (200, ["a", "b"])


async def test_bad_line_is_400_naming_it_and_cancels_the_upstream(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    status, body, _ = await bridge.post(
        CLIENT_STREAM, lines("bad-line") + b'{"text": 5}\n' + lines("never"), headers=ND
    )
    assert status == 400 and body["code"] == 3
    assert body["message"].startswith('line 2: invalid value for field "text"')
    # The cancel may reach the upstream before its handler reads line 1 (then it is
    # recorded under "", or the handler never runs); either way no call is left running.
    if "bad-line" in upstream.test.received:
        await wait_until(
            lambda: "bad-line" in upstream.test.cancelled, 2.0, "the upstream saw the cancel"
        )
    assert "never" not in upstream.test.received


async def test_bad_array_element_names_its_index(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.post(CLIENT_STREAM, b'[{"text": "a"}, {"bogus": 1}]')
    assert status == 400 and body["message"].startswith("element [1]: ")


async def test_malformed_json_line(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.post(CLIENT_STREAM, b'{"text": "a"}\n{nope\n', headers=ND)
    assert status == 400 and body["message"].startswith("line 2: malformed JSON")


async def test_line_over_the_limit_is_413(upstream: RunningServer) -> None:
    async with running_bridge(upstream.target, limits={"max_request_bytes": 64}) as bridge:
        status, body, _ = await bridge.post(
            CLIENT_STREAM, lines("ok") + lines("x" * 100), headers=ND
        )
        assert status == 413 and body["message"].startswith("line 2 is longer than 64 bytes")
        # The limit is per line: the stream as a whole may be longer.
        status, body, _ = await bridge.post(CLIENT_STREAM, lines(*"abcdefghij"), headers=ND)
        assert status == 200 and body["count"] == 10


async def test_other_media_types_are_415(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.post(
        CLIENT_STREAM, b"text", headers={"Content-Type": "text/plain"}
    )
    assert status == 415 and "application/x-ndjson" in body["message"]


async def test_bidi_over_http_is_full_duplex(bridge: RunningBridge) -> None:
    """Each reply arrives while the request body is still open."""
    echoed = [asyncio.Event(), asyncio.Event()]

    async def body() -> AsyncIterator[bytes]:
        for index, text in enumerate(("one", "two", "three")):
            if index:
                await asyncio.wait_for(echoed[index - 1].wait(), 2.0)
            yield orjson.dumps({"index": index, "text": text}) + b"\n"

    started = time.monotonic()
    async with bridge.session.post(f"{bridge.url}{BIDI}", data=body(), headers=ND) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == NDJSON
        replies = []
        async for line in ndjson_lines(resp, started):
            replies.append(line.value)
            if len(replies) <= len(echoed):
                echoed[len(replies) - 1].set()
    assert replies == [
        {"result": {"index": 0, "text": "echo: one"}},
        {"result": {"index": 1, "text": "echo: two"}},
        {"result": {"index": 2, "text": "echo: three"}},
    ]


async def test_bidi_bad_line_after_the_first_reply_is_an_error_line(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    replied = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield lines("inband")
        await asyncio.wait_for(replied.wait(), 2.0)
        yield b"not json\n"

    async with bridge.session.post(f"{bridge.url}{BIDI}", data=body(), headers=ND) as resp:
        assert resp.status == 200
        first = orjson.loads(await resp.content.readline())
        replied.set()
        last = orjson.loads(await resp.content.readline())
        assert await resp.content.read() == b""
    assert first == {"result": {"index": 0, "text": "echo: inband"}}
    assert last["error"]["code"] == 3 and last["error"]["message"].startswith("line 2: ")
    await upstream.test.wait_for("cancelled", "inband", within=1.0)


async def test_bidi_bad_first_line_is_a_plain_400(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.post(BIDI, b"[1]\n", headers=ND)
    assert status == 400 and body["message"].startswith("line 1: ")


async def test_bidi_answers_sse_when_asked(bridge: RunningBridge) -> None:
    status, body, _ = await bridge.post(
        BIDI, lines("a", "b"), headers={**ND, "Accept": "text/event-stream"}
    )
    assert status == 200
    assert sse_events(body) == [
        ("message", {"index": 0, "text": "echo: a"}),
        ("message", {"index": 0, "text": "echo: b"}),
        ("end", {"code": 0, "message": "", "details": []}),
    ]


async def test_bidi_client_disconnect_cancels_the_upstream(
    bridge: RunningBridge, upstream: RunningServer
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield lines("leaving")
        await asyncio.sleep(30)  # never finishes: the client gives up first

    resp = await bridge.session.post(f"{bridge.url}{BIDI}", data=body(), headers=ND)
    assert orjson.loads(await resp.content.readline())["result"]["text"] == "echo: leaving"
    resp.close()
    await upstream.test.wait_for("cancelled", "leaving", within=1.0)


async def test_client_stream_is_post_only(bridge: RunningBridge) -> None:
    status, _, headers = await bridge.get(CLIENT_STREAM)
    assert status == 405 and headers["Allow"] == "POST"
