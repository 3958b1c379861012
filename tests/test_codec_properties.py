"""The compiled fast path against json_format and the reference path, on generated messages.

Messages are drawn from the descriptors (every field of ``Kitchen``: each
scalar kind, enums, maps, oneofs, presence, each well-known type, ``Any`` of
several types) with edge values (NaN, ±Infinity, -0.0, 64-bit extremes,
float32 extremes, bytes that aren't UTF-8). For every ``json.*`` option
combination:

- encoding: the fast encoder must succeed and equal ``MessageToDict``, down to
  the text of each number (-0.0 stays -0.0);
- decoding: JSON printed by json_format must decode through the fast path to
  the message json_format parses (and the reference path builds);
- on arbitrary, mostly invalid JSON the fast path either builds exactly what the
  reference path builds or steps aside, so every error message stays the
  reference path's.

Everything goes through a private descriptor pool, as discovery builds it.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpc_bridge.codec.fast_decode import Fallback, decode_with
from grpc_bridge.codec.json_codec import JsonOptions, MessageCodec
from grpc_bridge.errors import BridgeError
from tests.helpers.codec_tools import build_private_pool, message_class, serialized
from tests.helpers.message_strategies import JSON_TREES, kitchens

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OUTPUT_OPTIONS = [
    JsonOptions(use_proto_names=names, emit_unpopulated=emit, enums_as_ints=ints)
    for names, emit, ints in itertools.product([False, True], repeat=3)
]
INPUT_OPTIONS = [
    JsonOptions(use_proto_names=names, ignore_unknown_fields=ignore)
    for names, ignore in itertools.product([False, True], repeat=2)
]
LEGACY_TYPE = "bridgetest.legacy.v1.Legacy"


def _legacy_file() -> descriptor_pb2.FileDescriptorProto:
    """proto2: a closed enum, explicit presence, a default, an extension, a group-free message."""
    fdp = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="bridgetest/legacy/v1/legacy.proto", package="bridgetest.legacy.v1", syntax="proto2"
    )
    mood = proto.enum_type.add(name="Mood")
    mood.value.add(name="CALM", number=1)
    mood.value.add(name="ANGRY", number=2)
    legacy = proto.message_type.add(name="Legacy")
    opt, rep = fdp.LABEL_OPTIONAL, fdp.LABEL_REPEATED
    legacy.field.add(name="text", number=1, label=opt, type=fdp.TYPE_STRING, json_name="text")
    legacy.field.add(
        name="mood",
        number=2,
        label=opt,
        type=fdp.TYPE_ENUM,
        type_name=".bridgetest.legacy.v1.Mood",
        json_name="mood",
    )
    legacy.field.add(
        name="count", number=3, label=opt, type=fdp.TYPE_INT64, default_value="7", json_name="count"
    )
    legacy.field.add(
        name="moods",
        number=4,
        label=rep,
        type=fdp.TYPE_ENUM,
        type_name=".bridgetest.legacy.v1.Mood",
        json_name="moods",
    )
    legacy.extension_range.add(start=100, end=200)
    proto.extension.add(
        name="note",
        number=100,
        label=opt,
        type=fdp.TYPE_STRING,
        extendee=".bridgetest.legacy.v1.Legacy",
        json_name="note",
    )
    return proto


@pytest.fixture(scope="module")
def pool() -> DescriptorPool:
    pool = build_private_pool(kitchen_pb2.DESCRIPTOR)
    pool.AddSerializedFile(_legacy_file().SerializeToString())
    return pool


@pytest.fixture(scope="module")
def kitchen(pool: DescriptorPool) -> type[Message]:
    return message_class(pool, "bridgetest.v1.Kitchen")


@pytest.fixture(scope="module")
def codecs(pool: DescriptorPool, kitchen: type[Message]) -> dict[JsonOptions, MessageCodec]:
    """One Kitchen codec per option combination, compiled once for all examples."""
    return {
        options: MessageCodec(kitchen, pool, options)
        for options in {*OUTPUT_OPTIONS, *INPUT_OPTIONS}
    }


# --- helpers ----------------------------------------------------------------------------------


def strict(value: Any) -> bytes:
    """Canonical text: equal only if every key, value and number's spelling (-0.0) is."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def printer_kwargs(options: JsonOptions, pool: DescriptorPool) -> dict[str, Any]:
    return {
        "preserving_proto_field_name": options.use_proto_names,
        "always_print_fields_with_no_presence": options.emit_unpopulated,
        "use_integers_for_enums": options.enums_as_ints,
        "descriptor_pool": pool,
    }


def reference_outcome(codec: MessageCodec, value: Any) -> bytes | str:
    try:
        return serialized(codec.reference_decode_value(value))
    except BridgeError as exc:
        return exc.message


