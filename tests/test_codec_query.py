"""query_to_value: URL query parameters -> a JSON value, decoded by a private-pool MessageCodec."""

from __future__ import annotations

import math
from typing import Any

import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from grpc_bridge.codec.json_codec import JsonOptions, MessageCodec
from grpc_bridge.codec.query import query_to_value
from grpc_bridge.errors import InvalidArgument
from tests.helpers.codec_tools import build_private_pool, message_class


@pytest.fixture(scope="module")
def pool() -> DescriptorPool:
    return build_private_pool(kitchen_pb2.DESCRIPTOR)


@pytest.fixture(scope="module")
def kitchen(pool: DescriptorPool) -> type[Message]:
    return message_class(pool, "bridgetest.v1.Kitchen")


@pytest.fixture(scope="module")
def descriptor(kitchen: type[Message]) -> Descriptor:
    return kitchen.DESCRIPTOR


@pytest.fixture(scope="module")
def codec(pool: DescriptorPool, kitchen: type[Message]) -> MessageCodec:
    return MessageCodec(kitchen, pool, JsonOptions())


def decode(codec: MessageCodec, descriptor: Descriptor, query: str, **kwargs: Any) -> Any:
    items = [tuple(pair.split("=", 1)) for pair in query.split("&")] if query else []
    return codec.decode_value(query_to_value(descriptor, items, **kwargs))


def test_every_scalar_type(codec: MessageCodec, descriptor: Descriptor) -> None:
    m = decode(
        codec,
        descriptor,
        "f_double=-1.5e3&f_float=.25&f_int32=-2147483648&f_int64=-9223372036854775808"
        "&f_uint32=4294967295&f_uint64=18446744073709551615&f_sint32=+7&f_sint64=-1"
        "&f_fixed32=0&f_fixed64=18446744073709551615&f_sfixed32=2147483647"
        "&f_sfixed64=9223372036854775807&f_bool=T&f_string=a b=c&f_bytes=_-8",
    )
    assert (m.f_double, m.f_float) == (-1500.0, 0.25)
    assert (m.f_int32, m.f_int64) == (-(2**31), -(2**63))
    assert (m.f_uint32, m.f_uint64) == (2**32 - 1, 2**64 - 1)
    assert (m.f_sint32, m.f_sint64, m.f_fixed32, m.f_fixed64) == (7, -1, 0, 2**64 - 1)
    assert (m.f_sfixed32, m.f_sfixed64) == (2**31 - 1, 2**63 - 1)
    assert m.f_bool is True
    assert m.f_string == "a b=c"
    assert m.f_bytes == b"\xff\xef"


def test_lower_camel_names_and_nesting(codec: MessageCodec, descriptor: Descriptor) -> None:
    m = decode(
        codec,
        descriptor,
        "fInt32=1&nested.name=x&nested.child.value=2&nested.child.child.name=deep&optString=",
    )
    assert m.f_int32 == 1
    assert m.nested.name == "x"
    assert m.nested.child.value == 2
    assert m.nested.child.child.name == "deep"
    assert m.HasField("opt_string")


def test_repeated_fields_by_repeating_the_key(codec: MessageCodec, descriptor: Descriptor) -> None:
    m = decode(
        codec,
        descriptor,
        "r_int32=1&rInt32=2&r_int32=-3&r_string=a&r_string=&r_color=RED&r_color=3",
    )
    assert list(m.r_int32) == [1, 2, -3]
    assert list(m.r_string) == ["a", ""]
    assert list(m.r_color) == [1, 3]


@pytest.mark.parametrize(
    ("value", "expected"), [("GREEN", 2), ("2", 2), ("COLOR_UNSPECIFIED", 0), ("0", 0)]
)
def test_enums_by_name_or_number(
    codec: MessageCodec, descriptor: Descriptor, value: str, expected: int
) -> None:
    assert decode(codec, descriptor, f"color={value}").color == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(v, True) for v in ("1", "t", "T", "TRUE", "true", "True")]
    + [(v, False) for v in ("0", "f", "F", "FALSE", "false", "False")],
)
def test_bools_like_go_parse_bool(
    codec: MessageCodec, descriptor: Descriptor, value: str, expected: bool
) -> None:
    assert decode(codec, descriptor, f"w_bool={value}&f_bool={value}").f_bool is expected


