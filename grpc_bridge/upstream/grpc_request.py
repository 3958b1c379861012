"""A gRPC request as HTTP/2 carries it: the header block's fields and the framed messages.

Everything that does not change per call is encoded once: the fixed fields
per upstream, the ``:path`` per method (:class:`Prepared`). Per call the
block is the pool's prefix, the method's path, the fixed fields,
``grpc-timeout`` and the metadata, joined once.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from grpc_bridge import __version__
from grpc_bridge.errors import UpstreamError
from grpc_bridge.settings import Upstream
from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import hpack_codec
from grpc_bridge.upstream.metadata import Metadata

_USER_AGENT = f"grpc-bridge/{__version__} (native http2)"
#: Messages above this are gzipped on a worker thread: ~1 ms of deflate on the loop at most.
_OFF_LOOP_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Prepared:
    """What one method's calls share: the encoded ``:path`` and the response parser."""

    path: bytes
    parse: Callable[[bytes], Message]


def fixed_fields(compression: str) -> bytes:
    fields = (
        hpack_codec.content_type(b"application/grpc")
        + hpack_codec.literal(b"te", b"trailers")
        + hpack_codec.user_agent(_USER_AGENT)
        + hpack_codec.literal(b"grpc-accept-encoding", b"identity,deflate,gzip")
    )
    if compression == "gzip":
        fields += hpack_codec.literal(b"grpc-encoding", b"gzip")
    return fields


#: The ``grpc-timeout`` field's bytes before its value (the value is at most 9 bytes).
_TIMEOUT_FIELD = hpack_codec.literal(b"grpc-timeout", b"")[:-1]


def grpc_timeout(seconds: float) -> bytes:
    """The ``grpc-timeout`` value: at most 8 digits, rounded up so the upstream never gets more."""
    millis = math.ceil(seconds * 1000)
    if millis < 100_000_000:
        return b"%dm" % max(millis, 1)
    return b"%dS" % math.ceil(seconds)


#: Encoded metadata fields by their entry: most entries of a call are the ones of the
#: call before (x-forwarded-*, a client's fixed headers), and a field's bytes are a
#: pure function of the entry (literals, no dynamic table). Bounded; emptied when full.
_FIELDS: dict[tuple[str, str | bytes], bytes] = {}
_MAX_FIELDS = 512
#: Entries longer than this, name and value (tokens, binary values, a client's long
#: header names), are encoded each time, not kept, as are the ones whose value is new
#: on every call: the memo holds at most ~256 KiB of entries.
_MAX_KEPT_ENTRY = 256
_PER_CALL = frozenset({"x-request-id", "traceparent", "tracestate"})
#: A literal field's bytes up to its value, by name, for the entries encoded on every
#: call (their values are new each time; the name's part never changes).
_NAME_PARTS = {name: hpack_codec.literal(name.encode(), b"")[:-1] for name in _PER_CALL}


def metadata_field(name: str, value: str | bytes) -> bytes:
    """One metadata entry as a literal field (a ``-bin`` value base64, unpadded)."""
    if isinstance(value, bytes):
        data = base64.b64encode(value).rstrip(b"=")
    else:
        data = value.encode("ascii")
    part = _NAME_PARTS.get(name)
    if part is None or len(data) >= 127:
        return hpack_codec.literal(name.encode("ascii"), data)
    # hpack_codec.literal's bytes: a value under 127 bytes has a one-byte length.
    return part + bytes((len(data),)) + data


def metadata_block(metadata: Metadata) -> bytes:
    fields = _FIELDS
    parts = []
    for entry in metadata:
        field = fields.get(entry)
        if field is None:
            field = metadata_field(*entry)
            if len(entry[0]) + len(entry[1]) <= _MAX_KEPT_ENTRY and entry[0] not in _PER_CALL:
                if len(fields) >= _MAX_FIELDS:
                    fields.clear()
                fields[entry] = field
        parts.append(field)
    return b"".join(parts)


def previous_attempts(count: int) -> bytes:
    """A6's ``grpc-previous-rpc-attempts`` field of a retried call."""
    return hpack_codec.literal(b"grpc-previous-rpc-attempts", b"%d" % count)


class RequestEncoder:
    """Header blocks and framed messages for one upstream's calls."""

    __slots__ = ("_fixed", "_gzip", "_max_send")

    def __init__(self, upstream: Upstream) -> None:
        self._fixed = fixed_fields(upstream.compression)
        self._gzip = upstream.compression == "gzip"
        self._max_send = upstream.max_send_message_bytes

    def block(
        self, prefix: bytes, prepared: Prepared, metadata: Metadata, timeout: float | None
    ) -> bytes:
        parts = [prefix, prepared.path, self._fixed]
        if timeout is not None:
            value = grpc_timeout(timeout)
            parts.append(_TIMEOUT_FIELD + bytes((len(value),)) + value)
        if metadata:
            parts.append(metadata_block(metadata))
        return b"".join(parts)

    async def frame(self, message: Message) -> bytes:
        """The 5-byte gRPC prefix and the message; raises UpstreamError when it is too big.

        A large message is compressed on a worker thread (deflate runs at tens
        of MB/s: a 4 MiB message would hold the loop for ~100 ms).
        """
        payload = self._serialized(message)
        if self._gzip:
            if len(payload) > _OFF_LOOP_BYTES:
                loop = asyncio.get_running_loop()
                payload = await loop.run_in_executor(None, gzip.compress, payload, 6)
            else:
                payload = gzip.compress(payload, compresslevel=6)
            return b"\x01" + len(payload).to_bytes(4, "big") + payload
        return b"\x00" + len(payload).to_bytes(4, "big") + payload

    def frame_now(self, message: Message) -> bytes | None:
        """:meth:`frame` without a coroutine when nothing is compressed (the usual case:
        a unary call awaits one layer fewer); None: call :meth:`frame`."""
        if self._gzip:
            return None
        payload = self._serialized(message)
        return b"\x00" + len(payload).to_bytes(4, "big") + payload

    def _serialized(self, message: Message) -> bytes:
        payload = message.SerializeToString()
        if len(payload) > self._max_send:
            raise UpstreamError(
                Code.RESOURCE_EXHAUSTED,
                f"request message of {len(payload)} bytes is over "
                f"max_send_message_bytes ({self._max_send})",
            )
        return payload
