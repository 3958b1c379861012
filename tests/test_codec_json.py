"""MessageCodec and parse_json against json_format, on classes from a private descriptor pool.

The pool is built the way discovery builds it (serialized FileDescriptorProtos,
dependencies first) so these tests never lean on the default pool; one message
type exists only in that pool, to prove Any is resolved through it.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from grpc_bridge.codec.json_codec import JsonEncodeError, JsonOptions, MessageCodec, parse_json
from grpc_bridge.errors import InvalidArgument
from grpc_bridge.status import Code
from tests.helpers.codec_tools import SECRET_TYPE, build_private_pool, message_class, serialized


@pytest.fixture(scope="module")
def pool() -> DescriptorPool:
    return build_private_pool(kitchen_pb2.DESCRIPTOR)


@pytest.fixture(scope="module")
def kitchen(pool: DescriptorPool) -> type[Message]:
    cls = message_class(pool, "bridgetest.v1.Kitchen")
    assert cls is not kitchen_pb2.Kitchen  # really the private pool's class
    return cls


@pytest.fixture(scope="module")
def codec(pool: DescriptorPool, kitchen: type[Message]) -> MessageCodec:
    return MessageCodec(kitchen, pool, JsonOptions())


def full_kitchen(pool: DescriptorPool, any_payload: str) -> Any:
    """A Kitchen with every field set, extremes and zero values included."""
    m: Any = message_class(pool, "bridgetest.v1.Kitchen")()
    nested = message_class(pool, "bridgetest.v1.Nested")
    m.f_double = math.nan
    m.f_float = -math.inf
    m.f_int32, m.f_int64 = -(2**31), -(2**63)
    m.f_uint32, m.f_uint64 = 2**32 - 1, 2**64 - 1
    m.f_sint32, m.f_sint64 = 2**31 - 1, 2**63 - 1
    m.f_fixed32, m.f_fixed64 = 2**32 - 1, 2**64 - 1
    m.f_sfixed32, m.f_sfixed64 = -(2**31), -(2**63)
    m.f_bool = True
    m.f_string = 'héllo ✓ "quoted" \u2028 \x00'
    m.f_bytes = b"\x00\xff\xfe\x80 not utf-8"
    m.color = 3
    m.nested.name = "outer"
    m.nested.child.value = -7
    m.r_int32.extend([1, -2, 2**31 - 1])
    m.r_string.extend(["a", "", "ü"])
    m.r_nested.add(name="r0")
    m.r_nested.add(value=5, child=nested(name="deep"))
    m.r_color.extend([1, 7])  # 7: an unknown number, kept by open enums
    m.m_str_int["a"] = 1
    m.m_str_int[""] = -1
    m.m_int_nested[-(2**63)].name = "min"
    m.m_int_nested[2**63 - 1].value = 3
    m.m_bool_str[True] = "yes"
    m.m_bool_str[False] = "no"
    m.o_nested.name = "in oneof"
    m.opt_int32 = 0
    m.opt_string = ""
    m.ts.FromJsonString("2024-02-29T23:59:59.123456789Z")
    m.dur.FromJsonString("-1.5s")
    m.st.update({"n": None, "list": [1, "two", None, [True, {"x": 2.5}]], "obj": {}})
    m.val.list_value.extend([None, {"k": [1]}, "s"])
    if any_payload == "timestamp":
        timestamp: Any = message_class(pool, "google.protobuf.Timestamp")()
        timestamp.FromJsonString("1970-01-01T00:00:00Z")
        m.any.Pack(timestamp)
    elif any_payload == "nested":
        m.any.Pack(nested(name="packed", child=nested(value=1)))
    else:
        secret: Any = message_class(pool, SECRET_TYPE)(code_name="x", level=-(2**63))
        m.any.Pack(secret)
    m.w_int32.value = 0  # a wrapper set to its zero value is still present
    m.w_string.value = ""
    m.w_bool.value = False
    m.w_int64.value = -(2**63)
    m.w_bytes.value = b"\xff"
    m.w_double.value = math.inf
    m.w_uint64.value = 2**64 - 1
    m.w_float.value = math.nan
    m.w_uint32.value = 2**32 - 1
    m.mask.paths.extend(["f_int32", "nested.child"])
    m.empty.SetInParent()
    m.lv.extend([1, [], {}])
    m.r_ts.add(seconds=1)
    m.r_ts.add(seconds=-62135596800)  # 0001-01-01T00:00:00Z
    m.m_values["null"].null_value = 0
    m.m_values["list"].list_value.extend([1, "x"])
    return m


OPTION_COMBOS = [
    JsonOptions(use_proto_names=names, emit_unpopulated=emit, enums_as_ints=ints)
    for names, emit, ints in itertools.product([False, True], repeat=3)
]


@pytest.mark.parametrize("options", OPTION_COMBOS, ids=repr)
@pytest.mark.parametrize("any_payload", ["timestamp", "nested", "secret"])
def test_round_trip_matches_json_format(
    pool: DescriptorPool, kitchen: type[Message], options: JsonOptions, any_payload: str
) -> None:
    codec = MessageCodec(kitchen, pool, options)
    message = full_kitchen(pool, any_payload)
    printer_kwargs: dict[str, Any] = {
        "preserving_proto_field_name": options.use_proto_names,
        "always_print_fields_with_no_presence": options.emit_unpopulated,
        "use_integers_for_enums": options.enums_as_ints,
        "descriptor_pool": pool,
    }
    expected = json_format.MessageToDict(message, **printer_kwargs)

    assert orjson.loads(codec.encode(message)) == expected
    assert codec.to_value(message) == expected
    text = json_format.MessageToJson(message, **printer_kwargs)
    assert serialized(codec.decode(text.encode())) == serialized(message)
    assert serialized(codec.decode_value(orjson.loads(text))) == serialized(message)


def test_encode_is_compact_and_uses_the_spec_defaults(
    pool: DescriptorPool, kitchen: type[Message], codec: MessageCodec
) -> None:
    message: Any = kitchen(f_int64=5, color=1)
    body = codec.encode(message)
    assert b": " not in body and b", " not in body
    value = orjson.loads(body)
    assert value["fInt64"] == "5"  # 64-bit integers as strings
    assert value["color"] == "RED"  # enums as names
    assert value["fInt32"] == 0  # unpopulated fields emitted
    assert value["rInt32"] == [] and value["mStrInt"] == {}
    assert "nested" not in value  # message fields have presence


def test_field_names_in_both_forms(
    pool: DescriptorPool, kitchen: type[Message], codec: MessageCodec
) -> None:
    body = b"""{"f_int32": 1, "fInt64": "2", "nested": {"child": {"value": 3}},
               "r_nested": [{"name": "a"}], "mStrInt": {"k": 4}, "opt_string": "",
               "o_int64": 5, "w_int32": 6}"""
    decoded: Any = codec.decode(body)
    assert decoded.f_int32 == 1 and decoded.f_int64 == 2
    assert decoded.nested.child.value == 3
    assert decoded.r_nested[0].name == "a"
    assert dict(decoded.m_str_int) == {"k": 4}
    assert decoded.HasField("opt_string")
    assert decoded.WhichOneof("choice") == "o_int64"
    assert decoded.w_int32.value == 6


@pytest.mark.parametrize(
    "body",
    [
        b'{"fDouble": "NaN", "fFloat": "-Infinity", "wDouble": "Infinity"}',
        b'{"fInt64": 5, "fUint64": "18446744073709551615", "fInt32": "-3"}',
        b'{"fInt32": 1.0, "fSint32": "1e3", "fUint32": 2E2, "fInt64": "-0"}',
        b'{"fBytes": "_-8", "wBytes": "/+8=", "rString": []}',
        b'{"nested": null, "fInt32": null, "val": null, "color": 99, "oString": null, "oInt64": 1}',
        b'{"any": {}, "st": {}, "lv": [], "empty": {}, "mValues": {"a": null}}',
        b'{"mIntNested": {"-5": {}, "+7": {"name": "x"}}, "mBoolStr": {"true": "t"}}',
    ],
)
def test_accepted_inputs_match_json_format(
    pool: DescriptorPool, kitchen: type[Message], codec: MessageCodec, body: bytes
) -> None:
    expected = json_format.Parse(body, kitchen(), descriptor_pool=pool)
    assert serialized(codec.decode(body)) == serialized(expected)


def test_nan_and_infinity_strings_for_floats(codec: MessageCodec) -> None:
    decoded: Any = codec.decode(b'{"fDouble": "NaN", "fFloat": "Infinity", "wFloat": "-Infinity"}')
    assert math.isnan(decoded.f_double)
    assert decoded.f_float == math.inf
    assert decoded.w_float.value == -math.inf


def test_empty_and_whitespace_bodies_are_the_empty_message(codec: MessageCodec) -> None:
    for body in (b"", b"   ", b"\r\n\t "):
        assert serialized(codec.decode(body)) == b""


def test_utf8_bom_is_skipped(codec: MessageCodec) -> None:
    decoded: Any = codec.decode(b'\xef\xbb\xbf{"fString": "x"}')
    assert decoded.f_string == "x"


def test_any_resolves_through_the_private_pool_only(
    pool: DescriptorPool, kitchen: type[Message], codec: MessageCodec
) -> None:
    body = b'{"any": {"@type": "type.googleapis.com/bridgetest.private.v1.Secret", "level": "7"}}'
    decoded: Any = codec.decode(body)
    assert decoded.any.type_url.endswith(SECRET_TYPE)
    assert orjson.loads(codec.encode(decoded))["any"] == {
        "@type": "type.googleapis.com/bridgetest.private.v1.Secret",
        "codeName": "",
        "level": "7",
    }
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindMessageTypeByName(SECRET_TYPE)


# (body, the exact message) for every kind of bad input; each names the field.
BAD_INPUTS = [
    (b'{"foo": 1}', 'unknown field "foo" in bridgetest.v1.Kitchen'),
    (b'{"nested": {"foo": 1}}', 'unknown field "nested.foo" in bridgetest.v1.Nested'),
    (
        b'{"rNested": [{}, {"child": {"bar": 1}}]}',
        'unknown field "rNested[1].child.bar" in bridgetest.v1.Nested',
    ),
    (b'{"fInt32": "abc"}', 'invalid value for field "fInt32": expected an integer, got "abc"'),
    (b'{"fInt32": true}', 'invalid value for field "fInt32": expected an integer, got true'),
    (b'{"fInt32": 1.5}', 'invalid value for field "fInt32": expected an integer, got 1.5'),
    (b'{"fInt32": "1_000"}', 'invalid value for field "fInt32": expected an integer, got "1_000"'),
    (b'{"fInt64": " 1"}', 'invalid value for field "fInt64": expected an integer, got " 1"'),
    (
        b'{"fInt32": 2147483648}',
        'invalid value for field "fInt32": 2147483648 is out of range for int32',
    ),
    (b'{"fUint32": -1}', 'invalid value for field "fUint32": -1 is out of range for uint32'),
    (
        b'{"f_uint64": "18446744073709551616"}',
        'invalid value for field "f_uint64": "18446744073709551616" is out of range for uint64',
    ),
    (
        b'{"fSfixed64": "9223372036854775808"}',
        'invalid value for field "fSfixed64": "9223372036854775808" is out of range for sfixed64',
    ),
    (b'{"fString": {}}', 'invalid value for field "fString": expected a string, got an object'),
    (b'{"fString": 5}', 'invalid value for field "fString": expected a string, got 5'),
    (b'{"fBool": "true"}', 'invalid value for field "fBool": expected true or false, got "true"'),
    (
        b'{"color": "PURPLE"}',
        'invalid value for field "color": unknown enum value "PURPLE" for bridgetest.v1.Color',
    ),
    (
        b'{"rColor": ["RED", true]}',
        'invalid value for field "rColor[1]": expected an enum name or number '
        "for bridgetest.v1.Color, got true",
    ),
    (
        b'{"color": 4294967296}',
        'invalid value for field "color": 4294967296 is out of range for enum bridgetest.v1.Color',
    ),
    (
        b'{"oString": "a", "oInt64": "1"}',
        'fields "oString" and "oInt64" both belong to oneof "choice"; set at most one',
    ),
    (b'{"fInt32": 1, "f_int32": 2}', 'field "f_int32" is given twice (also as "fInt32")'),
    (
        b'{"fBytes": "not base64!"}',
        'invalid value for field "fBytes": "not base64!" is not valid base64',
    ),
    (b'{"fBytes": "QUJD="}', 'invalid value for field "fBytes": "QUJD=" is not valid base64'),
    (b'{"wBytes": 5}', 'invalid value for field "wBytes": expected a base64 string, got 5'),
    (
        b'{"ts": "yesterday"}',
        'invalid value for field "ts": Failed to parse timestamp: missing valid timezone offset',
    ),
    (
        b'{"rTs": ["2024-01-01T00:00:00Z", "2024-13-01T00:00:00Z"]}',
        'invalid value for field "rTs[1]": ',
    ),
    (b'{"dur": "5m"}', 'invalid value for field "dur": Duration must end with letter "s": 5m'),
    (
        b'{"dur": 5}',
        'invalid value for field "dur": expected a string for google.protobuf.Duration, got 5',
    ),
    (b'{"mask": "a_b"}', 'invalid value for field "mask": '),
    (
        b'{"nested": "name"}',
        'invalid value for field "nested": expected a JSON object for bridgetest.v1.Nested, '
        'got "name"',
    ),
    (
        b'{"nested": []}',
        'invalid value for field "nested": expected a JSON object for bridgetest.v1.Nested, '
        "got an array",
    ),
    (
        b'{"rNested": [1]}',
        'invalid value for field "rNested[0]": expected a JSON object for bridgetest.v1.Nested, '
        "got 1",
    ),
    (b'{"rInt32": 5}', 'invalid value for field "rInt32": expected an array, got 5'),
    (
        b'{"rInt32": [1, null]}',
        'invalid value for field "rInt32[1]": null is not allowed in an array',
    ),
    (
        b'{"mStrInt": []}',
        'invalid value for field "mStrInt": expected a JSON object (a map), got an array',
    ),
    (
        b'{"mStrInt": {"a": "x"}}',
        'invalid value for field "mStrInt[a]": expected an integer, got "x"',
    ),
    (
        b'{"mIntNested": {"x": {}}}',
        'invalid value for field "mIntNested[x]": expected an integer map key for int64',
    ),
    (
        b'{"mBoolStr": {"yes": "a"}}',
        'invalid value for field "mBoolStr[yes]": expected "true" or "false" as map key',
    ),
    (
        b'{"mIntNested": {"5": {"value": "x"}}}',
        'invalid value for field "mIntNested[5].value": expected an integer, got "x"',
    ),
    (b'{"fFloat": 1e39}', 'invalid value for field "fFloat": 1e+39 is out of range for float'),
    (b'{"fFloat": "1e39"}', 'invalid value for field "fFloat": "1e39" is out of range for float'),
    (
        b'{"fDouble": "nan"}',
        'invalid value for field "fDouble": expected a number (or "NaN", "Infinity", '
        '"-Infinity"), got "nan"',
    ),
    (b'{"wInt32": {}}', 'invalid value for field "wInt32": expected an integer, got an object'),
    (
        b'{"st": []}',
        'invalid value for field "st": expected a JSON object for google.protobuf.Struct, '
        "got an array",
    ),
    (
        b'{"lv": {}}',
        'invalid value for field "lv": expected an array for google.protobuf.ListValue, '
        "got an object",
    ),
    (b'{"empty": {"x": 1}}', 'unknown field "empty.x" in google.protobuf.Empty'),
    (b'{"any": {"value": 1}}', 'invalid value for field "any": missing "@type"'),
    (
        b'{"any": {"@type": "type.googleapis.com/nope.Nope"}}',
        'invalid value for field "any": unknown type "type.googleapis.com/nope.Nope" in "@type"',
    ),
    (
        b'{"any": {"@type": "type.googleapis.com/google.protobuf.Timestamp"}}',
        'invalid value for field "any": missing "value" for google.protobuf.Timestamp',
    ),
    (
        b'{"any": {"@type": "type.googleapis.com/bridgetest.v1.Nested", "value": "x"}}',
        'invalid value for field "any.value": expected an integer, got "x"',
    ),
    (
        b'{"any": {"@type": "type.googleapis.com/bridgetest.v1.Nested", "nope": 1}}',
        'unknown field "any.nope" in bridgetest.v1.Nested',
    ),
    (b"[1]", "expected a JSON object for bridgetest.v1.Kitchen, got an array"),
    (b'"x"', 'expected a JSON object for bridgetest.v1.Kitchen, got "x"'),
    (b"null", "expected a JSON object for bridgetest.v1.Kitchen, got null"),
    (b'{"fInt32": tru}', "malformed JSON: invalid literal, expected 'true' at line 1 column 12"),
    (b'{"fInt32": 1,}', "malformed JSON: trailing comma is not allowed at line 1 column 13"),
    (b'{"fDouble": NaN}', "malformed JSON: "),
    (b'{"fString": "\xff"}', "malformed JSON: not valid UTF-8 (invalid start byte at offset 13)"),
    (b"\xef\xbb\xbf", "malformed JSON: empty document"),
]


@pytest.mark.parametrize(("body", "message"), BAD_INPUTS)
def test_bad_input_is_invalid_argument_naming_the_field(
    codec: MessageCodec, body: bytes, message: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        codec.decode(body)
    assert caught.value.message.startswith(message)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.http_status == 400


def test_json_format_errors_keep_their_cause(codec: MessageCodec) -> None:
    with pytest.raises(InvalidArgument) as caught:
        codec.decode(b'{"nested": {"child": {"name": "x"}}, "ts": "2024-01-01"}')
    assert isinstance(caught.value.__cause__, json_format.ParseError)
    assert caught.value.message.startswith('invalid value for field "ts": ')


def test_unpaired_surrogate_from_a_parsed_value(codec: MessageCodec) -> None:
    with pytest.raises(InvalidArgument, match='field "fString"'):
        codec.decode_value({"fString": "\ud800"})


def test_ignore_unknown_fields(pool: DescriptorPool, kitchen: type[Message]) -> None:
    codec = MessageCodec(kitchen, pool, JsonOptions(ignore_unknown_fields=True))
    body = b"""{"foo": 1, "nested": {"bar": [1], "name": "x"}, "color": "PURPLE",
               "any": {"@type": "type.googleapis.com/google.protobuf.Duration",
                       "value": "1s", "extra": 1}}"""
    decoded: Any = codec.decode(body)
    assert decoded.nested.name == "x"
    assert not decoded.color  # an unknown enum name is ignored too, as json_format does
    assert decoded.any.type_url.endswith("Duration")
    with pytest.raises(InvalidArgument, match='field "fInt32"'):
        codec.decode(b'{"fInt32": "x"}')  # unknown fields only, not bad values


def test_top_level_well_known_types(pool: DescriptorPool) -> None:
    timestamps = MessageCodec(message_class(pool, "google.protobuf.Timestamp"), pool, JsonOptions())
    decoded: Any = timestamps.decode(b'"2024-01-01T00:00:00Z"')
    assert decoded.seconds == 1704067200
    assert timestamps.encode(decoded) == b'"2024-01-01T00:00:00Z"'
    with pytest.raises(InvalidArgument, match=r"expected a string for google\.protobuf\.Timestamp"):
        timestamps.decode(b"{}")
    wrapper = MessageCodec(message_class(pool, "google.protobuf.Int64Value"), pool, JsonOptions())
    assert wrapper.encode(wrapper.decode(b"12")) == b'"12"'
    empty = MessageCodec(message_class(pool, "google.protobuf.Empty"), pool, JsonOptions())
    assert empty.encode(empty.decode(b"{}")) == b"{}"


def test_encode_errors_are_internal(pool: DescriptorPool, kitchen: type[Message]) -> None:
    codec = MessageCodec(kitchen, pool, JsonOptions())
    message: Any = kitchen()
    message.val.number_value = math.nan  # no JSON form: it would read back as a string
    with pytest.raises(JsonEncodeError) as caught:
        codec.encode(message)
    assert caught.value.code == Code.INTERNAL and caught.value.http_status == 500
    unknown: Any = kitchen()
    unknown.any.type_url = "type.googleapis.com/nope.Nope"
    with pytest.raises(JsonEncodeError, match=r"nope\.Nope"):
        codec.encode(unknown)


# --- depth -----------------------------------------------------------------------------------


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize("make", [nested_arrays, nested_objects])
@pytest.mark.parametrize("limit", [1, 5, 64])
def test_depth_limit_is_exact(make: Any, limit: int) -> None:
    assert parse_json(make(limit), max_depth=limit) is not None
    with pytest.raises(InvalidArgument, match=f"^JSON nesting deeper than {limit} levels$"):
        parse_json(make(limit + 1), max_depth=limit)


def test_depth_counts_only_real_containers() -> None:
    # Brackets inside strings trip the cheap count, then the walk finds depth 2.
    body = b'{"s": "' + b"[" * 200 + b'", "t": [1, {"u": 2}]}'
    assert parse_json(body, max_depth=3) == {"s": "[" * 200, "t": [1, {"u": 2}]}
    wide = b"[" + b",".join([b"[1]"] * 1000) + b"]"
    parsed = parse_json(wide, max_depth=2)
    assert isinstance(parsed, list) and len(parsed) == 1000


@pytest.mark.parametrize("body", [b"[" * 1_000_000, nested_arrays(1_000_000), b'{"a":' * 1_000_000])
def test_a_million_levels_are_rejected_without_recursion(body: bytes) -> None:
    with pytest.raises(InvalidArgument, match=r"^JSON nesting deeper than 64 levels$"):
        parse_json(body, max_depth=64)


def test_orjson_limit_is_reported_as_a_depth_error() -> None:
    with pytest.raises(InvalidArgument, match=r"^JSON nesting deeper than 1024 levels$"):
        parse_json(nested_arrays(2000), max_depth=5000)


def test_codec_depth_limit(pool: DescriptorPool, kitchen: type[Message]) -> None:
    codec = MessageCodec(kitchen, pool, JsonOptions(max_depth=64))
    # {"st": {"a": ... {}}}: the Kitchen object, then a Struct 63 levels deep.
    ok = b'{"st":' + nested_objects(63) + b"}"
    assert codec.decode(ok) is not None
    with pytest.raises(InvalidArgument, match=r"^JSON nesting deeper than 64 levels$"):
        codec.decode(b'{"st":' + nested_objects(64) + b"}")


def test_decode_value_bounds_depth_of_prebuilt_values(codec: MessageCodec) -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(20_000):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(InvalidArgument, match="JSON nesting deeper than 64 levels"):
        codec.decode_value({"st": deep})
    recursive: dict[str, Any] = {"name": "x"}
    chain = recursive
    for _ in range(20_000):
        chain["child"] = {}
        chain = chain["child"]
    with pytest.raises(InvalidArgument, match="JSON nesting deeper than 64 levels"):
        codec.decode_value({"nested": recursive})


# --- properties ------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
KITCHEN_KEYS = sorted(
    {name for f in kitchen_pb2.Kitchen.DESCRIPTOR.fields for name in (f.name, f.json_name)}
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 2**64 - 1),
    st.floats(),
    st.floats(width=32),
    st.text(),
    st.binary(),
)
def test_scalars_round_trip_like_json_format(
    pool: DescriptorPool,
    kitchen: type[Message],
    codec: MessageCodec,
    i64: int,
    u64: int,
    double: float,
    single: float,
    text: str,
    data: bytes,
) -> None:
    # JSON has one NaN: a NaN's sign and payload bits can't survive any JSON round trip.
    double, single = (math.nan if math.isnan(x) else x for x in (double, single))
    message: Any = kitchen(
        f_int64=i64, f_uint64=u64, f_double=double, f_float=single, f_string=text, f_bytes=data
    )
    message.m_int_nested[i64].name = text
    message.r_string.append(text)
    expected = json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, descriptor_pool=pool
    )
    assert orjson.loads(codec.encode(message)) == expected
    assert serialized(codec.decode(codec.encode(message))) == serialized(message)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(KITCHEN_KEYS), JSON_VALUES, max_size=4))
def test_arbitrary_json_either_decodes_or_is_invalid_argument(
    pool: DescriptorPool, kitchen: type[Message], codec: MessageCodec, value: dict[str, Any]
) -> None:
    """Nothing but InvalidArgument ever escapes, and what decodes agrees with json_format."""
    try:
        decoded = codec.decode_value(value)
    except InvalidArgument:
        return
    expected = json_format.ParseDict(value, kitchen(), descriptor_pool=pool)
    assert serialized(decoded) == serialized(expected)


def test_float32_max_round_trips(pool: DescriptorPool, kitchen: type[Message]) -> None:
    """Shortest-form FLT_MAX (3.4028235e+38) is above json_format's limit; it must still read."""
    codec = MessageCodec(kitchen, pool, JsonOptions())
    flt_max = 3.4028234663852886e38
    message: Any = kitchen(f_float=flt_max)
    message.w_float.value = -flt_max
    message.any.Pack(message_class(pool, "google.protobuf.FloatValue")(value=flt_max))
    body = codec.encode(message)
    assert body.count(b"3.4028235e+38") == 3
    assert serialized(codec.decode(body)) == serialized(message)
    value = {"fFloat": 3.4028235e38}
    assert codec.decode_value(value).f_float == flt_max
    assert value == {"fFloat": "3.4028235e+38"}  # handed to json_format as text
    with pytest.raises(InvalidArgument, match=r'field "fFloat": .* is out of range for float'):
        codec.decode(b'{"fFloat": 3.4028235677973366e38}')
