"""HPACK for a gRPC client: request blocks built by hand, response blocks decoded once.

Requests use literal fields without indexing and without Huffman coding, so
the encoder keeps no state and a method's fixed fields are bytes made once.

The client advertises ``SETTINGS_HEADER_TABLE_SIZE = 0``, so servers keep
their dynamic table empty; then a block's meaning depends on its bytes alone
and decoded blocks are cached by their bytes (``hpack`` decodes Huffman
strings in pure Python, ~45 µs a block; a gRPC server sends the same few
blocks again and again). Not every server sends the table size update RFC
7541 §4.2 asks for (grpc-core doesn't), so the decoder keeps accepting the
default size and the cache checks the table's state instead of trusting it.
"""

from __future__ import annotations

from typing import NamedTuple

from hpack import Decoder

Header = tuple[str, str]

# Blocks longer than this (custom metadata, long error messages) are rarely repeated.
_CACHE_MAX_BLOCK = 512
_CACHE_MAX_ENTRIES = 1024
_cache: dict[tuple[int, bytes], Block] = {}


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    return _integer(len(data), 7, 0) + data


def literal(name: bytes, value: bytes) -> bytes:
    """A literal field without indexing, with a new (lower-case) name."""
    return b"\x00" + _string(name) + _string(value)


def literal_indexed_name(index: int, value: bytes) -> bytes:
    """A literal field without indexing whose name is static table entry ``index``."""
    return _integer(index, 4, 0) + _string(value)


def indexed(index: int) -> bytes:
    """A field that is entirely static table entry ``index``."""
    return _integer(index, 7, 0x80)


# Static table indices (RFC 7541 appendix A).
METHOD_POST = indexed(3)
SCHEME_HTTP = indexed(6)
SCHEME_HTTPS = indexed(7)
_AUTHORITY = 1
_PATH = 4
_CONTENT_TYPE = 31
_USER_AGENT = 58


def path(value: str) -> bytes:
    return literal_indexed_name(_PATH, value.encode("ascii"))


def authority(value: str) -> bytes:
    return literal_indexed_name(_AUTHORITY, value.encode("idna") if value else b"")


def content_type(value: bytes) -> bytes:
    return literal_indexed_name(_CONTENT_TYPE, value)


def user_agent(value: str) -> bytes:
    return literal_indexed_name(_USER_AGENT, value.encode("ascii"))


class Block(NamedTuple):
    """A decoded header block."""

    headers: tuple[Header, ...]
    #: RFC 9113 §6.5.2 size: names and values plus 32 per field.
    size: int
    #: An empty or upper-case name (RFC 9113 §8.2.1): the response is malformed.
    malformed: bool


def _block(fields: list[tuple[bytes, bytes]]) -> Block:
    headers = []
    size = 0
    malformed = False
    for raw_name, raw_value in fields:
        name = raw_name.decode("latin-1")
        # HTTP/2 allows any bytes in a value; gRPC's are ASCII. Never fail on them.
        value = raw_value.decode("utf-8", "replace")
        if not name or name != name.lower():
            malformed = True
        size += len(raw_name) + len(raw_value) + 32
        headers.append((name, value))
    return Block(tuple(headers), size, malformed)


class HeaderDecoder:
    """One connection's decoder, with blocks cached while its dynamic table stays empty.

    With the table empty, decoding a block is a pure function of the table's
    size limit and the block's bytes; a block that left the table empty is
    cached under both, so any connection in the same state reuses it.

    Only HPACK errors are connection errors: a block too large or malformed
    for the bridge is the stream's problem (the caller resets that stream), so
    the decoder itself takes any size and any bytes and keeps the table in step.
    """

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = Decoder(max_header_list_size=2**31)

    def decode(self, block: bytes) -> Block:
        """Raises ``hpack.HPACKError`` (a connection error) for a bad block."""
        table = self._decoder.header_table
        empty = not table.dynamic_entries
        key = (table.maxsize, block)
        if empty:
            hit = _cache.get(key)
            if hit is not None:
                return hit
        fields = self._decoder.decode(block, raw=True)
        decoded = _block([(bytes(n), bytes(v)) for n, v in fields])
        if empty and not table.dynamic_entries and len(block) <= _CACHE_MAX_BLOCK:
            if len(_cache) >= _CACHE_MAX_ENTRIES:
                _cache.clear()
            _cache[key] = decoded
        return decoded
