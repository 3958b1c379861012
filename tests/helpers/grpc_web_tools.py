"""gRPC-Web on the wire, written and read here independently of grpc_bridge/protocol/.

``VARIANTS`` are the request forms the bridge serves (binary protobuf, base64
text, JSON); ``grpc_web_call`` posts one framed message and returns the
answer split into frames, so tests compare frames and trailers, not bytes
a client library already interpreted.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass
from typing import Any

import aiohttp
from google.protobuf import json_format
from google.protobuf.message import Message

TRAILER = 0x80


@dataclass(frozen=True)
class Variant:
    name: str
    content_type: str
    #: The Content-Type the answer comes with.
    answer_type: str
    text: bool
    json: bool

    def payload(self, message: Message) -> bytes:
        if self.json:
            return json_format.MessageToJson(message, indent=None).encode()
        return message.SerializeToString()

    def body(self, message: Message | bytes) -> bytes:
        """One message frame (bytes: the payload as given), base64 in text mode."""
        payload = message if isinstance(message, bytes) else self.payload(message)
        return self.wire(frame(payload))

    def wire(self, data: bytes) -> bytes:
        return base64.b64encode(data) if self.text else data

    def message(self, payload: bytes, cls: type[Message]) -> Message:
        if self.json:
            return json_format.Parse(payload, cls())
        return cls.FromString(payload)


VARIANTS = {
    "binary": Variant(
        "binary", "application/grpc-web+proto", "application/grpc-web+proto", False, False
    ),
    "text": Variant(
        "text", "application/grpc-web-text", "application/grpc-web-text+proto", True, False
    ),
    "json": Variant("json", "application/grpc-web+json", "application/grpc-web+json", False, True),
}


def frame(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def text_decode(body: bytes) -> bytes:
    """Base64 whose every flushed piece may end in padding."""
    return b"".join(base64.b64decode(piece) for piece in re.findall(rb"[^=]+=*", body))


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while data:
        assert len(data) >= 5, f"a frame head cut short: {data!r}"
        flag, length = struct.unpack(">BI", data[:5])
        assert len(data) >= 5 + length, f"a frame cut short: {data!r}"
        frames.append((flag, data[5 : 5 + length]))
        data = data[5 + length :]
    return frames


def trailer_lines(block: bytes) -> list[tuple[str, str]]:
    """A trailer frame's ``key: value\\r\\n`` lines (Envoy writes ``key:value``)."""
    text = block.decode("ascii")
    assert text.endswith("\r\n") or not text, text
    return [
        (key, value.strip())
        for key, _, value in (line.partition(":") for line in text.split("\r\n")[:-1])
    ]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes  # as received
    frames: list[tuple[int, bytes]]

    @property
    def messages(self) -> list[bytes]:
        return [payload for flag, payload in self.frames if not flag & TRAILER]

    @property
    def trailers(self) -> dict[str, str] | None:
        """The trailer frame's fields; None when there is none (trailers-only)."""
        last = [payload for flag, payload in self.frames if flag & TRAILER]
        assert len(last) <= 1 and (not last or self.frames[-1][0] & TRAILER), self.frames
        return dict(trailer_lines(last[0])) if last else None

    def status_of(self) -> tuple[str, str]:
        """grpc-status and grpc-message, wherever they were (headers or trailer frame)."""
        fields = self.trailers if self.trailers is not None else self.headers
        return fields["grpc-status"], fields.get("grpc-message", "")


async def grpc_web_call(
    session: aiohttp.ClientSession,
    url: str,
    variant: Variant,
    body: Any,
    headers: dict[str, str] | None = None,
) -> Reply:
    """POST ``body`` (bytes as they are, or an async iterator of chunks) as ``variant``."""
    sent = {"Content-Type": variant.content_type, "X-Grpc-Web": "1", **(headers or {})}
    async with session.post(url, data=body, headers=sent) as resp:
        raw = await resp.read()
        lower = {name.lower(): value for name, value in resp.headers.items()}
        data = text_decode(raw) if "grpc-web-text" in lower.get("content-type", "") else raw
        return Reply(resp.status, lower, raw, split_frames(data))
