"""gRPC-Web's wire format, apart from any I/O (grpc/grpc doc/PROTOCOL-WEB.md).

- A frame is a flag byte, a 4-byte big-endian length and that many bytes:
  flag ``0x00`` a message, ``0x01`` a compressed message (``grpc-encoding``),
  ``0x80`` the trailer frame, whose payload is lower-case ``key: value\\r\\n``
  lines and which is the last frame of a response.
- ``grpc-message`` is percent-encoded as gRPC does (PROTOCOL-HTTP2.md: every
  byte of its UTF-8 outside printable ASCII, and ``%``, as ``%XX``); binary
  (``-bin``) values are base64.
- Text mode (``application/grpc-web-text``) is base64 of the same bytes: a
  request is decoded in 4-character groups as it arrives (each group may end
  in padding: clients encode each chunk they flush on its own), a response
  frame is encoded on its own.

:class:`RequestFrames` reads a request's one message frame from bytes fed as
they arrive, bounded as they arrive; :class:`TextDecoder` undoes text mode
before it; :func:`message_of_body` puts them together for a body read whole,
and a compressed message (flag 0x01) is inflated per ``grpc-encoding``
(gzip, deflate: grpc's own), bounded like the body. Each raises a
:class:`~grpc_bridge.errors.BridgeError` naming what is wrong with the body:

    InvalidArgument            a malformed or truncated frame, a second frame
    ├── BadBase64              400: a text body that is not base64
    PayloadTooLarge            a message (declared or inflated) over the limit
    GrpcWebUnimplemented       a message coding not served (and client streaming)
    MalformedCompression       INTERNAL: flag 0x01 with no coding named
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from grpc_bridge.codec.message import JSON_CODEC, PROTO_CODEC, Codec
from grpc_bridge.errors import BridgeError, InvalidArgument, shown
from grpc_bridge.pipeline.inflate import SUPPORTED as INFLATABLE
from grpc_bridge.pipeline.inflate import inflate_message, too_large
from grpc_bridge.status import Code, utf8_safe
from grpc_bridge.upstream.metadata import prefixed_headers

MESSAGE = 0x00
COMPRESSED = 0x01
TRAILER = 0x80
_HEAD = struct.Struct(">BI")
HEAD_SIZE = _HEAD.size

#: Bytes a grpc-message keeps as they are: printable ASCII but ``%`` (PROTOCOL-HTTP2.md).
_PLAIN = frozenset(range(0x20, 0x7F)) - {ord("%")}
_ESCAPES = tuple(f"%{b:02X}" if b not in _PLAIN else chr(b) for b in range(256))


class GrpcWebUnimplemented(BridgeError):
    """A method gRPC-Web cannot call (client and bidi streaming), or a message coding not served."""

    code = Code.UNIMPLEMENTED
    reject_reason = "bad_request"


class MalformedCompression(BridgeError):
    """A frame flagged compressed with no coding named: INTERNAL, as gRPC answers it."""

    code = Code.INTERNAL
    reject_reason = "malformed_request"


class BadBase64(InvalidArgument):
    """A text-mode body that is not base64: 400, as Envoy's grpc_web filter answers it."""

    http_status_override = 400
    reject_reason = "malformed_request"


# -- the forms of a request and its answer ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """How a response is written: its Content-Type, base64 text or not, and the codec of
    its messages (codec/message.py: JSON, or protobuf bytes passed through)."""

    content_type: str
    text: bool
    codec: Codec

    def encode(self, data: bytes) -> bytes:
        """A frame as it goes on the wire (text mode: base64 of it alone)."""
        return binascii.b2a_base64(data, newline=False) if self.text else data


BINARY = Answer("application/grpc-web+proto", text=False, codec=PROTO_CODEC)
TEXT = Answer("application/grpc-web-text+proto", text=True, codec=PROTO_CODEC)
JSON = Answer("application/grpc-web+json", text=False, codec=JSON_CODEC)
_TEXT_TYPES = ("application/grpc-web-text", "application/grpc-web-text+proto")


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request asked for: its body in text mode or not, and the answer's form."""

    text_request: bool
    answer: Answer


