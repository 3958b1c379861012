"""The same request over HTTP/1.1 and over h2c, and the two answers in one comparable form.

For tests/test_http1_and_h2c_answer_alike.py: an HTTP/1.1 request as raw bytes
(tests/helpers/edge_requests.py draws them) is sent as it is over a raw
connection (tests/helpers/http1_connection.py) and, translated field for field,
as an HTTP/2 request with prior knowledge over a persistent connection driven
by the ``h2`` library (an implementation other than the bridge's server code,
synchronous like the HTTP/1.1 side). Both answers become
:func:`comparable` bytes.
"""

from __future__ import annotations

import re
import socket

import h2.config
import h2.connection
import h2.events

from tests.helpers.lean_path import comparable_bytes

__all__ = [
    "H2cAnswer",
    "H2cRequest",
    "H2cSync",
    "as_h2c",
    "comparable",
    "http1_answer",
]

WITHIN_S = 10.0

#: (name, value), names lower-case, in the order sent.
Fields = list[tuple[str, str]]
#: Status, response header fields in order, the body (DATA de-framed), trailer fields.
H2cAnswer = tuple[int, Fields, bytes, Fields]

# Request fields that carry HTTP/1.1's connection framing: RFC 9113 §8.2.2 makes a
# request with any of them malformed (``te`` but for "trailers"), so an HTTP/2 client
# never sends them. ``host`` becomes ``:authority`` (RFC 9113 §8.3.1: a client
# SHOULD use it rather than Host, as curl, browsers and grpc do).
_NOT_ON_H2 = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)

# Response fields that never appear on HTTP/2 (RFC 9113 §8.2.2, connection-specific:
# the bridge's h2c writer drops them, as it must), so they are left out of the
# HTTP/1.1 answer before the two are compared:
# - connection: HTTP/1.1's "close after this" / "keep-alive" (RFC 9112 §9.6); on
#   HTTP/2 a stream ends on its own and the connection goes on;
# - keep-alive: its parameters (RFC 9112 §9.3, informative);
# - transfer-encoding: HTTP/1.1's chunked framing (RFC 9112 §7.1); HTTP/2 frames
#   the body in DATA (RFC 9113 §8.1), so a chunked body is compared de-chunked.
# ``content-length`` stays: HTTP/2 would allow it to be absent (RFC 9113 §8.1.1),
# but the bridge sends it on both alike, and the test holds it to that.
_HTTP1_ONLY = frozenset({"connection", "keep-alive", "transfer-encoding"})


#: A refusal's message quoting a request field's name (JSON body, gRPC-Web trailer frame,
#: ``grpc-message`` percent-encoded): the name as the client spelt it.
_QUOTED_NAME = re.compile(rb"(?i)(header(?: |%20)(?:'|%27|\\?\"))([!#$&*+.^_`|~0-9a-z-]+)")


def _lower_name(match: re.Match[bytes]) -> bytes:
    return match.group(1) + match.group(2).lower()


class H2cRequest(tuple[str, str, Fields, bytes | None]):
    """``(method, path, fields, body)``: a request as an HTTP/2 client sends it
    (``body`` None: END_STREAM on the HEADERS frame)."""