def fast_outcome(codec: MessageCodec, value: Any) -> bytes | None:
    assert codec._fast_decode is not None
    message = decode_with(codec._fast_decode, codec.message_class, value)
    return None if message is None else serialized(message)


def has_value_error(message: Any) -> bool:
    """A NaN or infinity in a Value: json_format refuses to print it."""
    text = str(message)
    return (
        "number_value: nan" in text or "number_value: inf" in text or "number_value: -inf" in text
    )


# --- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options", OUTPUT_OPTIONS, ids=repr)
@PROPERTY
@given(data=st.data())
def test_fast_encoding_equals_message_to_dict(
    pool: DescriptorPool,
    codecs: dict[JsonOptions, MessageCodec],
    options: JsonOptions,
    data: st.DataObject,
) -> None:
    message = data.draw(kitchens(pool))
    codec = codecs[options]
    assert codec._fast_encode is not None
    if has_value_error(message):
        with pytest.raises(Fallback):
            codec._fast_encode(message)
        return
    expected = json_format.MessageToDict(message, **printer_kwargs(options, pool))
    assert strict(codec._fast_encode(message)) == strict(expected)
    assert strict(orjson.loads(codec.encode(message))) == strict(expected)


# --- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options", INPUT_OPTIONS, ids=repr)
@PROPERTY
@given(data=st.data())
def test_fast_decoding_equals_json_format(
    pool: DescriptorPool,
    kitchen: type[Message],
    codecs: dict[JsonOptions, MessageCodec],
    options: JsonOptions,
    data: st.DataObject,
) -> None:
    plain = data.draw(st.booleans())
    message = data.draw(kitchens(pool, plain=plain))
    if has_value_error(message):
        return
    codec = codecs[options]
    printed = json_format.MessageToDict(message, **printer_kwargs(options, pool))
    body = orjson.dumps(printed)
    decoded = serialized(codec.decode(body))
    assert decoded == serialized(codec.reference_decode_value(orjson.loads(body)))
    try:
        expected = json_format.Parse(body, kitchen(), descriptor_pool=pool)
    except json_format.ParseError:
        pass  # float32 maximum, which only the validator's text hand-over reads
    else:
        assert decoded == serialized(expected)
    # FLT_MAX prints as 3.4028235e+38, above json_format's limit: the reference path reads it.
    if plain and b"3.4028235e+38" not in body:
        # Nothing else here needs the reference path: the fast path must have built it.
        assert fast_outcome(codec, orjson.loads(body)) == decoded


def mutate(draw: Any, value: dict[str, Any]) -> dict[str, Any]:
    """Printed JSON with some values swapped for arbitrary ones, or keys respelled or added."""
    keys = sorted({n for f in kitchen_pb2.Kitchen.DESCRIPTOR.fields for n in (f.name, f.json_name)})
    edits = draw(st.lists(st.tuples(st.sampled_from(keys), JSON_TREES), max_size=3))
    out = dict(value)
    for key, replacement in edits:
        out[key] = replacement
    return out


@pytest.mark.parametrize("options", INPUT_OPTIONS, ids=repr)
@PROPERTY
@given(data=st.data())
def test_fast_decoding_never_disagrees_with_the_reference_path(
    pool: DescriptorPool,
    codecs: dict[JsonOptions, MessageCodec],
    options: JsonOptions,
    data: st.DataObject,
) -> None:
    message = data.draw(kitchens(pool, plain=True))
    printed = json_format.MessageToDict(message, **printer_kwargs(options, pool))
    value = mutate(data.draw, printed)
    codec = codecs[options]
    fast = fast_outcome(codec, orjson.loads(orjson.dumps(value, default=str)))
    reference = reference_outcome(codec, orjson.loads(orjson.dumps(value, default=str)))
    if fast is not None:
        assert fast == reference


