"""Checks a parsed JSON value against a message type before json_format sees it.

json_format alone accepts inputs the proto3 JSON mapping forbids (a string for
a message field, ``true`` for an enum, ``"1_000"`` for an integer, a float32
out of range, one field under both its names); these plans, compiled once per
message type, catch them with an error that names the field path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

from grpc_bridge.errors import InvalidArgument

# --- compiled validation plans -------------------------------------------------------------

_INT, _FLOAT, _BOOL, _STRING, _BYTES, _ENUM = range(6)
_MESSAGE, _STRING_WKT, _STRUCT, _LIST_VALUE, _VALUE, _ANY = range(6, 12)
_SINGLE, _REPEATED, _MAP, _SKIP = range(4)

_FD = FieldDescriptor
# protobuf's stubs type a message's DESCRIPTOR as a union of the pure-Python and
# upb classes; both have what the plans read.
_Descriptor = Any
INT_RANGES: dict[int, tuple[int, int]] = {
    **dict.fromkeys((_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32), (-(2**31), 2**31 - 1)),
    **dict.fromkeys((_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64), (-(2**63), 2**63 - 1)),
    **dict.fromkeys((_FD.TYPE_UINT32, _FD.TYPE_FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((_FD.TYPE_UINT64, _FD.TYPE_FIXED64), (0, 2**64 - 1)),
}
TYPE_NAMES = {
    value: name[len("TYPE_") :].lower()
    for name, value in vars(_FD).items()
    if name.startswith("TYPE_")
}
_STRING_WKTS = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
_WKT_KINDS = {
    "google.protobuf.Struct": _STRUCT,
    "google.protobuf.ListValue": _LIST_VALUE,
    "google.protobuf.Value": _VALUE,
    "google.protobuf.Any": _ANY,
    **dict.fromkeys(_STRING_WKTS, _STRING_WKT),
}
WRAPPERS_FILE = "google/protobuf/wrappers.proto"


@dataclass(slots=True, eq=False)
class _MessagePlan:
    full_name: str
    extendable: bool
    #: Keyed by both the JSON name and the proto name of each field.
    fields: dict[str, _FieldPlan]


_NO_PLAN = _MessagePlan("", False, {})


@dataclass(slots=True, eq=False)
class _Check:
    """How one JSON value (a singular field, an element, a map key or value) is checked."""

    kind: int
    type_name: str  # "int32", "bridgetest.v1.Color", "google.protobuf.Timestamp" ...
    lo: int = 0
    hi: int = 0
    names: frozenset[str] = frozenset()  # enum value names
    plan: _MessagePlan = _NO_PLAN  # for _MESSAGE


@dataclass(slots=True, eq=False)
class _FieldPlan:
    name: str
    shape: int
    check: _Check
    key_check: _Check | None = None
    oneof: str | None = None


_SKIP_FIELD = _FieldPlan("@type", _SKIP, _Check(_VALUE, ""))


class Plans:
    """Plans for every message type reachable from a root, built once; Any targets on demand."""

    def __init__(self, pool: DescriptorPool) -> None:
        self._pool = pool
        self._checks: dict[str, _Check] = {}
        self._pending: list[tuple[_MessagePlan, _Descriptor]] = []
        self._any: dict[str, _Check] = {}

    def check_for_message(self, descriptor: _Descriptor) -> _Check:
        check = self._message_check(descriptor)
        # Iterative, so deep or recursive message graphs cost no Python stack.
        while self._pending:
            self._fill(*self._pending.pop())
        return check

    def check_for_any(self, type_url: str) -> _Check | None:
        # Keyed by type name, as json_format resolves it: the URL's prefix is free-form,
        # so caching whole URLs would let clients grow the cache without bound.
        type_name = type_url.rpartition("/")[2]
        check = self._any.get(type_name)
        if check is None:
            try:
                descriptor = self._pool.FindMessageTypeByName(type_name)
            except KeyError:
                return None  # not cached either, for the same reason
            check = self.check_for_message(descriptor)
            if check.kind == _MESSAGE:
                # In an Any, "@type" sits among the packed message's own fields.
                plan = _MessagePlan(
                    check.plan.full_name,
                    check.plan.extendable,
                    {**check.plan.fields, "@type": _SKIP_FIELD},
                )
                check = _Check(_MESSAGE, check.type_name, plan=plan)
            self._any[type_name] = check
        return check

    def _message_check(self, descriptor: _Descriptor) -> _Check:
        full_name: str = descriptor.full_name
        check = self._checks.get(full_name)
        if check is not None:
            return check
        if descriptor.file.name == WRAPPERS_FILE:
            check = self._scalar_check(descriptor.fields_by_name["value"])
        elif full_name in _WKT_KINDS:
            check = _Check(_WKT_KINDS[full_name], full_name)
        else:
            plan = _MessagePlan(full_name, bool(descriptor.is_extendable), {})
            self._pending.append((plan, descriptor))
            check = _Check(_MESSAGE, full_name, plan=plan)
        self._checks[full_name] = check
        return check

    def _value_check(self, field: FieldDescriptor) -> _Check:
        if field.type in (_FD.TYPE_MESSAGE, _FD.TYPE_GROUP):
            assert field.message_type is not None
            return self._message_check(field.message_type)
        return self._scalar_check(field)

    @staticmethod
    def _scalar_check(field: FieldDescriptor) -> _Check:
        type_ = field.type
        name = TYPE_NAMES.get(type_, "?")
        if type_ in INT_RANGES:
            lo, hi = INT_RANGES[type_]
            return _Check(_INT, name, lo, hi)
        if type_ in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
            return _Check(_FLOAT, name)
        if type_ == _FD.TYPE_BOOL:
            return _Check(_BOOL, name)
        if type_ == _FD.TYPE_BYTES:
            return _Check(_BYTES, name)
        if type_ == _FD.TYPE_ENUM:
            enum = field.enum_type
            assert enum is not None
            return _Check(
                _ENUM, enum.full_name, -(2**31), 2**31 - 1, frozenset(enum.values_by_name)
            )
        return _Check(_STRING, name)

    def _fill(self, plan: _MessagePlan, descriptor: _Descriptor) -> None:
        for field in descriptor.fields:
            oneof = field.containing_oneof
            entry = field.message_type if field.type == _FD.TYPE_MESSAGE else None
            if entry is not None and entry.GetOptions().map_entry:
                key_field = entry.fields_by_name["key"]
                value_check = self._value_check(entry.fields_by_name["value"])
                field_plan = _FieldPlan(
                    field.name, _MAP, value_check, self._scalar_check(key_field)
                )
            else:
                shape = _REPEATED if field.is_repeated else _SINGLE
                field_plan = _FieldPlan(
                    field.name,
                    shape,
                    self._value_check(field),
                    None,
                    oneof.name if oneof is not None else None,
                )
            plan.fields[field.json_name] = field_plan
            plan.fields[field.name] = field_plan


# --- the validation walk ---------------------------------------------------------------------

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
        self.stack: list[tuple[dict[str, Any], _MessagePlan, _Path]] = []
        self.fixups: list[tuple[Any, Any]] = []
        #: ``null`` given for a repeated or map field: removed before json_format sees it.
        self.drops: list[tuple[dict[str, Any], str]] = []


class Validator:
    __slots__ = ("_ignore_unknown", "_plans")

    def __init__(self, plans: Plans, *, ignore_unknown: bool) -> None:
        self._plans = plans
        self._ignore_unknown = ignore_unknown

    def validate(self, value: object, root: _Check) -> object:
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
        plan: _MessagePlan,
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
            if shape == _SKIP:
                continue
            first = seen.get(field.name)
            if first is not None:
                raise InvalidArgument(
                    f'field "{_render((path, key))}" is given twice (also as "{first}")'
                )
            seen[field.name] = key
            if item is None:
                if shape != _SINGLE:
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
            if shape == _SINGLE:
                if self._check(item, field.check, path, key, walk):
                    walk.fixups.append((obj, key))
            elif shape == _REPEATED:
                self._check_list(item, field.check, (path, key), walk)
            else:
                self._check_map(item, field, (path, key), walk)

    def _check_list(self, items: object, check: _Check, path: _Path, walk: _Walk) -> None:
        if not isinstance(items, list | tuple):
            raise _invalid(path, f"expected an array, got {_describe(items)}")
        nullable = check.kind == _VALUE
        for index, item in enumerate(items):
            if item is None and not nullable:
                raise _invalid((path, index), "null is not allowed in an array")
            if self._check(item, check, path, index, walk):
                walk.fixups.append((items, index))

    def _check_map(self, items: object, field: _FieldPlan, path: _Path, walk: _Walk) -> None:
        if not isinstance(items, dict):
            raise _invalid(path, f"expected a JSON object (a map), got {_describe(items)}")
        key_check = field.key_check
        check = field.check
        nullable = check.kind == _VALUE
        for key, item in items.items():
            if key_check is not None and key_check.kind != _STRING:
                problem = _map_key_problem(key, key_check)
                if problem is not None:
                    raise _invalid((path, (key,)), problem)
            if item is None and not nullable:
                raise _invalid((path, (key,)), "null is not allowed as a map value")
            if self._check(item, check, path, (key,), walk):
                walk.fixups.append((items, key))

    def _check(
        self, value: object, check: _Check, parent: _Path, segment: Any, walk: _Walk
    ) -> bool:
        """Raise for a bad value; True when json_format must get it as text instead."""
        kind = check.kind
        problem: str | None = None
        if kind == _INT:
            problem = _int_problem(value, check)
        elif kind == _STRING:
            if type(value) is not str:
                problem = f"expected a string, got {_describe(value)}"
        elif kind == _MESSAGE:
            if isinstance(value, dict):
                walk.stack.append((value, check.plan, _join(parent, segment)))
                return False
            problem = f"expected a JSON object for {check.type_name}, got {_describe(value)}"
        elif kind == _FLOAT:
            problem = _float_problem(value, check)
            if problem is None and check.type_name == "float" and type(value) is float:
                return abs(value) > _JSON_FORMAT_FLOAT32_MAX
        elif kind == _BOOL:
            if type(value) is not bool:
                problem = f"expected true or false, got {_describe(value)}"
        elif kind == _ENUM:
            problem = self._enum_problem(value, check)
        elif kind == _BYTES:
            problem = bytes_problem(value)
        elif kind == _STRING_WKT:
            if type(value) is not str:
                problem = f"expected a string for {check.type_name}, got {_describe(value)}"
        elif kind == _STRUCT:
            if not isinstance(value, dict):
                problem = f"expected a JSON object for {check.type_name}, got {_describe(value)}"
        elif kind == _LIST_VALUE:
            if not isinstance(value, list | tuple):
                problem = f"expected an array for {check.type_name}, got {_describe(value)}"
        elif kind == _ANY:
            self._check_any(value, _join(parent, segment), walk)
        if problem is not None:
            raise _invalid(_join(parent, segment), problem)
        return False

    def _enum_problem(self, value: object, check: _Check) -> str | None:
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
        if inner.kind == _MESSAGE:
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


def _int_problem(value: object, check: _Check) -> str | None:
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


def _float_problem(value: object, check: _Check) -> str | None:
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


def _map_key_problem(key: object, check: _Check) -> str | None:
    if type(key) is not str:
        return "map keys must be strings"
    if check.kind == _BOOL:
        return None if key in ("true", "false") else 'expected "true" or "false" as map key'
    if check.kind == _INT:
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
