"""Percent-decoding of path variables, as HttpRule says (google/api/http.proto).

- A single-segment variable (``{var}``, ``{var=*}``) is decoded entirely:
  ``a%2Fb`` is ``a/b``.
- A multi-segment variable (``{var=**}``, ``{var=shelves/*}``) keeps the RFC
  6570 reserved characters encoded, ``%2F`` among them, so a value can still
  be told apart from the path separators around it: ``a%2Fb/c`` stays
  ``a%2Fb/c`` while ``a%20b`` becomes ``a b``. This is Envoy's and
  grpc-gateway's ``UnescapingModeAllExceptReserved`` (http.proto's
  ``Http.fully_decode_reserved_expansion`` defaults to false).

The decoded bytes must be UTF-8 and every ``%`` must start a ``%XX`` escape;
anything else is :class:`ValueError` naming the problem.

:func:`decode_query` applies the same strictness to a raw query string
(form encoding: ``+`` is a space), where yarl would keep ``%zz`` as it is and
turn ``%FF`` into U+FFFD.
"""

from __future__ import annotations

import re

__all__ = ["RESERVED", "decode_lenient", "decode_path_value", "decode_query"]

#: RFC 6570 §1.5 reserved = gen-delims / sub-delims, as bytes.
RESERVED = frozenset(b":/?#[]@!$&'()*+,;=")

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_STRAY = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_path_value(raw: str, *, single: bool) -> str:
    """Decode one captured variable; ``single`` for one-segment variables."""
    if "%" not in raw:
        return raw
    stray = _STRAY.search(raw)
    if stray is not None:
        raise ValueError(
            f"malformed percent-encoding at {raw[stray.start() : stray.start() + 3]!r}"
        )
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(raw):
        out += raw[pos : match.start()].encode()
        byte = int(match.group(1), 16)
        if single or byte not in RESERVED:
            out.append(byte)
        else:
            out += match.group(0).encode()
        pos = match.end()
    out += raw[pos:].encode()
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"percent-encoded bytes that are not UTF-8 ({exc.reason})") from exc


def decode_lenient(raw: str) -> str:
    """Everything decoded, bad escapes and bytes kept as they are: for comparing literals."""
    if "%" not in raw:
        return raw
    try:
        return decode_path_value(raw, single=True)
    except ValueError:
        return raw


def decode_query(raw: str) -> list[tuple[str, str]]:
    """``a=1&b=x+y&a=2`` -> ``[("a", "1"), ("b", "x y"), ("a", "2")]``, strictly.

    Like ``request.query`` otherwise: order and repeated keys kept, empty
    pairs skipped, a key without ``=`` has the value ``""``. A malformed
    escape or non-UTF-8 bytes is :class:`ValueError` naming the parameter.
    """
    items: list[tuple[str, str]] = []
    for pair in raw.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        try:
            name = decode_path_value(key.replace("+", " "), single=True)
        except ValueError as exc:
            raise ValueError(f"query parameter name {key!r}: {exc}") from exc
        try:
            text = decode_path_value(value.replace("+", " "), single=True)
        except ValueError as exc:
            raise ValueError(f'query parameter "{name}": {exc}') from exc
        items.append((name, text))
    return items
