"""Proto3 JSON <-> protobuf messages, one :class:`MessageCodec` per message type (spec §3).

Decoding a request body goes through three steps:

1. :func:`parse_json`: orjson, then a nesting-depth check that only walks the
   value when the body could be deeper than the limit.
2. A validation walk driven by a plan compiled once per message type. It
   rejects what ``json_format`` accepts silently or reports poorly (a string or
   array where an object belongs, lenient base64, ``"1_000"`` as an integer, an
   enum set from ``true``, one field spelled two ways, ``"1e39"`` in a float)
   and names every bad field by its path as the client wrote it:
   ``nested.child.value``, ``rNested[2].name``, ``mStrInt[a]``.
3. ``json_format.ParseDict`` against the upstream's private descriptor pool.
   The few errors left to it (Timestamp / Duration / FieldMask contents, closed
   enums) are reworded the same way.

Steps 2 and 3 are the *reference path*. In front of it runs a converter compiled
once per message type (fast_decode.py) that sets fields directly; it either
builds exactly the message the reference path would, or gives up and the
reference path decides — so every error message below comes from the reference
path. Likewise encoding runs generated per-type code (fast_encode.py), falling
back to ``json_format.MessageToDict``; then ``orjson.dumps``.

Error wording (all :class:`~grpc_bridge.errors.InvalidArgument`)::

    malformed JSON: unexpected character, expected a JSON value at line 1 column 5
    malformed JSON: not valid UTF-8 (invalid start byte at offset 3)
    JSON nesting deeper than 64 levels
    expected a JSON object for bridgetest.v1.Kitchen, got an array
    unknown field "nested.foo" in bridgetest.v1.Nested
    invalid value for field "fInt32": expected an integer, got "abc"
    invalid value for field "fUint32": -1 is out of range for uint32
    invalid value for field "color": unknown enum value "PURPLE" for bridgetest.v1.Color
    invalid value for field "fBytes": "!!" is not valid base64
    fields "oString" and "oInt64" both belong to oneof "choice"; set at most one
    field "fInt32" is given twice (also as "f_int32")

Choices: a leading UTF-8 BOM is accepted and skipped (RFC 8259 §8.1 allows it
and Windows tools send one); with duplicate keys in one object the last one
wins (orjson keeps it; the first can't be seen after parsing); ``null`` for any
field means "not set", as in the proto3 JSON mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError, Message
from google.protobuf.message import Error as ProtobufError

from grpc_bridge.codec.fast_decode import Decoders, Fallback, Filler, decode_with
from grpc_bridge.codec.fast_encode import Encoder, Encoders
from grpc_bridge.codec.validate import Plans, Validator
from grpc_bridge.errors import BridgeError, InvalidArgument, JsonEncodeError

if TYPE_CHECKING:  # only read, never built here: the codec needs no pydantic at run time
    from grpc_bridge.settings import Settings

__all__ = ["JsonEncodeError", "JsonOptions", "MessageCodec", "parse_json"]

_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r\n"
# orjson refuses documents nested deeper than this, whatever our own limit.
_ORJSON_MAX_DEPTH = 1024


@dataclass(frozen=True, slots=True)
class JsonOptions:
    """The ``json.*`` settings of spec §3; defaults are the spec's defaults."""

    use_proto_names: bool = False
    emit_unpopulated: bool = True
    enums_as_ints: bool = False
    ignore_unknown_fields: bool = False
    max_depth: int = 64

    @classmethod
    def from_settings(cls, settings: Settings) -> JsonOptions:
        """The options ``settings`` configure (``json.*`` and ``limits.max_json_depth``)."""
        j = settings.json_
        return cls(
            use_proto_names=j.use_proto_names,
            emit_unpopulated=j.emit_unpopulated,
            enums_as_ints=j.enums_as_ints,
            ignore_unknown_fields=j.ignore_unknown_fields,
            max_depth=settings.limits.max_json_depth,
        )


def _depth_error(max_depth: int) -> InvalidArgument:
    return InvalidArgument(f"JSON nesting deeper than {max_depth} levels")


def parse_json(body: bytes, *, max_depth: int) -> object:
    """Parse one JSON document, rejecting malformed input and nesting deeper than ``max_depth``.

    Depth counts containers: ``[]`` is 1, ``[[]]`` is 2. Never recurses, whatever the input.
    """
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _describe_decode_error(body, exc, max_depth) from exc
    # Every container opens with one of these bytes (brackets inside strings only
    # over-count), so most bodies need no walk at all.
    if len(body) > max_depth and body.count(b"[") + body.count(b"{") > max_depth:
        _check_depth(value, max_depth)
    return value


