"""Checks a parsed JSON value against a message type before json_format sees it.

json_format alone accepts inputs the proto3 JSON mapping forbids (a string for
a message field, ``true`` for an enum, ``"1_000"`` for an integer, a float32
out of range, one field under both its names); the walk below, led by the
plans :mod:`.validate_plans` compiles once per message type, catches them with
an error that names the field path.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from grpc_bridge.codec.validate_plans import (
    ANY,
    BOOL,
    BYTES,
    ENUM,
    FLOAT,
    INT,
    LIST_VALUE,
    MESSAGE,
    REPEATED,
    SINGLE,
    SKIP,
    STRING,
    STRING_WKT,
    STRUCT,
    VALUE,
    Check,
    FieldPlan,
    MessagePlan,
    Plans,
)
from grpc_bridge.errors import InvalidArgument

__all__ = ["FLOAT32_LIMIT", "Plans", "Validator", "bytes_problem"]

# A path is built only when a container is pushed or an error is raised:
# (parent, segment), segment a field key (str), an index (int) or a map key ((str,)).
_Path = tuple[Any, Any] | None

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_MAP_INT_KEY = re.compile(r"[-+]?[0-9]{1,20}")
_BASE64_BODY = re.compile(r"[A-Za-z0-9+/_-]*")
_FLOAT_SPECIALS = frozenset({"NaN", "Infinity", "-Infinity"})
# Numbers at or past this round to infinity as float32 (Go's ParseFloat(s, 32) rejects them).
FLOAT32_LIMIT = 3.4028235677973366e38
# json_format refuses float32 numbers above FLT_MAX, though shortest-form printing
# makes FLT_MAX itself 3.4028235e+38: such numbers are handed over as strings.
_JSON_FORMAT_FLOAT32_MAX = 3.4028234663852886e38


class _Walk:
    """State of one validation: message objects still to check, values to hand over as text."""

    __slots__ = ("drops", "fixups", "stack")

    def __init__(self) -> None:
        self.stack: list[tuple[dict[str, Any], MessagePlan, _Path]] = []
        self.fixups: list[tuple[Any, Any]] = []
        #: ``null`` given for a repeated or map field: removed before json_format sees it.
        self.drops: list[tuple[dict[str, Any], str]] = []


class Validator:
    __slots__ = ("_ignore_unknown", "_plans")

    def __init__(self, plans: Plans, *, ignore_unknown: bool) -> None:
        self._plans = plans
        self._ignore_unknown = ignore_unknown

    def validate(self, value: object, root: Check) -> object:
        """Raise InvalidArgument for the first bad value; return what to give json_format.

        That is ``value`` itself, with the rare float32 number json_format would
        wrongly refuse replaced by its text, in place.
        """
        walk = _Walk()
        if self._check(value, root, None, None, walk):
            return repr(value)
        while walk.stack:
            self._check_object(*walk.stack.pop(), walk)
        for container, key in walk.fixups:
            container[key] = repr(container[key])
        for obj, key in walk.drops:
            del obj[key]
        return value

    def _check_object(
        self,
        obj: dict[str, Any],
        plan: MessagePlan,
        path: _Path,
        walk: _Walk,
    ) -> None:
        fields = plan.fields
        # proto name -> key as given; "\0" + oneof name -> key of its member set first
        seen: dict[str, str] = {}
        for key, item in obj.items():
            field = fields.get(key)
            if field is None:
                if self._ignore_unknown or (plan.extendable and key.startswith("[")):
                    continue  # extensions are json_format's business
                raise InvalidArgument(f'unknown field "{_render((path, key))}" in {plan.full_name}')
            shape = field.shape
            if shape == SKIP:
                continue
            first = seen.get(field.name)
            if first is not None:
                raise InvalidArgument(
                    f'field "{_render((path, key))}" is given twice (also as "{first}")'
                )
            seen[field.name] = key
            if item is None:
                if shape != SINGLE:
                    # proto3 JSON: null is the default, an empty list or map. json_format
                    # agrees except for repeated Value / NullValue, where it fails with
                    # an internal error; the compiled decoder leaves the field empty.
                    walk.drops.append((obj, key))
                continue
            if field.oneof is not None:
                other = seen.get("\0" + field.oneof)
                if other is not None:
                    raise InvalidArgument(
                        f'fields "{_render((path, other))}" and "{_render((path, key))}" both '
                        f'belong to oneof "{field.oneof}"; set at most one'
                    )
                seen["\0" + field.oneof] = key
            if shape == SINGLE:
                if self._check(item, field.check, path, key, walk):
                    walk.fixups.append((obj, key))
            elif shape == REPEATED:
                self._check_list(item, field.check, (path, key), walk)
            else:
                self._check_map(item, field, (path, key), walk)

    def _check_list(self, items: object, check: Check, path: _Path, walk: _Walk) -> None:
        if not isinstance(items, list | tuple):
            raise _invalid(path, f"expected an array, got {_describe(items)}")
        nullable = check.kind == VALUE
        for index, item in enumerate(items):
            if item is None and not nullable:
                raise _invalid((path, index), "null is not allowed in an array")
            if self._check(item, check, path, index, walk):
                walk.fixups.append((items, index))

    def _check_map(self, items: object, field: FieldPlan, path: _Path, walk: _Walk) -> None:
        if not isinstance(items, dict):
            raise _invalid(path, f"expected a JSON object (a map), got {_describe(items)}")
        key_check = field.key_check
        check = field.check
        nullable = check.kind == VALUE
        for key, item in items.items():
            if key_check is not None and key_check.kind != STRING:
                problem = _map_key_problem(key, key_check)
                if problem is not None:
                    raise _invalid((path, (key,)), problem)
            if item is None and not nullable:
                raise _invalid((path, (key,)), "null is not allowed as a map value")
            if self._check(item, check, path, (key,), walk):
                walk.fixups.append((items, key))

    def _check(self, value: object, check: Check, parent: _Path, segment: Any, walk: _Walk) -> bool:
        """Raise for a bad value; True when json_format must get it as text instead."""
        kind = check.kind
        problem: str | None = None
        if kind == INT:
            problem = _int_problem(value, check)
        elif kind == STRING:
            if type(value) is not str:
                problem = f"expected a string, got {_describe(value)}"
        elif kind == MESSAGE:
            if isinstance(value, dict):
                walk.stack.append((value, check.plan, _join(parent, segment)))
                return False
            problem = f"expected a JSON object for {check.type_name}, got {_describe(value)}"
        elif kind == FLOAT:
            problem = _float_problem(value, check)
            if problem is None and check.type_name == "float" and type(value) is float:
                return abs(value) > _JSON_FORMAT_FLOAT32_MAX
        elif kind == BOOL:
            if type(value) is not bool:
                problem = f"expected true or false, got {_describe(value)}"
        elif kind == ENUM:
            problem = self._enum_problem(value, check)
        elif kind == BYTES:
            problem = bytes_problem(value)
        elif kind == STRING_WKT:
            if type(value) is not str:
                problem = f"expected a string for {check.type_name}, got {_describe(value)}"
        elif kind == STRUCT:
            if not isinstance(value, dict):
                problem = f"expected a JSON object for {check.type_name}, got {_describe(value)}"
        elif kind == LIST_VALUE:
            if not isinstance(value, list | tuple):
                problem = f"expected an array for {check.type_name}, got {_describe(value)}"
        elif kind == ANY:
            self._check_any(value, _join(parent, segment), walk)
        if problem is not None:
            raise _invalid(_join(parent, segment), problem)
        return False

    def _enum_problem(self, value: object, check: Check) -> str | None:
        if type(value) is str:
            if value in check.names or self._ignore_unknown:
                return None  # json_format skips unknown names when told to ignore unknowns
            return f"unknown enum value {_describe(value)} for {check.type_name}"
        if type(value) is int:
            if check.lo <= value <= check.hi:
                return None  # proto3 enums are open: unknown numbers are kept
            return f"{value} is out of range for enum {check.type_name}"
        return f"expected an enum name or number for {check.type_name}, got {_describe(value)}"

    def _check_any(self, value: object, path: _Path, walk: _Walk) -> None:
        if not isinstance(value, dict):
            raise _invalid(
                path, f"expected a JSON object for google.protobuf.Any, got {_describe(value)}"
            )
        if not value:
            return  # the empty Any
        type_url = value.get("@type")
        if not isinstance(type_url, str):
            raise _invalid(
                path, 'missing "@type"' if type_url is None else '"@type" must be a string'
            )
        inner = self._plans.check_for_any(type_url)
        if inner is None:
            raise _invalid(path, f'unknown type "{type_url}" in "@type"')
        if inner.kind == MESSAGE:
            walk.stack.append((value, inner.plan, path))
            return
        # Well-known types and wrappers carry their JSON form in "value".
        if "value" not in value:
            raise _invalid(path, f'missing "value" for {inner.type_name}')
        if not self._ignore_unknown:
            for key in value:
                if key not in ("@type", "value"):
                    raise InvalidArgument(
                        f'unknown field "{_render((path, key))}" in {inner.type_name}'
                    )
        if self._check(value["value"], inner, path, "value", walk):
            walk.fixups.append((value, "value"))


def _int_problem(value: object, check: Check) -> str | None:
    number: int
    if type(value) is int:
        number = value
    elif type(value) is str:
        match = _JSON_NUMBER.fullmatch(value)
        if match is None:
            return f"expected an integer, got {_describe(value)}"
        if match.group(1) is None and match.group(2) is None:
            if len(value) > 21:  # longer than any 64-bit number; spares int() a huge string
                return f"{_describe(value)} is out of range for {check.type_name}"
            number = int(value)
        else:  # "1e3" or "2.0": accepted when integral, as protojson does
            real = float(value)
            if real in (float("inf"), float("-inf")):
                return f"{_describe(value)} is out of range for {check.type_name}"
            if not real.is_integer():
                return f"expected an integer, got {_describe(value)}"
            number = int(real)
    elif type(value) is float and value.is_integer():
        number = int(value)
    else:
        return f"expected an integer, got {_describe(value)}"
    if check.lo <= number <= check.hi:
        return None
    return f"{_describe(value)} is out of range for {check.type_name}"


def _float_problem(value: object, check: Check) -> str | None:
    real: float
    if type(value) is float:
        real = value
        if real != real or real in (float("inf"), float("-inf")):
            return 'use the strings "NaN", "Infinity" or "-Infinity"'
    elif type(value) is int:
        try:
            real = float(value)
        except OverflowError:
            return f"{_describe(value)} is out of range for {check.type_name}"
    elif type(value) is str:
        if value in _FLOAT_SPECIALS:
            return None
        if _JSON_NUMBER.fullmatch(value) is None:
            return f'expected a number (or "NaN", "Infinity", "-Infinity"), got {_describe(value)}'
        real = float(value)
        if real in (float("inf"), float("-inf")):
            return f"{_describe(value)} is out of range for {check.type_name}"
    else:
        return f"expected a number, got {_describe(value)}"
    if check.type_name == "float" and abs(real) >= FLOAT32_LIMIT:
        return f"{_describe(value)} is out of range for float"
    return None


def bytes_problem(value: object) -> str | None:
    if type(value) is not str:
        return f"expected a base64 string, got {_describe(value)}"
    # Standard or URL-safe alphabet, padded or not (json_format decodes all four);
    # MIME-style line breaks are ignored, as json_format and Go's protojson do.
    if "\n" in value or "\r" in value:
        value = value.replace("\r", "").replace("\n", "")
    body = value.rstrip("=")
    padding = len(value) - len(body)
    if (
        padding > 2
        or len(body) % 4 == 1
        or (padding and len(value) % 4)
        or _BASE64_BODY.fullmatch(body) is None
    ):
        return f"{_describe(value)} is not valid base64"
    return None


def _map_key_problem(key: object, check: Check) -> str | None:
    if type(key) is not str:
        return "map keys must be strings"
    if check.kind == BOOL:
        return None if key in ("true", "false") else 'expected "true" or "false" as map key'
    if check.kind == INT:
        if _MAP_INT_KEY.fullmatch(key) is None:
            return f"expected an integer map key for {check.type_name}"
        if not check.lo <= int(key) <= check.hi:
            return f"map key {key} is out of range for {check.type_name}"
    return None


def _join(parent: _Path, segment: Any) -> _Path:
    return None if segment is None else (parent, segment)


def _render(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, segment = path
        if isinstance(segment, str):
            parts.append("." + segment)
        elif isinstance(segment, int):
            parts.append(f"[{segment}]")
        else:
            parts.append(f"[{segment[0]}]")
    text = "".join(reversed(parts))
    return text[1:] if text.startswith(".") else text


def _invalid(path: _Path, problem: str) -> InvalidArgument:
    if path is None:
        return InvalidArgument(problem)
    return InvalidArgument(f'invalid value for field "{_render(path)}": {problem}')


def _describe(value: object) -> str:
    """A short rendering of a client's value for an error message."""
    if value is None or isinstance(value, bool):
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."
