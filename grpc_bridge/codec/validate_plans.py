"""What a message type's JSON must look like, compiled once per type for :mod:`.validate`.

A plan per message type maps each field's JSON and proto names to its shape
(singular, repeated, map) and to the check of its values: the integer range,
the enum's names, the nested message's plan. Well-known types and wrappers
get the check of their JSON form. Plans for every type reachable from a root
are built together, iteratively (recursive message graphs cost no stack);
the targets of ``google.protobuf.Any`` are compiled when first met.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

#: What a JSON value is checked as (:attr:`Check.kind`).
INT, FLOAT, BOOL, STRING, BYTES, ENUM = range(6)
MESSAGE, STRING_WKT, STRUCT, LIST_VALUE, VALUE, ANY = range(6, 12)
#: How a field holds its values (:attr:`FieldPlan.shape`).
SINGLE, REPEATED, MAP, SKIP = range(4)

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
    "google.protobuf.Struct": STRUCT,
    "google.protobuf.ListValue": LIST_VALUE,
    "google.protobuf.Value": VALUE,
    "google.protobuf.Any": ANY,
    **dict.fromkeys(_STRING_WKTS, STRING_WKT),
}
WRAPPERS_FILE = "google/protobuf/wrappers.proto"


@dataclass(slots=True, eq=False)
class MessagePlan:
    full_name: str
    extendable: bool
    #: Keyed by both the JSON name and the proto name of each field.
    fields: dict[str, FieldPlan]


_NO_PLAN = MessagePlan("", False, {})


@dataclass(slots=True, eq=False)
class Check:
    """How one JSON value (a singular field, an element, a map key or value) is checked."""

    kind: int
    type_name: str  # "int32", "bridgetest.v1.Color", "google.protobuf.Timestamp" ...
    lo: int = 0
    hi: int = 0
    names: frozenset[str] = frozenset()  # enum value names
    plan: MessagePlan = _NO_PLAN  # for MESSAGE


@dataclass(slots=True, eq=False)
class FieldPlan:
    name: str
    shape: int
    check: Check
    key_check: Check | None = None
    oneof: str | None = None


_SKIP_FIELD = FieldPlan("@type", SKIP, Check(VALUE, ""))


class Plans:
    """Plans for every message type reachable from a root, built once; Any targets on demand."""

    def __init__(self, pool: DescriptorPool) -> None:
        self._pool = pool
        self._checks: dict[str, Check] = {}
        self._pending: list[tuple[MessagePlan, _Descriptor]] = []
        self._any: dict[str, Check] = {}

    def check_for_message(self, descriptor: _Descriptor) -> Check:
        check = self._message_check(descriptor)
        # Iterative, so deep or recursive message graphs cost no Python stack.
        while self._pending:
            self._fill(*self._pending.pop())
        return check

    def check_for_any(self, type_url: str) -> Check | None:
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
            if check.kind == MESSAGE:
                # In an Any, "@type" sits among the packed message's own fields.
                plan = MessagePlan(
                    check.plan.full_name,
                    check.plan.extendable,
                    {**check.plan.fields, "@type": _SKIP_FIELD},
                )
                check = Check(MESSAGE, check.type_name, plan=plan)
            self._any[type_name] = check
        return check

    def _message_check(self, descriptor: _Descriptor) -> Check:
        full_name: str = descriptor.full_name
        check = self._checks.get(full_name)
        if check is not None:
            return check
        if descriptor.file.name == WRAPPERS_FILE:
            check = self._scalar_check(descriptor.fields_by_name["value"])
        elif full_name in _WKT_KINDS:
            check = Check(_WKT_KINDS[full_name], full_name)
        else:
            plan = MessagePlan(full_name, bool(descriptor.is_extendable), {})
            self._pending.append((plan, descriptor))
            check = Check(MESSAGE, full_name, plan=plan)
        self._checks[full_name] = check
        return check

    def _value_check(self, field: FieldDescriptor) -> Check:
        if field.type in (_FD.TYPE_MESSAGE, _FD.TYPE_GROUP):
            assert field.message_type is not None
            return self._message_check(field.message_type)
        return self._scalar_check(field)

    @staticmethod
    def _scalar_check(field: FieldDescriptor) -> Check:
        type_ = field.type
        name = TYPE_NAMES.get(type_, "?")
        if type_ in INT_RANGES:
            lo, hi = INT_RANGES[type_]
            return Check(INT, name, lo, hi)
        if type_ in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
            return Check(FLOAT, name)
        if type_ == _FD.TYPE_BOOL:
            return Check(BOOL, name)
        if type_ == _FD.TYPE_BYTES:
            return Check(BYTES, name)
        if type_ == _FD.TYPE_ENUM:
            enum = field.enum_type
            assert enum is not None
            return Check(ENUM, enum.full_name, -(2**31), 2**31 - 1, frozenset(enum.values_by_name))
        return Check(STRING, name)

    def _fill(self, plan: MessagePlan, descriptor: _Descriptor) -> None:
        for field in descriptor.fields:
            oneof = field.containing_oneof
            entry = field.message_type if field.type == _FD.TYPE_MESSAGE else None
            if entry is not None and entry.GetOptions().map_entry:
                key_field = entry.fields_by_name["key"]
                value_check = self._value_check(entry.fields_by_name["value"])
                field_plan = FieldPlan(field.name, MAP, value_check, self._scalar_check(key_field))
            else:
                shape = REPEATED if field.is_repeated else SINGLE
                field_plan = FieldPlan(
                    field.name,
                    shape,
                    self._value_check(field),
                    None,
                    oneof.name if oneof is not None else None,
                )
            plan.fields[field.json_name] = field_plan
            plan.fields[field.name] = field_plan
