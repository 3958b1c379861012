"""Fuzz over what crosses the client trust boundary: HTTP/1.1 request heads and bodies.

Hypothesis draws request lines, header sets (Content-Length, Transfer-Encoding,
Content-Encoding and Content-Type variants among them), chunked framing and
bodies (JSON, bytes, gzip/deflate, truncated or followed by junk); the exact
bytes go over a socket to two real bridge processes on one upstream, one with
the lean HTTP/1.1 path and one without. Required of every request: the same
outcome on both (status, and body but its request id), never a 5xx made by
the bridge (the upstream's Echo never fails), never a hang (an answer or a
close within a few seconds; a late body is a 408 after
``limits.body_read_timeout_s``, 1 s here).

The bridges and the upstream run on a loop of their own in a thread, started
once for the module, so that hypothesis drives plain synchronous tests.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import zlib
from collections.abc import Iterator
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.background import Background
from tests.helpers.process import BridgeProcess, bridge_env, serve_args
from tests.helpers.raw_http import ECHO, comparable, wait_ready
from tests.helpers.servers import RunningServer, start_server

T = TypeVar("T")
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: An answer or a close within this, always: the body timeout is 1 s.
WITHIN_S = 6.0


async def _start(fast_path: bool, target: str) -> BridgeProcess:
    env = bridge_env(
        GRPC_BRIDGE_LISTEN__FAST_PATH="true" if fast_path else "false",
        GRPC_BRIDGE_LIMITS__BODY_READ_TIMEOUT_S="1",
        GRPC_BRIDGE_LIMITS__MAX_REQUEST_BYTES="65536",
    )
    bp = await BridgeProcess.start(*serve_args(target), env=env)
    await wait_ready(bp)
    return bp


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    """Proxy ports of a lean-path bridge and an aiohttp-only one, on one upstream."""
    background = Background()
    upstream: RunningServer = background.run(start_server())
    bridges = [background.run(_start(fast, upstream.target)) for fast in (True, False)]
    try:
        yield bridges[0].proxy_port, bridges[1].proxy_port
    finally:
        for bp in bridges:
            background.run(bp.stop())
        background.run(upstream.stop())
        background.close()


# --- what a client may send ----------------------------------------------------------------------

JSON_BODY = st.builds(
    lambda text: orjson.dumps({"fString": text}), st.text(max_size=20)
) | st.sampled_from([b"{}", b"", b"{", b"[]", b'{"fInt32": "x"}', b"null"])
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
#: Content-Type values, the commonest first.
CONTENT_TYPES = ["application/json"] * 4 + [
    None,
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/x-ndjson",
    "text/plain",
]


@st.composite
def bodies(draw: Any) -> tuple[bytes, str | None]:
    """A body and the Content-Encoding it goes with (None: no such header)."""
    plain = draw(JSON_BODY) if draw(st.integers(0, 4)) else draw(st.binary(max_size=40))
    kind = draw(
        st.sampled_from(
            ["plain", "gzip", "deflate", "raw-deflate", "truncated", "junk", "bomb", "other"]
        )
    )
    if kind == "plain":
        return plain, draw(st.sampled_from([None, "identity"]))
    if kind == "gzip":
        return gzip.compress(plain), draw(st.sampled_from(["gzip", "x-gzip", "GZIP", "gzip, gzip"]))
    if kind == "deflate":
        return zlib.compress(plain), "deflate"
    if kind == "raw-deflate":
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return deflater.compress(plain) + deflater.flush(), "deflate"
    if kind == "truncated":
        packed = gzip.compress(plain)
        return packed[: draw(st.integers(0, len(packed) - 1))], "gzip"
    if kind == "junk":
        return gzip.compress(plain) + draw(st.binary(min_size=1, max_size=8)), "gzip"
    if kind == "bomb":
        return gzip.compress(b" " * (1 << 20)), "gzip"  # over max_request_bytes inflated
    return plain, draw(st.sampled_from(["br", "zstd", "compress", "gzip;q=1", "*"]) | TOKEN)


def chunked(body: bytes, cuts: list[int], bad: str | None) -> bytes:
    pieces, start = [], 0
    for cut in sorted({c for c in cuts if 0 < c < len(body)}):
        pieces.append(body[start:cut])
        start = cut
    pieces.append(body[start:])
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    if bad is not None:
        out += bad.encode("latin-1")
    return out + b"0\r\n\r\n"


@st.composite
def requests(draw: Any) -> bytes:
    method = draw(
        st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH", "PROPFIND", "get"])
    )
    if draw(st.integers(0, 9)):
        target = draw(
            st.sampled_from(
                [ECHO] * 6
                + [ECHO + "?fString=q", "/bridgetest.v1.TestService%2FEcho", "/nope.v1.Nope/Nope"]
            )
        )
    else:
        target = "/" + draw(st.text(alphabet="/%abcXYZ019-._~!$&'()*+,;=:@?", max_size=12))
    version = draw(st.sampled_from(["HTTP/1.1"] * 12 + ["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x"]))
    body, coding = draw(bodies())
    headers: list[str] = []
    if draw(st.integers(0, 9)):
        headers.append("Host: bridge")
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type is not None:
        headers.append(f"Content-Type: {content_type}")
    if coding is not None:
        headers.append(f"Content-Encoding: {coding}")
    framing = draw(
        st.sampled_from(["length"] * 4 + ["chunked"] * 3 + ["none", "both", "odd-length"])
    )
    if framing in ("length", "both"):
        headers.append(f"Content-Length: {len(body)}")
    if framing == "odd-length":
        headers.append(
            "Content-Length: "
            + draw(st.sampled_from([f"+{len(body)}", f"{len(body)}, {len(body)}", "-1", " ", "x"]))
        )
    if framing in ("chunked", "both"):
        te = draw(st.sampled_from(["chunked", "chunked", "Chunked", "gzip, chunked", "chunked, x"]))
        headers.append(f"Transfer-Encoding: {te}")
        bad = draw(st.sampled_from([None, None, None, "zz\r\n", "5\r\nab\r\n", "1;x=y\r\na\r\n"]))
        body = chunked(body, draw(st.lists(st.integers(0, 64), max_size=3)), bad)
    extra = draw(
        st.lists(
            st.sampled_from(
                [
                    "X-Request-Id: fuzz",
                    "Accept: application/json",
                    "Accept: text/event-stream",
                    "Grpc-Timeout: 5S",
                    "Grpc-Timeout: banana",
                    "Expect: 100-continue",
                    "Grpc-Metadata-X-Trace: 1",
                    "X(y): 1",
                    "Content-Encoding: gzip",
                ]
            ),
            max_size=2,
        )
    )
    headers += extra
    headers.append("Connection: close")
    head = f"{method} {target} {version}\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    return head.encode("latin-1") + body


# --- what the bridge answers ---------------------------------------------------------------------


def outcome(port: int, data: bytes) -> Any:
    """The first answer to ``data``: (status, body), "closed" without one, or "hang"."""
    with socket.create_connection(("127.0.0.1", port), timeout=WITHIN_S) as sock:
        with contextlib.suppress(OSError):  # the bridge may answer and close before the end
            sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return "hang"
        except ConnectionResetError:
            pass
    if not received:
        return "closed"
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    while 100 <= status < 200:  # 100 Continue before the answer
        head, _, body = body.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return comparable((status, {}, body))


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


@FUZZ
@given(data=requests())
def test_both_paths_answer_any_request_alike(ports: tuple[int, int], data: bytes) -> None:
    fast = outcome(ports[0], data)
    plain = outcome(ports[1], data)
    assert fast != "hang" and plain != "hang", data
    assert fast == plain, data
    if isinstance(fast, tuple):
        assert fast[0] < 500, (data, fast)
