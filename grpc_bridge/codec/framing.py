"""Stream framings: how response messages and a stream's end are written on the wire.

The streaming core (``http/relay.py``) drives every framing the same way::

    open()            once, when the response starts
    message(payload)  per response message; ``payload`` is its JSON encoding
    error(status)     the stream failed; ``status`` is google.rpc.Status as JSON
    end(status)       the stream succeeded; ``status`` has code 0

and each method returns the bytes to send (``b""``: nothing). A new wire
format (gRPC-Web, Connect) is one more class here plus a media type in the
negotiation, nothing else.

=========  ============================  =======================================
framing    message                       end / error
=========  ============================  =======================================
ndjson     ``{"result": <msg>}\\n``       nothing / ``{"error": <Status>}\\n``
sse        ``event: message``            ``event: end`` + ``data: <Status>``,
           ``data: <msg>``               for success (code 0) and failure alike
websocket  text frame ``{"result": ..}``  nothing (close 1000) / ``{"error": ..}``
=========  ============================  =======================================

SSE uses ``end`` for failures too: ``error`` is the name of the EventSource
event a browser fires on a broken connection, and must stay distinguishable.
JSON from orjson never contains a raw newline, so a payload always fits one
``data:`` line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import orjson

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"


class Framing(Protocol):
    #: Label for logs and metrics.
    name: str
    #: Content-Type of an HTTP response in this framing.
    content_type: str

    def open(self) -> bytes: ...

    def message(self, payload: bytes) -> bytes: ...

    def error(self, status: Mapping[str, Any]) -> bytes: ...

    def end(self, status: Mapping[str, Any]) -> bytes: ...


class NdjsonFraming:
    name = "ndjson"
    content_type = NDJSON

    def open(self) -> bytes:
        return b""

    def message(self, payload: bytes) -> bytes:
        return b'{"result":' + payload + b"}\n"

    def error(self, status: Mapping[str, Any]) -> bytes:
        return orjson.dumps({"error": status}) + b"\n"

    def end(self, status: Mapping[str, Any]) -> bytes:
        return b""


class SseFraming:
    name = "sse"
    content_type = EVENT_STREAM

    def open(self) -> bytes:
        return b""

    def message(self, payload: bytes) -> bytes:
        return b"event: message\ndata: " + payload + b"\n\n"

    def error(self, status: Mapping[str, Any]) -> bytes:
        return self.end(status)

    def end(self, status: Mapping[str, Any]) -> bytes:
        return b"event: end\ndata: " + orjson.dumps(status) + b"\n\n"


class WebSocketFraming:
    """Each returned value is the content of one text frame."""

    name = "websocket"
    content_type = "application/json"

    def open(self) -> bytes:
        return b""

    def message(self, payload: bytes) -> bytes:
        return b'{"result":' + payload + b"}"

    def error(self, status: Mapping[str, Any]) -> bytes:
        return orjson.dumps({"error": status})

    def end(self, status: Mapping[str, Any]) -> bytes:
        return b""


NDJSON_FRAMING = NdjsonFraming()
SSE_FRAMING = SseFraming()
WEBSOCKET_FRAMING = WebSocketFraming()
