"""Stream framings: how response messages and a stream's end are written on the wire.

The streaming core (``pipeline/relay.py``) drives every framing the same way::

    open()            once, when the response starts
    message(payload)  per response message; ``payload`` is its encoding (JSON,
                      or the protobuf bytes for a binary protocol)
    error(end)        the stream failed: a :class:`StreamEnd` with the status
    end(end)          the stream succeeded: a :class:`StreamEnd` with code 0

and each method returns the bytes to send (``b""``: nothing). A framing also
says whether an error before the first message may still be a plain HTTP
error (``plain_errors``) and whether the whole body may take an HTTP
``Content-Encoding`` (``compressible``; protocols with their own per-message
compression say no). A wire protocol (grpc_bridge/protocol/) brings its own
framing class; the streaming core drives them all alike.

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from google.protobuf.descriptor_pool import DescriptorPool

from grpc_bridge.codec.details import render_details
from grpc_bridge.status import status_dict

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"


Pairs = Sequence[tuple[str, str | bytes]]


@dataclass(slots=True)
class StreamEnd:
    """How a response stream ended, in every form a framing may need to write it.

    JSON framings write :meth:`status` (google.rpc.Status as JSON, details
    rendered through the upstream's types); binary ones (gRPC-Web, Connect)
    write ``code``, ``message``, the upstream's raw ``details_bin`` and the
    ``trailing`` metadata themselves.
    """

    code: int
    message: str = ""
    #: The upstream's ``grpc-status-details-bin`` (google.rpc.Status bytes), if any.
    details_bin: bytes | None = None
    #: The bridge's own error details, already in JSON form.
    details: Sequence[Any] = ()
    trailing: Pairs = ()
    #: The upstream's descriptor pool, to render ``details_bin`` as JSON.
    pool: DescriptorPool | None = None
    _status: dict[str, Any] | None = field(default=None, repr=False)

    def status(self) -> dict[str, Any]:
        """google.rpc.Status as JSON (computed once)."""
        if self._status is None:
            details = (
                render_details(self.details_bin, self.pool)
                if self.details_bin is not None
                else self.details
            )
            self._status = status_dict(self.code, self.message, details)
        return self._status


class Framing(Protocol):
    #: Label for logs and metrics.
    name: str
    #: Content-Type of an HTTP response in this framing.
    content_type: str
    #: An error before the first message may still be a plain HTTP error response.
    plain_errors: bool
    #: The body may take an HTTP Content-Encoding (response compression).
    compressible: bool

    def open(self) -> bytes: ...

    def message(self, payload: bytes) -> bytes: ...

    def error(self, end: StreamEnd) -> bytes: ...

    def end(self, end: StreamEnd) -> bytes: ...


class NdjsonFraming:
    name = "ndjson"
    content_type = NDJSON
    plain_errors = True
    compressible = True

    def open(self) -> bytes:
        return b""

    def message(self, payload: bytes) -> bytes:
        return b'{"result":' + payload + b"}\n"

    def error(self, end: StreamEnd) -> bytes:
        return orjson.dumps({"error": end.status()}) + b"\n"

    def end(self, end: StreamEnd) -> bytes:
        return b""


class SseFraming:
    name = "sse"
    content_type = EVENT_STREAM
    # An EventSource can't read a non-200 answer: every outcome is an ``end`` event.
    plain_errors = False
    compressible = True

    def open(self) -> bytes:
        return b""

    def message(self, payload: bytes) -> bytes:
        return b"event: message\ndata: " + payload + b"\n\n"

    def error(self, end: StreamEnd) -> bytes:
        return self.end(end)

    def end(self, end: StreamEnd) -> bytes:
        return b"event: end\ndata: " + orjson.dumps(end.status()) + b"\n\n"


class WebSocketFraming:
    """Each returned value is the content of one text frame."""

    name = "websocket"
    content_type = "application/json"
    plain_errors = False
    compressible = False

    def open(self) -> bytes:
        return b""

    def message(self, payload: bytes) -> bytes:
        return b'{"result":' + payload + b"}"

    def error(self, end: StreamEnd) -> bytes:
        return orjson.dumps({"error": end.status()})

    def end(self, end: StreamEnd) -> bytes:
        return b""


NDJSON_FRAMING = NdjsonFraming()
SSE_FRAMING = SseFraming()
WEBSOCKET_FRAMING = WebSocketFraming()


#: The end of a stream that succeeded with no trailing metadata.
OK_END = StreamEnd(0)