#: Content-Type (media type, lower-case) → the request's text mode and the codec its
#: subtype names (none: protobuf).
_REQUESTS = {
    "application/grpc-web": (False, PROTO_CODEC),
    "application/grpc-web+proto": (False, PROTO_CODEC),
    "application/grpc-web+json": (False, JSON_CODEC),
    "application/grpc-web-text": (True, PROTO_CODEC),
    "application/grpc-web-text+proto": (True, PROTO_CODEC),
}
_ASKED = {
    (text, codec, text_accept): Asked(
        text, JSON if codec is JSON_CODEC else TEXT if text or text_accept else BINARY
    )
    for text, codec in _REQUESTS.values()
    for text_accept in (False, True)
}


def _media_type(value: str) -> str:
    return value.partition(";")[0].strip().lower()


def asked_by(content_type: str, accept: str | None) -> Asked | None:
    """The form a request asks for; None for an ``application/grpc-web`` subtype not served."""
    kind = _REQUESTS.get(_media_type(content_type))
    if kind is None:
        return None
    text_accept = accept is not None and _media_type(accept) in _TEXT_TYPES
    return _ASKED[(*kind, text_accept)]


#: The Content-Types a request may have, bare.
REQUEST_TYPES = tuple(_REQUESTS)


def frame(payload: bytes, flag: int = MESSAGE) -> bytes:
    return _HEAD.pack(flag, len(payload)) + payload


def framed_with(payload: bytes, after: bytes) -> bytes:
    """``frame(payload) + after`` with the payload copied once, not twice (a unary answer's
    message frame and its trailer frame, in binary mode)."""
    return b"".join((_HEAD.pack(MESSAGE, len(payload)), payload, after))


def percent_encode(message: str) -> str:
    """``grpc-message``'s encoding of ``message``."""
    if message.isascii() and "%" not in message and message.isprintable():
        return message
    return "".join(_ESCAPES[b] for b in utf8_safe(message).encode("utf-8"))


def status_fields(code: int, message: str, details_bin: bytes | None) -> list[tuple[str, str]]:
    """``grpc-status``, ``grpc-message`` (when there is one), ``grpc-status-details-bin``."""
    fields = [("grpc-status", str(int(code)))]
    if message:
        fields.append(("grpc-message", percent_encode(message)))
    if details_bin is not None:
        fields.append(
            ("grpc-status-details-bin", binascii.b2a_base64(details_bin, newline=False).decode())
        )
    return fields


def trailer_frame(
    code: int,
    message: str,
    details_bin: bytes | None,
    trailing: Iterable[tuple[str, str | bytes]],
) -> bytes:
    """The last frame of a response: the status, then the upstream's trailing metadata.

    The metadata goes through the same gate as response headers
    (upstream/metadata.py): ``grpc-*`` entries are the status's own, and a
    key or value that could not be a header line is left out.
    """
    lines = [
        *status_fields(code, message, details_bin),
        *prefixed_headers((("", tuple(trailing)),), in_head=False),
    ]
    block = "".join(f"{key}: {value}\r\n" for key, value in lines).encode("ascii")
    return frame(block, TRAILER)


#: Padded base64 pieces a text body may hold: clients pad once per flush, a few per
#: request; each costs a decode call, so a body of nothing but padding is refused early.
MAX_PADDED_PIECES = 1024


class TextDecoder:
    """Base64 text in, bytes out, a 4-character group at a time as the text arrives."""

    __slots__ = ("_carry", "_padded")

    def __init__(self) -> None:
        self._carry = b""
        self._padded = 0

    def feed(self, data: bytes) -> bytes:
        data = self._carry + data if self._carry else data
        whole = len(data) - len(data) % 4
        self._carry = data[whole:]
        if not whole:
            return b""
        text = data[:whole]
        if b"=" not in text:
            return _decode(text)
        # Padding ends a group, not the body: decode up to each padded group's end.
        out = []
        start = 0
        while (pad := text.find(b"=", start)) != -1:
            self._padded += 1
            if self._padded > MAX_PADDED_PIECES:
                raise BadBase64(
                    f"malformed gRPC-Web text body: more than {MAX_PADDED_PIECES} "
                    "separately padded base64 pieces"
                )
            end = pad - pad % 4 + 4
            out.append(_decode(text[start:end]))
            start = end
        out.append(_decode(text[start:]))
        return b"".join(out)

    def finish(self) -> None:
        if self._carry:
            raise BadBase64(
                f"malformed gRPC-Web text body: it ends with {len(self._carry)} base64 "
                "character(s) of an incomplete 4-character group"
            )


def _decode(text: bytes) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as exc:
        raise BadBase64(f"malformed gRPC-Web text body: not base64 ({exc})") from exc