def _describe_decode_error(body: bytes, exc: orjson.JSONDecodeError, max_depth: int) -> BridgeError:
    if "depth limit" in exc.msg:
        return _depth_error(min(max_depth, _ORJSON_MAX_DEPTH))
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as utf8:
        return InvalidArgument(
            f"malformed JSON: not valid UTF-8 ({utf8.reason} at offset {utf8.start})"
        )
    if not body.strip(_JSON_WHITESPACE):
        return InvalidArgument("malformed JSON: empty document")
    return InvalidArgument(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")


def _check_depth(value: object, max_depth: int) -> None:
    if not isinstance(value, dict | list):
        return
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise _depth_error(max_depth)
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


class MessageCodec:
    """JSON <-> protobuf for one message type, built once per method at discovery time."""

    __slots__ = (
        "_decode_kwargs",
        "_encode_kwargs",
        "_fast_decode",
        "_fast_encode",
        "_max_depth",
        "_root",
        "_validator",
        "message_class",
    )

    def __init__(
        self, message_class: type[Message], pool: DescriptorPool, options: JsonOptions
    ) -> None:
        self.message_class = message_class
        self._max_depth = options.max_depth
        self._fast_decode: Filler | None = None
        self._fast_encode: Encoder | None = None
        if _fast_path_applies():
            descriptor = message_class.DESCRIPTOR
            self._fast_decode = Decoders(
                ignore_unknown=options.ignore_unknown_fields, max_depth=options.max_depth
            ).filler(descriptor)
            self._fast_encode = Encoders(
                pool,
                use_proto_names=options.use_proto_names,
                emit_unpopulated=options.emit_unpopulated,
                enums_as_ints=options.enums_as_ints,
            ).encoder(descriptor)
        plans = Plans(pool)
        self._root = plans.check_for_message(message_class.DESCRIPTOR)
        self._validator = Validator(plans, ignore_unknown=options.ignore_unknown_fields)
        self._decode_kwargs: dict[str, Any] = {
            "ignore_unknown_fields": options.ignore_unknown_fields,
            "descriptor_pool": pool,
            # json_format counts messages, not JSON levels: a Struct level costs
            # two (Value + Struct). The JSON depth was bounded already.
            "max_recursion_depth": 2 * options.max_depth + 2,
        }
        self._encode_kwargs: dict[str, Any] = {
            "preserving_proto_field_name": options.use_proto_names,
            "always_print_fields_with_no_presence": options.emit_unpopulated,
            "use_integers_for_enums": options.enums_as_ints,
            "descriptor_pool": pool,
        }

    def decode(self, body: bytes) -> Message:
        """One JSON document; an empty or all-whitespace body is the empty message."""
        if not body or (body[0] in _JSON_WHITESPACE and not body.strip(_JSON_WHITESPACE)):
            return self.message_class()
        return self.decode_value(parse_json(body, max_depth=self._max_depth))

    def decode_value(self, value: object) -> Message:
        """An already-parsed JSON value: an object for most messages, the JSON form for WKTs.

        A float32 number above 3.4028234663852886e38 (FLT_MAX printed in shortest
        form) is replaced in ``value`` by its text, the same value in proto3 JSON:
        json_format refuses it as a number.
        """
        if self._fast_decode is not None:
            message = decode_with(self._fast_decode, self.message_class, value)
            if message is not None:
                return message
        return self.reference_decode_value(value)

    def reference_decode_value(self, value: object) -> Message:
        """:meth:`decode_value` without the fast path: the validation walk, then json_format."""
        # Timestamp, wrappers ... take a non-dict JSON form, hence Any.
        js: Any = self._validator.validate(value, self._root)
        message = self.message_class()
        try:
            json_format.ParseDict(js, message, **self._decode_kwargs)
        except json_format.ParseError as exc:
            raise self._reword(str(exc)) from exc
        except RecursionError as exc:
            raise _depth_error(self._max_depth) from exc
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            # json_format lets some of these escape for inputs the walk didn't foresee.
            raise InvalidArgument(f"invalid JSON for {self._root.type_name}: {exc}") from exc
        return message

    def to_value(self, message: Message) -> Any:
        """JSON-compatible value of ``message``: dict, list, str, int, float, bool or None."""
        if self._fast_encode is not None:
            try:
                return self._fast_encode(message)
            except (Fallback, ValueError, TypeError, KeyError, AttributeError, DecodeError):
                pass  # json_format renders it, or raises the error to report
        return self.reference_to_value(message)

    def reference_to_value(self, message: Message) -> Any:
        """:meth:`to_value` without the fast path: ``json_format.MessageToDict``."""
        try:
            return json_format.MessageToDict(message, **self._encode_kwargs)
        except (json_format.Error, ProtobufError, ValueError, TypeError, KeyError) as exc:
            # message.Error: protobuf's DecodeError (an Any with a bad payload), which
            # with upb is not a ValueError.
            raise JsonEncodeError(
                f"cannot render {message.DESCRIPTOR.full_name} as JSON: {exc}"
            ) from exc

    def encode(self, message: Message) -> bytes:
        """Compact JSON bytes of ``message`` in the proto3 JSON mapping, with the options."""
        # to_value inlined: this runs once per message of every stream.
        fast = self._fast_encode
        if fast is not None:
            try:
                return orjson.dumps(fast(message))
            except (Fallback, ValueError, TypeError, KeyError, AttributeError, DecodeError):
                pass  # json_format renders it, or raises the error to report
        value = self.reference_to_value(message)
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError as exc:  # not expected from MessageToDict's output
            raise JsonEncodeError(
                f"cannot render {message.DESCRIPTOR.full_name} as JSON: {exc}"
            ) from exc

    def _reword(self, message: str) -> InvalidArgument:
        if "Message too deep" in message:
            return _depth_error(self._max_depth)
        return InvalidArgument(_reword_parse_error(message, self._root.type_name))


def _fast_path_applies() -> bool:
    """False once protobuf knows custom JSON enum names, which only json_format handles."""
    try:
        descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
    except KeyError:
        return True
    return False


# "Failed to parse nested field: Failed to parse ts field: <problem> at Kitchen.nested.ts."
_FAILED_FIELD = re.compile(r"Failed to parse (\S+) field: ")
_AT_PATH = re.compile(r" at \"?([\w.\[\]-]+?)\"?\.*$")


def _reword_parse_error(message: str, root_name: str) -> str:
    fields = _FAILED_FIELD.findall(message)
    problem = _FAILED_FIELD.sub("", message).split("\n", 1)[0].rstrip(".")
    at = _AT_PATH.search(problem)
    if at is not None:
        problem = problem[: at.start()]
        # json_format's paths start with the root message's short name.
        path = at.group(1).partition(".")[2]
    else:
        path = ".".join(fields)
    if not path:
        return f"invalid JSON for {root_name}: {problem}"
    return f'invalid value for field "{path}": {problem}'
