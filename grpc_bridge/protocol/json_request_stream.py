"""Request streams over HTTP/1.1: request messages read from the body as it arrives (spec §4).

- ``application/x-ndjson``: one JSON message per line. Each message is
  yielded as soon as its line is complete, so the caller forwards it upstream
  while the client is still sending; the next bytes are read only once the
  caller asks for the next message (backpressure reaches the client through
  TCP). Blank lines are skipped, ``\\r\\n`` is accepted, a last line without
  a newline counts. One line may be up to ``limits.max_request_bytes`` long
  and must arrive whole within ``limits.body_read_timeout_s`` of its first
  byte; the stream as a whole is unbounded in size and time (a silence
  between messages is ``streams.idle_timeout_s``'s to end).
- ``application/json`` (or no Content-Type): a JSON array, each element one
  message, or a single object, a stream of one. It is read whole (bounded by
  ``limits.max_request_bytes`` and ``limits.body_read_timeout_s``), because
  an array only makes sense once it is complete: NDJSON is the streaming form.

A bad line or element is an :class:`~grpc_bridge.errors.InvalidArgument`
naming it (``line 3: malformed JSON: ...``); the end of the body is the
caller's cue to half-close. A compressed body (``Content-Encoding``) is
inflated as it arrives (pipeline/body.py); one that turns out malformed or
truncated raises before the end, so the call is cancelled, never half-closed
as if the stream were complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from google.protobuf.message import Message

from grpc_bridge.codec.framing import NDJSON
from grpc_bridge.codec.json_codec import parse_json
from grpc_bridge.errors import BridgeError, InvalidArgument, PayloadTooLarge
from grpc_bridge.pipeline.body import (
    JSON,
    BodyReader,
    body_inflater,
    check_media_type,
    read_body,
)
from grpc_bridge.pipeline.inflate import too_large
from grpc_bridge.protocol.json_transcode import MessageDecoder

REQUEST_STREAM_TYPES = (NDJSON, JSON)


def _at(where: str, exc: BridgeError) -> InvalidArgument:
    return InvalidArgument(f"{where}: {exc.message}")


def check_request_stream(request: web.Request, limit: int) -> str:
    """The body's media type, refused (415) or too large by Content-Length (413) before the call.

    A Content-Encoding not served is refused here too, before the call.
    """
    media_type = check_media_type(request, REQUEST_STREAM_TYPES)
    body_inflater(request)
    if media_type != NDJSON:
        length = request.content_length
        if length is not None and length > limit:
            raise too_large(limit)
    return media_type


async def request_messages(
    request: web.Request,
    decoder: MessageDecoder,
    media_type: str,
    *,
    limit: int,
    max_depth: int,
    timeout: float,
) -> AsyncIterator[Message]:
    """The body's request messages, in order, as they arrive.

    ``media_type`` is what :func:`check_request_stream` returned.
    """
    if media_type == NDJSON:
        async for message in _ndjson(request, decoder, limit, timeout):
            yield message
        return
    body = await read_body(request, limit, timeout)
    if not body.strip():
        return
    value = _parse_array(body, max_depth)
    if not isinstance(value, list):
        yield decoder.decode(body)  # re-parsed for its own depth limit; a stream of one
        return
    for index, element in enumerate(value):
        try:
            yield decoder.decode_value(element)
        except BridgeError as exc:
            raise _at(f"element [{index}]", exc) from exc


def _parse_array(body: bytes, max_depth: int) -> object:
    """The body's JSON; the array around the messages is one level more than ``max_depth``."""
    try:
        return parse_json(body, max_depth=max_depth + 1)
    except InvalidArgument as exc:
        # parse_json names the limit it was given; the client's limit is one less.
        if exc.message != f"JSON nesting deeper than {max_depth + 1} levels":
            raise
        raise InvalidArgument(f"JSON nesting deeper than {max_depth} levels") from exc


async def _ndjson(
    request: web.Request, codec: MessageDecoder, limit: int, timeout: float
) -> AsyncIterator[Message]:
    buffer = bytearray()
    line_no = 0
    # No deadline between messages; one from a message's first byte to its end.
    reader = BodyReader(request, timeout, None)
    loop = asyncio.get_running_loop()
    while True:
        chunk = await reader.read_streamed()
        if not chunk:
            break
        buffer += chunk
        start = 0
        while (newline := buffer.find(b"\n", start)) >= 0:
            line_no += 1
            line = bytes(buffer[start:newline])
            start = newline + 1
            if (message := _decode_line(codec, line, line_no, limit)) is not None:
                yield message
        del buffer[:start]
        if len(buffer) > limit:
            raise _line_too_long(line_no + 1, limit)
        if not buffer:
            reader.deadline = None
        elif start or reader.deadline is None:
            reader.deadline = loop.time() + timeout  # a message started in this chunk
    if (message := _decode_line(codec, bytes(buffer), line_no + 1, limit)) is not None:
        yield message


def _line_too_long(line_no: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"line {line_no} is longer than {limit} bytes (limits.max_request_bytes)"
    )


def _decode_line(codec: MessageDecoder, line: bytes, line_no: int, limit: int) -> Message | None:
    if len(line) > limit:
        raise _line_too_long(line_no, limit)
    if not line.strip():
        return None
    try:
        return codec.decode(line)
    except BridgeError as exc:
        raise _at(f"line {line_no}", exc) from exc
