"""gzip between the bridge and its upstream, both ways.

A real grpc.aio server that compresses every answer (gzip as its default
compression), behind a relay that reads the HTTP/2 frames going by
(tests/helpers/grpc_wiretap.py, python-hyper's hyperframe and hpack): the per-upstream
``compression`` setting must put ``grpc-encoding: gzip`` and compressed
messages on the wire, and the server's compressed answers must be decoded.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from grpc_bridge.upstream.h2 import inflate
from tests.helpers.grpc_wiretap import Wiretap
from tests.helpers.harness import RunningBridge, running_bridge
from tests.helpers.servers import StartServer

ECHO = "/bridgetest.v1.TestService/Echo"
SERVER_STREAM = "/bridgetest.v1.TestService/ServerStream"
CLIENT_STREAM = "/bridgetest.v1.TestService/ClientStream"
GZIP_BY_DEFAULT = ("grpc.default_compression_algorithm", 2)  # grpc.Compression.Gzip


@asynccontextmanager
async def tapped_bridge(
    upstream_factory: StartServer, compression: str
) -> AsyncIterator[tuple[RunningBridge, Wiretap]]:
    server = await upstream_factory(options=[GZIP_BY_DEFAULT])
    tap = Wiretap(server.port)
    port = await tap.start()
    upstreams = [{"targets": [f"127.0.0.1:{port}"], "compression": compression}]
    try:
        async with running_bridge(None, upstreams=upstreams) as bridge:
            yield bridge, tap
    finally:
        await tap.stop()


@pytest.mark.parametrize("compression", ["gzip", "none"])
async def test_requests_compressed_as_configured_and_answers_decoded(
    upstream_factory: StartServer, compression: str
) -> None:
    text = "compress me " * 5000
    async with tapped_bridge(upstream_factory, compression) as (bridge, tap):
        status, body, _ = await bridge.post(ECHO, {"fString": text})
        assert status == 200 and body["fString"] == text
        # Every message large and compressible: gRPC sends a message uncompressed
        # (flag 0) whenever gzip would not make it smaller.
        tag = "gz" * 500
        status, lines, _ = await bridge.post(SERVER_STREAM, {"count": 3, "tag": tag})
        assert status == 200
        assert [line["result"]["text"] for line in _ndjson(lines)] == [
            f"{tag}-{i}" for i in range(3)
        ]
        texts = ["a" * 1000, "b" * 1000]
        status, body, _ = await bridge.post(
            CLIENT_STREAM,
            b"".join(b'{"text": "%s"}\n' % t.encode() for t in texts),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert status == 200 and body["texts"] == texts

    gzip = compression == "gzip"
    for path, messages in ((ECHO, 1), (SERVER_STREAM, 1), (CLIENT_STREAM, 2)):
        calls = tap.calls(path)
        assert len(calls) == 1, (path, calls)
        request, response = calls[0]
        assert (request.headers.get("grpc-encoding") == "gzip") is gzip, request.headers
        assert request.compressed == [gzip] * messages, (path, request.compressed)
        # The server compressed every answer, and the bridge decoded them above.
        assert response.headers.get("grpc-encoding") == "gzip", response.headers
        assert response.compressed and all(response.compressed), (path, response.compressed)


def _ndjson(text: object) -> list[dict[str, dict[str, str]]]:
    import orjson

    assert isinstance(text, str)
    return [orjson.loads(line) for line in text.splitlines() if line]


async def test_large_compressed_stream_messages_arrive_whole_and_in_order(
    upstream_factory: StartServer,
) -> None:
    """Each answer gzipped to more than 64 KiB: inflated on a worker thread when
    taken, the stream's order kept on the batching path."""
    tag = os.urandom(75_000).hex()  # incompressible: ~75 KB once gzipped
    async with tapped_bridge(upstream_factory, "none") as (bridge, tap):
        status, lines, _ = await bridge.post(SERVER_STREAM, {"count": 6, "tag": tag})
        assert status == 200
        texts = [line["result"]["text"] for line in _ndjson(lines)]
        assert texts == [f"{tag}-{i}" for i in range(6)]
    (_, response), *_ = tap.calls(SERVER_STREAM)
    assert response.compressed == [True] * 6, response.compressed
    assert min(response.sizes) > inflate.OFF_LOOP_BYTES, response.sizes
