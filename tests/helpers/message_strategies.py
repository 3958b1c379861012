"""Hypothesis strategies for messages drawn from their descriptors (``bridgetest.v1.Kitchen``).

Every field of ``Kitchen`` can be drawn: each scalar kind with edge values
(NaN, ±Infinity, -0.0, 64-bit extremes, float32 extremes, bytes that aren't
UTF-8), enums (open ones with unknown numbers), maps, oneofs, presence, each
well-known type and ``Any`` of several types. Messages are built in the pool
given, as discovery builds them: a private one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message
from hypothesis import strategies as st

from tests.helpers.codec_tools import SECRET_TYPE, message_class

_FD = FieldDescriptor

#: What an ``Any`` may hold (SECRET_TYPE: only in codec_tools' private pools).
ANY_TYPES = ("bridgetest.v1.Nested", "google.protobuf.Timestamp", SECRET_TYPE)

INT_BOUNDS = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _FD.TYPE_UINT32: (0, 2**32 - 1),
    _FD.TYPE_FIXED32: (0, 2**32 - 1),
    _FD.TYPE_UINT64: (0, 2**64 - 1),
    _FD.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOAT32_EDGES = [3.4028234663852886e38, -3.4028234663852886e38, 1.401298464324817e-45, -0.0]
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
JSON_TREES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELD_MASK_PATHS = st.lists(
    st.from_regex(r"[a-z]{1,4}(_[a-z]{1,4}){0,2}(\.[a-z]{1,4}){0,1}", fullmatch=True), max_size=3
)


def scalar(field: Any) -> st.SearchStrategy[Any]:
    t = field.type
    if t in INT_BOUNDS:
        return st.integers(*INT_BOUNDS[t])
    if t == _FD.TYPE_DOUBLE:
        return st.floats()
    if t == _FD.TYPE_FLOAT:
        return st.floats(width=32) | st.sampled_from(FLOAT32_EDGES)
    if t == _FD.TYPE_BOOL:
        return st.booleans()
    if t == _FD.TYPE_BYTES:
        return st.binary(max_size=12)  # not UTF-8, mostly
    if t == _FD.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        if field.enum_type.is_closed:
            return st.sampled_from(numbers)
        return st.sampled_from(numbers) | st.integers(-(2**31), 2**31 - 1)
    return st.text(max_size=8)


class Drawer:
    """Fills messages with drawn values; ``plain``: nothing the fast decoder hands over."""

    def __init__(
        self,
        draw: Any,
        pool: DescriptorPool,
        *,
        plain: bool,
        any_types: Sequence[str] = ANY_TYPES,
    ) -> None:
        self.draw = draw
        self.pool = pool
        self.plain = plain
        self.any_types = any_types

    def fill(self, msg: Any, depth: int) -> None:
        descriptor = msg.DESCRIPTOR
        name = descriptor.full_name
        if descriptor.file.name == "google/protobuf/wrappers.proto":
            msg.value = self.draw(scalar(descriptor.fields_by_name["value"]))
        elif name == "google.protobuf.Timestamp":
            msg.seconds = self.draw(st.integers(-62135596800, 253402300799))
            msg.nanos = self.draw(st.integers(0, 999_999_999))
        elif name == "google.protobuf.Duration":
            seconds = self.draw(st.integers(-315576000000, 315576000000))
            nanos = self.draw(st.integers(0, 999_999_999))
            msg.seconds, msg.nanos = seconds, -nanos if seconds < 0 else nanos
        elif name == "google.protobuf.FieldMask":
            msg.paths.extend(self.draw(FIELD_MASK_PATHS))
        elif name == "google.protobuf.Struct":
            msg.update(self.draw(st.dictionaries(st.text(max_size=4), JSON_TREES, max_size=3)))
        elif name == "google.protobuf.ListValue":
            msg.extend(self.draw(st.lists(JSON_TREES, max_size=3)))
        elif name == "google.protobuf.Value":
            self.fill_value(msg)
        elif name == "google.protobuf.Any":
            if self.plain or not self.draw(st.booleans()):
                return
            inner = message_class(self.pool, self.draw(st.sampled_from(self.any_types)))()
            self.fill(inner, depth + 1)
            msg.Pack(inner)
        else:
            for field in descriptor.fields:
                if self.draw(st.booleans()):
                    self.fill_field(msg, field, depth)

    def fill_value(self, msg: Any) -> None:
        value = self.draw(JSON_TREES)
        if isinstance(value, dict):
            msg.struct_value.update(value)
        elif isinstance(value, list):
            msg.list_value.extend(value)
        elif value is None:
            msg.null_value = 0
        elif isinstance(value, bool):
            msg.bool_value = value
        elif isinstance(value, str):
            msg.string_value = value
        else:
            msg.number_value = value

    def fill_field(self, msg: Any, field: Any, depth: int) -> None:
        name = field.name
        message = field.message_type
        is_value = message is not None and message.full_name == "google.protobuf.Value"
        if self.plain and is_value and not field.is_repeated:
            return  # a field-level null Value is the reference path's
        if message is not None and message.GetOptions().map_entry:
            key_field, value_field = message.fields_by_name["key"], message.fields_by_name["value"]
            entries = getattr(msg, name)
            for key in self.draw(st.lists(scalar(key_field), max_size=3)):
                if value_field.message_type is not None:
                    if depth < 3:
                        self.fill(entries[key], depth + 1)
                else:
                    entries[key] = self.draw(scalar(value_field))
        elif message is not None:
            if field.is_repeated:
                for _ in range(self.draw(st.integers(0, 2))):
                    self.fill(getattr(msg, name).add(), depth + 1)
            elif depth < 3:
                sub = getattr(msg, name)
                sub.SetInParent()
                self.fill(sub, depth + 1)
        elif field.is_repeated:
            getattr(msg, name).extend(self.draw(st.lists(scalar(field), max_size=3)))
        else:
            setattr(msg, name, self.draw(scalar(field)))


@st.composite
def kitchens(
    draw: Any, pool: DescriptorPool, plain: bool = False, any_types: Sequence[str] = ANY_TYPES
) -> Message:
    """A ``Kitchen`` of ``pool``; ``any_types``: what its ``Any`` fields may hold (in ``pool``)."""
    msg = message_class(pool, "bridgetest.v1.Kitchen")()
    Drawer(draw, pool, plain=plain, any_types=any_types).fill(msg, 0)
    return msg
