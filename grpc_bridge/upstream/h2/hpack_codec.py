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

from hpack import Decoder

Header = tuple[str, str]

# Blocks longer than this (custom metadata, long error messages) are rarely repeated.
_CACHE_MAX_BLOCK = 512
_CACHE_MAX_ENTRIES = 1024
_cache: dict[tuple[int, bytes], tuple[Header, ...]] = {}


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


class HeaderDecoder:
    """One connection's decoder, with blocks cached while its dynamic table stays empty.

    With the table empty, decoding a block is a pure function of the table's
    size limit and the block's bytes; a block that left the table empty is
    cached under both, so any connection in the same state reuses it.
    """

    __slots__ = ("_decoder",)

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = Decoder(max_header_list_size=max_header_list_size)

    def decode(self, block: bytes) -> tuple[Header, ...]:
        """Raises ``hpack.HPACKError`` (a connection error) for a bad block."""
        table = self._decoder.header_table
        empty = not table.dynamic_entries
        key = (table.maxsize, block)
        if empty:
            hit = _cache.get(key)
            if hit is not None:
                return hit
        headers = tuple((str(n), str(v)) for n, v in self._decoder.decode(block))
        if empty and not table.dynamic_entries and len(block) <= _CACHE_MAX_BLOCK:
            if len(_cache) >= _CACHE_MAX_ENTRIES:
                _cache.clear()
            _cache[key] = headers
        return headers
