"""One persistent raw HTTP/1.1 connection, for tests that compare whole answers byte for byte.

The request goes out as given; the answer comes back as received (head and
body), a chunked body without its chunking (which may fall otherwise from one
run to the next). Used by tests/test_edges_send_the_same_bytes.py and
tests/test_http1_and_h2c_answer_alike.py.
"""

from __future__ import annotations

import contextlib
import socket

__all__ = ["WITHIN_S", "Connection"]

WITHIN_S = 10.0


class Connection:
    """One persistent raw connection to a proxy port, reopened when an answer closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._sock: socket.socket | None = None
        self._buffer = b""
        #: Interim (1xx) heads received before the answers, in order.
        self.interim: list[bytes] = []

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buffer = b""

    def exchange(self, data: bytes, method: str) -> bytes:
        """The whole answer to ``data`` as received (head and body)."""
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=WITHIN_S)
        self._sock.sendall(data)
        head = self._until(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        while 100 <= status < 200:  # interim (a 100 Continue): kept apart, the answer follows
            self.interim.append(head)
            head = self._until(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
        fields = head.lower().split(b"\r\n")
        length = next((int(f[15:]) for f in fields if f.startswith(b"content-length:")), None)
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif length is not None:
            body = self._exactly(length)
        elif b"transfer-encoding: chunked" in fields:
            # A stream (a Connect stream's refusal comes as its end message): the body
            # without its chunking, which may fall otherwise from one run to the next.
            body = self._chunked()
        else:  # no framing: the body runs to the close
            body = self._rest()
        if b"connection: close" in fields or length is None:
            self.close()
        return head + body

    def _recv(self) -> bytes:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer was whole")
        return chunk

    def _until(self, end: bytes) -> bytes:
        while end not in self._buffer:
            self._buffer += self._recv()
        head, _, self._buffer = self._buffer.partition(end)
        return head + end

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._recv()
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return body

    def _chunked(self) -> bytes:
        body = b""
        while size := int(self._until(b"\r\n")[:-2].split(b";")[0], 16):
            body += self._exactly(size)
            self._exactly(2)  # the chunk's CRLF
        self._until(b"\r\n")  # no trailers: the blank line
        return body

    def _rest(self) -> bytes:
        with contextlib.suppress(ConnectionError):
            while True:
                self._buffer += self._recv()
        body, self._buffer = self._buffer, b""
        return body