def _split_head(data: bytes) -> tuple[str, str, Fields, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    line, *lines = head.decode().split("\r\n")
    method, target, _ = line.split(" ", 2)
    fields = []
    for text in lines:
        name, _, value = text.partition(":")
        fields.append((name.strip().lower(), value.strip()))
    return method, target, fields, body


def as_h2c(data: bytes, *, empty_data_frame: bool = False) -> H2cRequest | None:
    """The HTTP/2 form of the raw HTTP/1.1 request ``data``; None for a request HTTP/2
    cannot say (no ``Host``: HTTP/1.1 requires one, RFC 9112 §3.2, HTTP/2 has
    ``:authority`` and no such rule).

    A request without content ends the stream on its HEADERS frame. One with
    ``Content-Length: 0`` may instead send an empty DATA frame with END_STREAM
    (``empty_data_frame``): its ``content-length`` says there is no content either way
    (RFC 9113 §8.1.1). Without a ``content-length``, HEADERS then an empty DATA frame is
    HTTP/1.1's chunked body of no chunks (content whose length the sender did not say),
    not a request without content, so it is not sent for one; a chunked body goes
    de-chunked in DATA frames, with no ``content-length``, even when it is empty."""
    method, target, fields, body = _split_head(data)
    authority = next((value for name, value in fields if name == "host"), None)
    if authority is None:
        return None
    kept = []
    for name, value in fields:
        if name in _NOT_ON_H2 or name == "host" or (name == "te" and value != "trailers"):
            continue
        if name == "cookie":  # one field per cookie, as HTTP/2 clients may (RFC 9113 §8.2.3)
            kept += [(name, crumb) for crumb in value.split("; ")]
        else:
            kept.append((name, value))
    pseudo = [(":method", method), (":scheme", "http"), (":authority", authority)]
    pseudo.append((":path", target))
    declared = any(name == "content-length" for name, _ in fields)
    if ("transfer-encoding", "chunked") in fields:
        return H2cRequest((method, target, pseudo + kept, _dechunked(body)))
    sent = body if body or (empty_data_frame and declared) else None
    return H2cRequest((method, target, pseudo + kept, sent))


def _dechunked(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if not size:
            return out
        out, body = out + body[:size], body[size + 2 :]


def http1_answer(raw: bytes) -> tuple[int, Fields, bytes]:
    """Status, header fields (lower-case names, in order) and the (de-chunked) body of an
    answer read by :class:`tests.helpers.http1_connection.Connection`."""
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    fields = []
    for text in lines:
        name, _, value = text.partition(":")
        fields.append((name.strip().lower(), value.strip()))
    return int(line.split(" ", 2)[1]), fields, body


def comparable(status: int, fields: Fields, body: bytes) -> bytes:
    """An answer as bytes two equal answers share, whichever protocol carried them:
    the HTTP/1.1-only fields (``_HTTP1_ONLY``) out, names lower-case (HTTP/2 sends
    them so, RFC 9113 §8.2.1; HTTP/1.1's are case-insensitive, RFC 9110 §5.1), then
    :func:`tests.helpers.lean_path.comparable_bytes`: ``Date`` out, a made-up request id
    and the upstream's view of the bridge's port as placeholders. The status line
    carries no reason phrase (HTTP/2 has none, RFC 9113 §8.3.2). A refusal that quotes
    a request field's name quotes it lower-case: the bridge quotes it as received,
    and an HTTP/2 client sends it lower-case (RFC 9113 §8.2.1: upper-case is
    malformed), an HTTP/1.1 client as it likes."""
    kept = [(name.title(), value) for name, value in fields if name not in _HTTP1_ONLY]
    head = f"HTTP {status}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in kept)
    raw = comparable_bytes(head.encode("utf-8", "surrogateescape") + b"\r\n" + body)
    return _QUOTED_NAME.sub(_lower_name, raw)


class H2cSync:
    """A persistent h2c connection, one request at a time; reopened when the bridge
    closes it (a GOAWAY) or a request is refused."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._sock: socket.socket | None = None
        self._conn: h2.connection.H2Connection | None = None
        #: Connections opened (a new one after each close).
        self.opened = 0

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._conn = None

    def _open(self) -> h2.connection.H2Connection:
        if self._conn is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=WITHIN_S)
            config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
            self._conn = h2.connection.H2Connection(config)
            self._conn.initiate_connection()
            self._sock.sendall(self._conn.data_to_send())
            self.opened += 1
        return self._conn

    def exchange(self, request: H2cRequest, *, split: int = 0) -> H2cAnswer:
        """The answer to ``request``; a body goes in two DATA frames, cut at ``split``
        (0: one frame)."""
        _, _, fields, body = request
        conn = self._open()
        assert self._sock is not None
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            for piece, last in ((body[:split], False), (body[split:], True)) if split else ():
                conn.send_data(stream_id, piece, end_stream=last)
            if not split:
                conn.send_data(stream_id, body, end_stream=True)
        return self._answer(conn, stream_id)

    def _answer(self, conn: h2.connection.H2Connection, stream_id: int) -> H2cAnswer:
        assert self._sock is not None
        status, head, body, trailers = 0, [], bytearray(), []
        while True:
            # Sent here, not at once: a body bigger than the window waits for it.
            self._sock.sendall(conn.data_to_send())
            data = self._sock.recv(65536)
            if not data:
                self.close()
                raise ConnectionError(f"closed before stream {stream_id} ended")
            for event in conn.receive_data(data):
                if getattr(event, "stream_id", stream_id) != stream_id:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    head = [(str(k), str(v)) for k, v in event.headers or ()]
                    status = int(dict(head).pop(":status"))
                    head = [(k, v) for k, v in head if k != ":status"]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data or b""
                    if event.flow_controlled_length:
                        conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers = [(str(k), str(v)) for k, v in event.headers or ()]
                elif isinstance(event, h2.events.StreamEnded):
                    self._sock.sendall(conn.data_to_send())
                    return status, head, bytes(body), trailers
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    self.close()
                    raise ConnectionError(f"stream {stream_id}: {event!r}")