@pytest.mark.parametrize(
    ("value", "check"),
    [
        ("NaN", math.isnan),
        ("nan", math.isnan),
        ("Inf", lambda x: x == math.inf),
        ("+Infinity", lambda x: x == math.inf),
        ("-inf", lambda x: x == -math.inf),
        ("25e-2", lambda x: x == 0.25),
        ("5.", lambda x: x == 5.0),
    ],
)
def test_float_spellings(
    codec: MessageCodec, descriptor: Descriptor, value: str, check: Any
) -> None:
    m = decode(codec, descriptor, f"f_double={value}&f_float={value}&w_double={value}")
    assert check(m.f_double) and check(m.f_float) and check(m.w_double.value)


def test_float32_max_in_shortest_form(codec: MessageCodec, descriptor: Descriptor) -> None:
    assert decode(codec, descriptor, "f_float=-3.4028235e38").f_float == -3.4028234663852886e38
    with pytest.raises(InvalidArgument, match="out of range for float"):
        query_to_value(descriptor, [("f_float", "3.4028235677973366e38")])


@pytest.mark.parametrize("value", ["/+8=", "/+8", "_-8=", "_-8", "/ 8"])
def test_bytes_in_any_base64_flavour(
    codec: MessageCodec, descriptor: Descriptor, value: str
) -> None:
    m = decode(codec, descriptor, f"f_bytes={value}&w_bytes={value}")
    assert m.f_bytes == m.w_bytes.value == b"\xff\xef"


def test_well_known_types(codec: MessageCodec, descriptor: Descriptor) -> None:
    m = decode(
        codec,
        descriptor,
        "ts=2024-01-02T03:04:05.5Z&dur=1.5s&mask=f_int32,nested.child,rNested"
        "&w_int32=-5&w_int64=9223372036854775807&w_uint64=18446744073709551615"
        "&w_string=s&w_float=0.5&w_uint32=7&r_ts=1970-01-01T00:00:01Z&r_ts=1970-01-01T00:00:02Z",
    )
    assert m.ts.ToJsonString() == "2024-01-02T03:04:05.500Z"
    assert (m.dur.seconds, m.dur.nanos) == (1, 500_000_000)
    assert list(m.mask.paths) == ["f_int32", "nested.child", "r_nested"]
    assert (m.w_int32.value, m.w_int64.value, m.w_uint64.value) == (-5, 2**63 - 1, 2**64 - 1)
    assert (m.w_string.value, m.w_float.value, m.w_uint32.value) == ("s", 0.5, 7)
    assert [t.seconds for t in m.r_ts] == [1, 2]


def test_json_text_well_known_types(codec: MessageCodec, descriptor: Descriptor) -> None:
    items = [
        ("st", '{"a": [1, null, {"b": true}]}'),
        ("lv", '[1, "x"]'),
        ("val", "hello"),
        ("m_values[n]", "12"),
        ("m_values[s]", '"12"'),
        ("any", '{"@type": "type.googleapis.com/bridgetest.private.v1.Secret", "level": "3"}'),
    ]
    m: Any = codec.decode_value(query_to_value(descriptor, items))
    assert json_format.MessageToDict(m.st) == {"a": [1, None, {"b": True}]}
    assert json_format.MessageToDict(m.lv) == [1, "x"]
    assert m.val.string_value == "hello"
    assert m.m_values["n"].number_value == 12
    assert m.m_values["s"].string_value == "12"
    assert m.any.type_url.endswith("bridgetest.private.v1.Secret")