EDGE_VALUES: list[dict[str, Any]] = [
    {"fDouble": "NaN", "fFloat": "-Infinity", "wDouble": "Infinity", "rTs": []},
    {"fInt64": "-9223372036854775808", "fUint64": "18446744073709551615", "fSfixed64": 0},
    {"fInt64": "9223372036854775808"},
    {"fInt64": "-0", "fInt32": "00"},
    {"fFloat": 3.4028235e38},
    {"fFloat": -3.4028234663852886e38, "fDouble": 1.7976931348623157e308},
    {"fBytes": "_-8", "wBytes": "/+8=", "rString": ["", "\u2028"]},
    {"fString": "\ud800"},
    {"mStrInt": {"\ud800": 1}},
    {"st": {"\ud800": 1}},
    {"val": None},
    {"val": 10**400},
    {"oString": "a", "oInt64": None},
    {"oInt64": None, "oString": "a"},
    {"oString": "a", "oNested": {}},
    {"fInt32": 1, "f_int32": 1},
    {"mIntNested": {"1": {"name": "a"}, "01": {"value": 2}}},
    {"mBoolStr": {"true": "t", "false": "f"}, "mIntNested": {"-9223372036854775808": {}}},
    {"ts": "2024-02-29T23:59:59.123456789Z", "rTs": ["0001-01-01T00:00:00Z"]},
    {"ts": "2023-02-29T00:00:00Z"},
    {"ts": "2024-01-01T00:00:60Z"},
    {"ts": "2024-01-01T00:00:00.5+01:00"},
    {"ts": "0000-01-01T00:00:00Z"},
    {"dur": "-0.000000001s", "mask": "a.bC,d"},
    {"any": {}},
    {"any": {"@type": "type.googleapis.com/bridgetest.v1.Nested", "name": "x"}},
    {"val": [], "lv": [None, [], {}], "st": {}},
    {"color": "RED", "rColor": ["BLUE", 2, 99]},
    {"color": "1"},
    {"color": "PURPLE"},
    {"color": 2**31},
    {"[bridgetest.v1.ext]": 1},
    {"unknown": 1, "nested": {"unknown": [1]}},
]


@pytest.mark.parametrize("options", INPUT_OPTIONS, ids=repr)
def test_edge_values_agree_with_the_reference_path(
    pool: DescriptorPool, kitchen: type[Message], options: JsonOptions
) -> None:
    codec = MessageCodec(kitchen, pool, options)
    for value in EDGE_VALUES:
        fast = fast_outcome(codec, value)
        reference = reference_outcome(codec, value)
        if fast is not None:
            assert fast == reference, value
        try:
            public: bytes | str = serialized(codec.decode_value(value))
        except BridgeError as exc:
            public = exc.message
        assert public == reference, value


def nested_chain(depth: int) -> dict[str, Any]:
    """{"nested": {"child": {"child": ...}}}: a JSON object ``depth`` levels deep."""
    value: dict[str, Any] = {"name": "leaf"}
    for _ in range(depth - 2):
        value = {"child": value}
    return {"nested": value}


def struct_chain(depth: int) -> dict[str, Any]:
    value: Any = [1.5]
    for _ in range(depth - 3):
        value = {"k": value}
    return {"st": {"k": value}}


def outcome(decode: Any, value: Any) -> bytes | str:
    try:
        return serialized(decode(value))
    except BridgeError as exc:
        return exc.message


@pytest.mark.parametrize("make", [nested_chain, struct_chain])
def test_depth_limit_is_the_same_on_both_paths(
    pool: DescriptorPool, kitchen: type[Message], make: Any
) -> None:
    codec = MessageCodec(kitchen, pool, JsonOptions(max_depth=16))
    for depth in range(12, 40):
        value = make(depth)
        # Parsed values: what the reference path makes of them, fast path or not.
        assert outcome(codec.decode_value, value) == reference_outcome(codec, value)
        if depth <= 16:
            assert fast_outcome(codec, value) == reference_outcome(codec, value)  # no fallback
        # Bodies: parse_json's limit first.
        body = outcome(codec.decode, orjson.dumps(value))
        if depth <= 16:
            assert body == reference_outcome(codec, value)
        else:
            assert body == "JSON nesting deeper than 16 levels"


# --- proto2: closed enums, explicit presence, extensions ----------------------------------------


def test_proto2_messages_match_json_format(pool: DescriptorPool) -> None:
    legacy = message_class(pool, LEGACY_TYPE)
    extension = pool.FindExtensionByName("bridgetest.legacy.v1.note")
    message: Any = legacy(text="", mood=2, count=7)
    message.moods.extend([1, 2])
    for options in OUTPUT_OPTIONS:
        codec = MessageCodec(legacy, pool, options)
        expected = json_format.MessageToDict(message, **printer_kwargs(options, pool))
        assert strict(codec.to_value(message)) == strict(expected)
        assert codec._fast_encode is not None
        assert strict(codec._fast_encode(message)) == strict(expected)  # no fallback
        body = orjson.dumps(expected)
        assert serialized(codec.decode(body)) == serialized(message)
    with_extension: Any = legacy(text="x")
    with_extension.Extensions[extension] = "hi"
    codec = MessageCodec(legacy, pool, JsonOptions())
    expected = json_format.MessageToDict(with_extension, **printer_kwargs(JsonOptions(), pool))
    assert expected["[bridgetest.legacy.v1.note]"] == "hi"
    assert codec.to_value(with_extension) == expected  # through json_format
    for value in (
        {"mood": 3},
        {"moods": [1, 5]},
        {"mood": "CALM"},
        {"[bridgetest.legacy.v1.note]": "n"},
    ):
        fast = fast_outcome(codec, value)
        reference = reference_outcome(codec, value)
        assert fast is None or fast == reference


