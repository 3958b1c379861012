"""HPACK for a gRPC client: request blocks built by hand, response blocks decoded once.

Requests use literal fields without indexing and without Huffman coding, so
the encoder keeps no state and a method's fixed fields are bytes made once.

The client advertises ``SETTINGS_HEADER_TABLE_SIZE = 0`` and decodes with a
dynamic table of that size (RFC 7541 §4.2, §6.3): an entry a server inserts
is evicted at once (§4.4), a reference to one is a decoding error and so is
a table size update above 0 (both a COMPRESSION_ERROR). That closes the
"HPACK bomb" (one big value inserted, then referenced by a one-byte index
thousands of times) and makes decoding a pure function of the block's bytes,
so decoded blocks are cached by their bytes (``hpack`` decodes Huffman
strings in pure Python, ~45 µs a block; a gRPC server sends the same few
blocks again and again).

The header-list limit is enforced while decoding (``hpack`` counts as it goes
and stops at the first field past it), and a block whose encoded size alone
shows it is over the limit is not decoded at all: without a dynamic table a
field's encoded form is never longer than the 32 + name + value it counts for.
"""

from __future__ import annotations

from hpack import Decoder, OversizedHeaderListError
from hpack.table import HeaderTable

from grpc_bridge.upstream.h2.fields import Block, Header, inspect

__all__ = ["Block", "Header", "HeaderDecoder", "HeaderListTooLarge"]

# Blocks longer than this (custom metadata, long error messages) are rarely repeated.
_CACHE_MAX_BLOCK = 512
_CACHE_MAX_ENTRIES = 1024
#: RFC 7541 appendix A, by index (1-based).
_STATIC = (("", ""), *((n.decode(), v.decode()) for n, v in HeaderTable.STATIC_TABLE))
_cache: dict[bytes, Block] = {}
#: Table size updates (to 0) a block may start with beyond its fields: slack on the bound.
_SLACK = 64


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


def _read_int(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def list_size(block: bytes) -> int:
    """RFC 9113 §6.5.2 size of a block this module made (static indices, plain literals)."""
    size = 0
    pos = 0
    end = len(block)
    while pos < end:
        first = block[pos]
        if first & 0x80:
            index, pos = _read_int(block, pos, 7)
            name, value = _STATIC[index]
            size += len(name) + len(value) + 32
            continue
        index, pos = _read_int(block, pos, 4)
        if index:
            name_length = len(_STATIC[index][0])
        else:
            name_length, pos = _read_int(block, pos, 7)
            pos += name_length
        value_length, pos = _read_int(block, pos, 7)
        pos += value_length
        size += name_length + value_length + 32
    return size


class HeaderListTooLarge(Exception):
    """The block is over the header-list limit: the stream's problem, not the connection's."""


class HeaderDecoder:
    """One connection's decoder (see the module docstring); ``decode`` is cached.

    HPACK errors are connection errors (``hpack.HPACKError``); a block over
    ``max_header_list`` raises :class:`HeaderListTooLarge`, which only costs
    the stream, since without a dynamic table no state is left half-updated.
    """

    __slots__ = ("_decoder", "_limit")

    def __init__(self, max_header_list: int) -> None:
        decoder = Decoder(max_header_list_size=max_header_list)
        decoder.header_table_size = 0
        decoder.max_allowed_table_size = 0
        self._decoder = decoder
        self._limit = max_header_list

    def decode(self, block: bytes) -> Block:
        """Raises ``hpack.HPACKError`` (a connection error) for a bad block."""
        hit = _cache.get(block)
        if hit is not None:
            return hit
        if len(block) > self._limit + _SLACK:
            raise HeaderListTooLarge(f"a {len(block)}-byte header block")
        try:
            fields = self._decoder.decode(block, raw=True)
        except OversizedHeaderListError as exc:
            raise HeaderListTooLarge(str(exc)) from None
        decoded = inspect([(bytes(n), bytes(v)) for n, v in fields])
        if len(block) <= _CACHE_MAX_BLOCK:
            if len(_cache) >= _CACHE_MAX_ENTRIES:
                _cache.clear()
            _cache[block] = decoded
        return decoded