def test_map_fields(codec: MessageCodec, descriptor: Descriptor) -> None:
    items = [
        ("m_str_int[a]", "1"),
        ("mStrInt[b.c]", "2"),
        ("m_str_int[]", "3"),
        ("m_int_nested[-7].name", "x"),
        ("m_int_nested[-7].child.value", "4"),
        ("m_bool_str[1]", "yes"),
        ("m_bool_str[false]", "no"),
    ]
    m: Any = codec.decode_value(query_to_value(descriptor, items))
    assert dict(m.m_str_int) == {"a": 1, "b.c": 2, "": 3}
    assert m.m_int_nested[-7].name == "x" and m.m_int_nested[-7].child.value == 4
    assert dict(m.m_bool_str) == {True: "yes", False: "no"}


def test_result_is_keyed_by_proto_names(descriptor: Descriptor) -> None:
    assert query_to_value(
        descriptor, [("fInt64", "5"), ("nested.child.value", "1"), ("rColor", "1")]
    ) == {"f_int64": 5, "nested": {"child": {"value": 1}}, "r_color": ["RED"]}


ERRORS = [
    ("foo", "1", 'unknown query parameter "foo"'),
    ("nested.foo", "1", 'unknown query parameter "nested.foo"'),
    ("a..b", "1", 'unknown query parameter "a..b"'),
    ("f_int32", "abc", 'invalid value "abc" for query parameter "f_int32": not an integer'),
    ("f_int32", "1.0", 'invalid value "1.0" for query parameter "f_int32": not an integer'),
    ("f_int32", "", 'invalid value "" for query parameter "f_int32": not an integer'),
    (
        "fInt32",
        "2147483648",
        'invalid value "2147483648" for query parameter "fInt32": out of range for int32',
    ),
    (
        "f_uint64",
        "-1",
        'invalid value "-1" for query parameter "f_uint64": out of range for uint64',
    ),
    ("f_double", "1_0", 'invalid value "1_0" for query parameter "f_double": not a number'),
    (
        "f_float",
        "1e39",
        'invalid value "1e39" for query parameter "f_float": out of range for float',
    ),
    ("f_double", "1e999", 'invalid value "1e999" for query parameter "f_double": out of range'),
    ("f_bool", "yes", 'invalid value "yes" for query parameter "f_bool": not a boolean'),
    ("f_bytes", "!!!!", 'invalid value "!!!!" for query parameter "f_bytes": not valid base64'),
    ("f_bytes", "QUJD=", 'invalid value "QUJD=" for query parameter "f_bytes": not valid base64'),
    (
        "color",
        "PURPLE",
        'invalid value "PURPLE" for query parameter "color": not a value of bridgetest.v1.Color',
    ),
    ("color", "9", 'invalid value "9" for query parameter "color": not a value of'),
    ("ts", "yesterday", 'invalid value "yesterday" for query parameter "ts": not an RFC 3339'),
    ("dur", "5m", 'invalid value "5m" for query parameter "dur": not a duration like "1.5s"'),
    ("w_int32", "x", 'invalid value "x" for query parameter "w_int32": not an integer'),
    ("st", "[1]", 'invalid value "[1]" for query parameter "st": google.protobuf.Struct takes an'),
    (
        "lv",
        "{",
        'invalid value "{" for query parameter "lv": not JSON for google.protobuf.ListValue',
    ),
    (
        "nested",
        "x",
        'query parameter "nested" names a message field (bridgetest.v1.Nested); '
        'set its fields, e.g. "nested.name"',
    ),
    (
        "m_int_nested[5]",
        "x",
        'query parameter "m_int_nested[5]" names a message field (bridgetest.v1.Nested)',
    ),
    (
        "r_nested.name",
        "x",
        'query parameter "r_nested.name": repeated message field "r_nested" '
        "cannot be set by query parameters",
    ),
    ("f_int32.x", "1", 'query parameter "f_int32.x": field "f_int32" has no subfields'),
    ("ts.seconds", "1", 'query parameter "ts.seconds": field "ts" has no subfields'),
    ("m_str_int", "1", 'query parameter "m_str_int": map field "m_str_int" takes a key'),
    ("f_int32[a]", "1", 'query parameter "f_int32[a]": field "f_int32" is not a map'),
    (
        "m_int_nested[x].name",
        "1",
        'invalid value "x" for query parameter "m_int_nested[x].name": not an integer',
    ),
]