def test_proto2_unknown_closed_enum_number_renders_like_json_format(pool: DescriptorPool) -> None:
    legacy = message_class(pool, LEGACY_TYPE)
    # An unknown number can only arrive on the wire (field 2 = 9).
    message = legacy.FromString(b"\x10\x09")
    codec = MessageCodec(legacy, pool, JsonOptions())
    try:
        expected: Any = json_format.MessageToDict(message, **printer_kwargs(JsonOptions(), pool))
    except json_format.SerializeToJsonError:
        expected = None
    if expected is None:
        with pytest.raises(BridgeError):
            codec.to_value(message)
    else:
        assert codec.to_value(message) == expected


def test_nan_value_is_the_reference_error(pool: DescriptorPool, kitchen: type[Message]) -> None:
    codec = MessageCodec(kitchen, pool, JsonOptions())
    message: Any = kitchen()
    message.st["x"] = math.inf
    with pytest.raises(BridgeError, match="Infinity"):
        codec.encode(message)


#: Well-known types whose JSON form is not an object of their fields.
_SPECIAL_JSON = {
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Any",
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
}


def json_format_is_laxer(value: Any, descriptor: Any) -> bool:
    """Whether ``value`` holds what json_format takes but the proto3 JSON mapping refuses.

    json_format iterates a list or a string given for a message as if it were
    an object (``[]`` is an empty message), reads ``true`` as enum number 1,
    wraps an enum number outside int32 into it (-4294967293 becomes 3), and
    skips a ``null`` before its check for a field given by both names. The
    bridge refuses each of these (the codec's docstring lists its choices).
    """
    if not isinstance(value, dict):
        return True
    by_name = {n: f for f in descriptor.fields for n in (f.name, f.json_name)}
    given = [by_name[key].name for key in value if key in by_name]
    if len(given) != len(set(given)):
        return True
    for key, item in value.items():
        field = by_name.get(key)
        if field is None or item is None:
            continue
        target = field
        items: list[Any] = item if field.is_repeated and isinstance(item, list) else [item]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if not isinstance(item, dict):
                continue
            target = field.message_type.fields_by_name["value"]
            items = list(item.values())
        if target.enum_type is not None and any(
            isinstance(i, bool) or (isinstance(i, int) and not -(2**31) <= i < 2**31) for i in items
        ):
            return True
        message_type = target.message_type
        if message_type is None or message_type.full_name.startswith("google.protobuf."):
            continue  # well-known types have JSON forms of their own
        if any(i is not None and json_format_is_laxer(i, message_type) for i in items):
            return True
    return False


def json_format_outcome(
    kitchen: type[Message], pool: DescriptorPool, options: JsonOptions, body: bytes
) -> bytes | None:
    """What json_format makes of ``body``: the message, or None for a refusal."""
    try:
        message = json_format.Parse(
            body,
            kitchen(),
            ignore_unknown_fields=options.ignore_unknown_fields,
            descriptor_pool=pool,
        )
    except (json_format.ParseError, ValueError, RecursionError):
        return None
    return serialized(message)


@pytest.mark.parametrize("options", INPUT_OPTIONS, ids=repr)
@PROPERTY
@given(data=st.data())
def test_client_json_is_accepted_or_refused_as_json_format_does(
    pool: DescriptorPool,
    kitchen: type[Message],
    codecs: dict[JsonOptions, MessageCodec],
    options: JsonOptions,
    data: st.DataObject,
) -> None:
    """Fuzz over the client trust boundary: any JSON body, through the codec the edge uses."""
    if data.draw(st.booleans()):
        message = data.draw(kitchens(pool, plain=True))
        printed = json_format.MessageToDict(message, **printer_kwargs(options, pool))
        value: Any = mutate(data.draw, printed)
    else:
        value = data.draw(JSON_TREES)
    body = orjson.dumps(value, default=str)
    try:
        ours: bytes | None = serialized(codecs[options].decode(body))
    except BridgeError:
        ours = None
    if json_format_is_laxer(value, kitchen.DESCRIPTOR):
        assert ours is None, body
        return
    theirs = json_format_outcome(kitchen, pool, options, body)
    if ours is not None and theirs is None and b"3.4028235e+38" in body:
        return  # float32's maximum as printed: the bridge reads it, json_format refuses
    assert ours == theirs, body
