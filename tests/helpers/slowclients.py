"""Clients that start a stream and then never read: raw sockets with a small receive buffer.

They send their request bytes and stop; the kernel's receive buffer (made
small) fills at once, so whatever the bridge holds for them is in its own
memory.
"""

from __future__ import annotations

import base64
import os
import socket
import struct

#: Receive buffer of a client that stops reading: the kernel doubles it, still tiny.
SMALL_RCVBUF = 4096


def stalled_client(port: int, request: bytes) -> socket.socket:
    """A connection that sent ``request`` (blocking, whole) and will never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def http_post(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: bridge", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def websocket_open(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    head = [
        f"GET {path} HTTP/1.1",
        "Host: bridge",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def websocket_text(payload: bytes) -> bytes:
    """One masked text frame (RFC 6455 §5.2); a zero masking key leaves the payload as is."""
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + struct.pack(">H", size)
    else:
        length = bytes([0x80 | 127]) + struct.pack(">Q", size)
    return b"\x81" + length + b"\x00\x00\x00\x00" + payload


def read_head(sock: socket.socket) -> bytes:
    """Read up to the end of an HTTP response head (a 101), byte by byte, nothing past it."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError(f"connection closed after {head!r}")
        head += chunk
    return head


def send_until_blocked(port: int, head: bytes, chunk: bytes, *, cap: int, stall_s: float) -> int:
    """Send ``head`` then ``chunk`` over and over until a send stalls ``stall_s`` seconds
    (the peer stopped taking bytes) or ``cap`` bytes went out; the body bytes sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_RCVBUF)
    sock.connect(("127.0.0.1", port))
    sock.sendall(head)
    sock.settimeout(stall_s)
    sent = 0
    try:
        while sent < cap:
            try:
                sock.sendall(chunk)
            except TimeoutError:
                break
            sent += len(chunk)
    finally:
        sock.close()
    return sent