@pytest.mark.parametrize(("param", "value", "message"), ERRORS)
def test_errors_name_the_parameter(
    descriptor: Descriptor, param: str, value: str, message: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        query_to_value(descriptor, [(param, value)])
    assert caught.value.message.startswith(message)
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            [("f_int32", "1"), ("fInt32", "2")],
            'query parameter "fInt32" is given more than once, but field "f_int32" is not repeated',
        ),
        (
            [("nested.name", "1"), ("nested.name", "2")],
            'query parameter "nested.name" is given more than once, '
            'but field "nested.name" is not repeated',
        ),
        (
            [("m_str_int[a]", "1"), ("m_str_int[a]", "2")],
            'query parameter "m_str_int[a]" is given more than once, '
            'but field "m_str_int[a]" is not repeated',
        ),
    ],
)
def test_a_repeated_key_for_a_singular_field(
    descriptor: Descriptor, items: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        query_to_value(descriptor, items)
    assert caught.value.message == message


def test_two_members_of_a_oneof(codec: MessageCodec, descriptor: Descriptor) -> None:
    with pytest.raises(InvalidArgument, match=r'fields "o_string" and "o_int64" both belong'):
        decode(codec, descriptor, "o_string=a&o_int64=1")


@pytest.mark.parametrize(
    ("param", "bound", "field"),
    [
        ("f_int32", ["f_int32"], "f_int32"),
        ("fInt32", ["f_int32"], "f_int32"),
        ("nested.name", ["nested.name"], "nested.name"),
        ("nested.child.value", ["nested"], "nested"),
    ],
)
def test_fields_bound_by_the_path(
    descriptor: Descriptor, param: str, bound: list[str], field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        query_to_value(descriptor, [(param, "1")], bound=bound)
    assert caught.value.message == (
        f'field "{field}" is bound by the path and cannot be set by a query parameter'
    )


def test_siblings_of_bound_fields_are_fine(descriptor: Descriptor) -> None:
    assert query_to_value(descriptor, [("nested.value", "1")], bound=["nested.name"]) == {
        "nested": {"value": 1}
    }


def test_ignore_unknown(descriptor: Descriptor) -> None:
    items = [("foo", "1"), ("nested.foo", "2"), ("a..b", "3"), ("f_int32", "4")]
    # "nested.foo" must not leave an empty "nested" behind (it would set the field).
    assert query_to_value(descriptor, items, ignore_unknown=True) == {"f_int32": 4}
    with pytest.raises(InvalidArgument, match="not an integer"):
        query_to_value(descriptor, [("f_int32", "x")], ignore_unknown=True)


def test_no_parameters(descriptor: Descriptor) -> None:
    assert query_to_value(descriptor, []) == {}


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text())
def test_values_agree_with_the_json_codec(
    codec: MessageCodec, descriptor: Descriptor, number: int, real: float, text: str
) -> None:
    m: Any = codec.decode_value(
        query_to_value(
            descriptor,
            [("f_int64", str(number)), ("f_double", repr(real)), ("f_string", text)],
        )
    )
    assert (m.f_int64, m.f_double, m.f_string) == (number, real, text)


def test_a_name_reads_the_same_each_time_whatever_binds_it(descriptor: Descriptor) -> None:
    # Names are resolved once per (message, name, bound paths, body field): the same
    # name under another binding still gets that binding's answer.
    for _ in range(3):
        assert query_to_value(descriptor, [("nested.name", "a")]) == {"nested": {"name": "a"}}
        with pytest.raises(InvalidArgument, match="bound by the path"):
            query_to_value(descriptor, [("nested.name", "a")], bound=["nested.name"])
        with pytest.raises(InvalidArgument, match="taken from the request body"):
            query_to_value(descriptor, [("nested.name", "a")], body="nested")
        with pytest.raises(InvalidArgument, match=r'unknown query parameter "nested\.nope"'):
            query_to_value(descriptor, [("nested.nope", "a")])
        assert query_to_value(descriptor, [("nested.nope", "a")], ignore_unknown=True) == {}
