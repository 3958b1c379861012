"""Leaf converters of the fast decoder: scalars, map keys and the well-known types' JSON forms.

Each returns the value to store (or fills one well-known-type message) exactly
as ``json_format`` would for the inputs it accepts, and raises
:class:`Fallback` for anything else — the reference path then decides.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from grpc_bridge.codec.validate import bytes_problem
from grpc_bridge.codec.validate_plans import INT_RANGES

__all__ = ["Convert", "Fallback", "map_key_converter", "scalar_converter"]

_FD = FieldDescriptor
Convert = Callable[[Any], Any]
#: (JSON value, message to fill, JSON depth of the value) → None; raises Fallback.
Filler = Callable[[Any, Any, int], None]


class Fallback(Exception):
    """The fast path can't vouch for this input; the reference path decides."""


# Integers as text: exactly the forms json_format's int() and the validator agree on.
_INT_TEXT = re.compile(r"-?(?:0|[1-9][0-9]{0,19})")
_MAP_INT_KEY = re.compile(r"[-+]?[0-9]{1,20}")
_FLOAT_SPECIALS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
# Above this json_format refuses a float32 number (the validator hands it over as text).
_FLOAT32_MAX = 3.4028234663852886e38


# --- scalar converters: return the value to store, or raise Fallback ----------------------------


def _int_converter(lo: int, hi: int) -> Convert:
    def convert(v: Any) -> Any:
        if type(v) is int:
            if lo <= v <= hi:
                return v
        elif type(v) is str and _INT_TEXT.fullmatch(v) is not None:
            number = int(v)
            if lo <= number <= hi:
                return number
        raise Fallback

    return convert


def _double(v: Any) -> float:
    if type(v) is float:
        if v - v == 0:  # finite: a NaN or infinity as a number is an error
            return v
    elif type(v) is int:
        return float(v)  # OverflowError for huge ints: the caller falls back
    elif type(v) is str and v in _FLOAT_SPECIALS:
        return _FLOAT_SPECIALS[v]
    raise Fallback


def _float32(v: Any) -> float:
    real = _double(v)
    if -_FLOAT32_MAX <= real <= _FLOAT32_MAX or real != real or type(v) is str:
        return real
    raise Fallback


def _bool(v: Any) -> bool:
    if type(v) is bool:
        return v
    raise Fallback


def _string(v: Any) -> str:
    if type(v) is str:
        return v  # lone surrogates make the setter raise: the caller falls back
    raise Fallback


def _bytes(v: Any) -> bytes:
    if type(v) is str and bytes_problem(v) is None:
        encoded = v.replace("\r", "").replace("\n", "").encode()
        # json_format's own decoding, so odd-but-valid inputs decode the same.
        return base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    raise Fallback


def _enum_converter(enum: Any) -> Convert:
    by_name = {value.name: value.number for value in enum.values}
    closed = bool(enum.is_closed)
    numbers = frozenset(by_name.values())

    def convert(v: Any) -> Any:
        if type(v) is str:
            number = by_name.get(v)
            if number is not None:
                return number
        elif type(v) is int and -(2**31) <= v <= 2**31 - 1 and (not closed or v in numbers):
            return v
        raise Fallback

    return convert


def scalar_converter(field: FieldDescriptor) -> Convert:
    type_ = field.type
    if type_ in INT_RANGES:
        return _int_converter(*INT_RANGES[type_])
    if type_ == _FD.TYPE_DOUBLE:
        return _double
    if type_ == _FD.TYPE_FLOAT:
        return _float32
    if type_ == _FD.TYPE_BOOL:
        return _bool
    if type_ == _FD.TYPE_BYTES:
        return _bytes
    if type_ == _FD.TYPE_ENUM:
        return _enum_converter(field.enum_type)
    return _string


def map_key_converter(field: FieldDescriptor) -> Convert:
    type_ = field.type
    if type_ == _FD.TYPE_BOOL:
        keys = {"true": True, "false": False}

        def bool_key(k: str) -> bool:
            key = keys.get(k)
            if key is None:
                raise Fallback
            return key

        return bool_key
    if type_ in INT_RANGES:
        lo, hi = INT_RANGES[type_]

        def int_key(k: str) -> int:
            if _MAP_INT_KEY.fullmatch(k) is not None:
                number = int(k)
                if lo <= number <= hi:
                    return number
            raise Fallback

        return int_key
    return _string


def wrapper(convert: Convert) -> Filler:
    def fill(v: Any, msg: Any, depth: int) -> None:
        msg.value = convert(v)

    return fill


def from_json_string(v: Any, msg: Any, depth: int) -> None:
    if type(v) is not str:
        raise Fallback
    msg.FromJsonString(v)  # ValueError on bad text: the caller falls back


# The everyday RFC 3339 form, UTC; anything else goes through FromJsonString.
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


def timestamp_parts(v: Any) -> tuple[int, int] | None:
    """(seconds, nanos) of the everyday RFC 3339 form, as FromJsonString computes them.

    None for any other form (FromJsonString decides); Fallback for an impossible time.
    """
    match = _TIMESTAMP.fullmatch(v) if type(v) is str else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
        raise Fallback
    # date() refuses year 0 and impossible days, as strptime does.
    days = datetime.date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    seconds = days * 86400 + int(hour) * 3600 + int(minute) * 60 + int(second)
    # The same float arithmetic as FromJsonString, for the same rounding.
    return seconds, round(float("0." + fraction) * 1e9) if fraction else 0


def timestamp(v: Any, msg: Any, depth: int) -> None:
    """Timestamp.FromJsonString's result without its strptime (a tenth of the cost)."""
    parts = timestamp_parts(v)
    if parts is None:
        return from_json_string(v, msg, depth)
    msg.seconds, msg.nanos = parts
    return None


def empty_any(v: Any, msg: Any, depth: int) -> None:
    if type(v) is not dict or v:
        raise Fallback  # a packed message: json_format resolves and packs it