class RequestFrames:
    """A request body's one message frame, from its bytes fed in order.

    The length a frame declares is checked against ``limit`` as soon as its
    head is in, so an oversize message is refused before its bytes arrive;
    anything after the frame is refused as it arrives (gRPC-Web requests
    carry exactly one message).
    """

    __slots__ = ("_buffer", "_limit", "_need", "flag")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # The first chunk as it came (usually the whole body): copied only if more follow.
        self._buffer: bytes | bytearray = b""
        #: Bytes the frame has in all, once its head is in.
        self._need: int | None = None
        self.flag = MESSAGE

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        if not buffer:
            buffer = self._buffer = data
        elif data:
            if isinstance(buffer, bytes):
                buffer = self._buffer = bytearray(buffer)
            buffer += data
        need = self._need
        if need is None:
            if len(buffer) < HEAD_SIZE:
                return
            flag, length = _HEAD.unpack_from(buffer)
            if flag & TRAILER or flag & ~(COMPRESSED | TRAILER):
                raise InvalidArgument(
                    f"malformed gRPC-Web request: frame flag 0x{flag:02x} "
                    "(a request frame is a message: 0x00, or 0x01 compressed)",
                    reason="malformed_request",
                )
            if length > self._limit:
                raise too_large(self._limit)
            self.flag = flag
            need = self._need = HEAD_SIZE + length
        if len(buffer) > need:
            raise InvalidArgument(
                f"malformed gRPC-Web request: {len(buffer) - need} byte(s) after its message "
                "frame (gRPC-Web calls send one message)",
                reason="malformed_request",
            )

    def message(self) -> bytes:
        """The message, once the body ended; a missing or truncated frame is refused."""
        need = self._need
        got = len(self._buffer)
        if need is None:
            raise InvalidArgument(
                "malformed gRPC-Web request: "
                + (
                    "the body has no message frame"
                    if not got
                    else f"the body ends inside a frame head ({got} of {HEAD_SIZE} bytes)"
                ),
                reason="malformed_request",
            )
        if got < need:
            raise InvalidArgument(
                "malformed gRPC-Web request: truncated frame: the body ends after "
                f"{got - HEAD_SIZE} of the {need - HEAD_SIZE} bytes its message frame declares",
                reason="malformed_request",
            )
        return bytes(self._buffer[HEAD_SIZE:])


def plain_message(body: bytes, limit: int) -> bytes | None:
    """The message of a binary body that is one uncompressed frame within ``limit``, exactly
    (what :func:`message_of_body` answers for it, without its coroutines); None: any other."""
    if len(body) < HEAD_SIZE:
        return None
    flag, length = _HEAD.unpack_from(body)
    if flag != MESSAGE or length > limit or length != len(body) - HEAD_SIZE:
        return None
    return body[HEAD_SIZE:]


async def message_of_body(body: bytes, text: bool, grpc_encoding: str | None, limit: int) -> bytes:
    """The one message of a request body read whole (by an edge that bounded it already)."""
    frames = RequestFrames(limit)
    if text:
        decoder = TextDecoder()
        frames.feed(decoder.feed(body))
        decoder.finish()
    else:
        frames.feed(body)
    return await message_of_frames(frames, grpc_encoding, limit)


async def message_of_frames(frames: RequestFrames, grpc_encoding: str | None, limit: int) -> bytes:
    """The message of a body fed to ``frames`` whole; inflated if its frame is compressed."""
    payload = frames.message()
    if frames.flag & COMPRESSED:
        payload = await _inflate(payload, grpc_encoding, limit)
    return payload


async def _inflate(payload: bytes, coding: str | None, limit: int) -> bytes:
    """A compressed message (frame flag 0x01) inflated, refused at its first byte past ``limit``."""
    name = (coding or "identity").strip().lower()
    if name == "identity":
        # gRPC: a compressed flag without a message coding is a protocol error.
        raise MalformedCompression(
            "malformed gRPC-Web request: its message frame is compressed (flag 0x01) but "
            "grpc-encoding names no coding"
        )
    if name not in INFLATABLE:
        raise GrpcWebUnimplemented(
            f"grpc-encoding {shown(name)} is not supported: send "
            f"{', '.join(INFLATABLE)} or identity"
        )
    return await inflate_message(payload, name, limit)


async def frame_message(flag: int, payload: bytes, grpc_encoding: str | None, limit: int) -> bytes:
    """One message frame's message (of a request stream), inflated if it is compressed."""
    if flag & COMPRESSED:
        return await _inflate(payload, grpc_encoding, limit)
    return payload
