import datetime

from bridgetest.v1 import common_pb2 as _common_pb2
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kitchen(_message.Message):
    __slots__ = ("f_double", "f_float", "f_int32", "f_int64", "f_uint32", "f_uint64", "f_sint32", "f_sint64", "f_fixed32", "f_fixed64", "f_sfixed32", "f_sfixed64", "f_bool", "f_string", "f_bytes", "color", "nested", "r_int32", "r_string", "r_nested", "r_color", "m_str_int", "m_int_nested", "m_bool_str", "o_string", "o_nested", "o_int64", "opt_int32", "opt_string", "ts", "dur", "st", "val", "any", "w_int32", "w_string", "w_bool", "w_int64", "w_bytes", "w_double", "mask", "empty", "lv", "r_ts", "m_values", "w_uint64", "w_float", "w_uint32")
    class MStrIntEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class MIntNestedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: _common_pb2.Nested
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[_common_pb2.Nested, _Mapping]] = ...) -> None: ...
    class MBoolStrEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: bool
        value: str
        def __init__(self, key: _Optional[bool] = ..., value: _Optional[str] = ...) -> None: ...
    class MValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    F_DOUBLE_FIELD_NUMBER: _ClassVar[int]
    F_FLOAT_FIELD_NUMBER: _ClassVar[int]
    F_INT32_FIELD_NUMBER: _ClassVar[int]
    F_INT64_FIELD_NUMBER: _ClassVar[int]
    F_UINT32_FIELD_NUMBER: _ClassVar[int]
    F_UINT64_FIELD_NUMBER: _ClassVar[int]
    F_SINT32_FIELD_NUMBER: _ClassVar[int]
    F_SINT64_FIELD_NUMBER: _ClassVar[int]
    F_FIXED32_FIELD_NUMBER: _ClassVar[int]
    F_FIXED64_FIELD_NUMBER: _ClassVar[int]
    F_SFIXED32_FIELD_NUMBER: _ClassVar[int]
    F_SFIXED64_FIELD_NUMBER: _ClassVar[int]
    F_BOOL_FIELD_NUMBER: _ClassVar[int]
    F_STRING_FIELD_NUMBER: _ClassVar[int]
    F_BYTES_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    NESTED_FIELD_NUMBER: _ClassVar[int]
    R_INT32_FIELD_NUMBER: _ClassVar[int]
    R_STRING_FIELD_NUMBER: _ClassVar[int]
    R_NESTED_FIELD_NUMBER: _ClassVar[int]
    R_COLOR_FIELD_NUMBER: _ClassVar[int]
    M_STR_INT_FIELD_NUMBER: _ClassVar[int]
    M_INT_NESTED_FIELD_NUMBER: _ClassVar[int]
    M_BOOL_STR_FIELD_NUMBER: _ClassVar[int]
    O_STRING_FIELD_NUMBER: _ClassVar[int]
    O_NESTED_FIELD_NUMBER: _ClassVar[int]
    O_INT64_FIELD_NUMBER: _ClassVar[int]
    OPT_INT32_FIELD_NUMBER: _ClassVar[int]
    OPT_STRING_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    DUR_FIELD_NUMBER: _ClassVar[int]
    ST_FIELD_NUMBER: _ClassVar[int]
    VAL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    W_INT32_FIELD_NUMBER: _ClassVar[int]
    W_STRING_FIELD_NUMBER: _ClassVar[int]
    W_BOOL_FIELD_NUMBER: _ClassVar[int]
    W_INT64_FIELD_NUMBER: _ClassVar[int]
    W_BYTES_FIELD_NUMBER: _ClassVar[int]
    W_DOUBLE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FIELD_NUMBER: _ClassVar[int]
    LV_FIELD_NUMBER: _ClassVar[int]
    R_TS_FIELD_NUMBER: _ClassVar[int]
    M_VALUES_FIELD_NUMBER: _ClassVar[int]
    W_UINT64_FIELD_NUMBER: _ClassVar[int]
    W_FLOAT_FIELD_NUMBER: _ClassVar[int]
    W_UINT32_FIELD_NUMBER: _ClassVar[int]
    f_double: float
    f_float: float
    f_int32: int
    f_int64: int
    f_uint32: int
    f_uint64: int
    f_sint32: int
    f_sint64: int
    f_fixed32: int
    f_fixed64: int
    f_sfixed32: int
    f_sfixed64: int
    f_bool: bool
    f_string: str
    f_bytes: bytes
    color: _common_pb2.Color
    nested: _common_pb2.Nested
    r_int32: _containers.RepeatedScalarFieldContainer[int]
    r_string: _containers.RepeatedScalarFieldContainer[str]
    r_nested: _containers.RepeatedCompositeFieldContainer[_common_pb2.Nested]
    r_color: _containers.RepeatedScalarFieldContainer[_common_pb2.Color]
    m_str_int: _containers.ScalarMap[str, int]
    m_int_nested: _containers.MessageMap[int, _common_pb2.Nested]
    m_bool_str: _containers.ScalarMap[bool, str]
    o_string: str
    o_nested: _common_pb2.Nested
    o_int64: int
    opt_int32: int
    opt_string: str
    ts: _timestamp_pb2.Timestamp
    dur: _duration_pb2.Duration
    st: _struct_pb2.Struct
    val: _struct_pb2.Value
    any: _any_pb2.Any
    w_int32: _wrappers_pb2.Int32Value
    w_string: _wrappers_pb2.StringValue
    w_bool: _wrappers_pb2.BoolValue
    w_int64: _wrappers_pb2.Int64Value
    w_bytes: _wrappers_pb2.BytesValue
    w_double: _wrappers_pb2.DoubleValue
    mask: _field_mask_pb2.FieldMask
    empty: _empty_pb2.Empty
    lv: _struct_pb2.ListValue
    r_ts: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    m_values: _containers.MessageMap[str, _struct_pb2.Value]
    w_uint64: _wrappers_pb2.UInt64Value
    w_float: _wrappers_pb2.FloatValue
    w_uint32: _wrappers_pb2.UInt32Value
    def __init__(self, f_double: _Optional[float] = ..., f_float: _Optional[float] = ..., f_int32: _Optional[int] = ..., f_int64: _Optional[int] = ..., f_uint32: _Optional[int] = ..., f_uint64: _Optional[int] = ..., f_sint32: _Optional[int] = ..., f_sint64: _Optional[int] = ..., f_fixed32: _Optional[int] = ..., f_fixed64: _Optional[int] = ..., f_sfixed32: _Optional[int] = ..., f_sfixed64: _Optional[int] = ..., f_bool: _Optional[bool] = ..., f_string: _Optional[str] = ..., f_bytes: _Optional[bytes] = ..., color: _Optional[_Union[_common_pb2.Color, str]] = ..., nested: _Optional[_Union[_common_pb2.Nested, _Mapping]] = ..., r_int32: _Optional[_Iterable[int]] = ..., r_string: _Optional[_Iterable[str]] = ..., r_nested: _Optional[_Iterable[_Union[_common_pb2.Nested, _Mapping]]] = ..., r_color: _Optional[_Iterable[_Union[_common_pb2.Color, str]]] = ..., m_str_int: _Optional[_Mapping[str, int]] = ..., m_int_nested: _Optional[_Mapping[int, _common_pb2.Nested]] = ..., m_bool_str: _Optional[_Mapping[bool, str]] = ..., o_string: _Optional[str] = ..., o_nested: _Optional[_Union[_common_pb2.Nested, _Mapping]] = ..., o_int64: _Optional[int] = ..., opt_int32: _Optional[int] = ..., opt_string: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dur: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., st: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., val: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., any: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., w_int32: _Optional[_Union[_wrappers_pb2.Int32Value, _Mapping]] = ..., w_string: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., w_bool: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ..., w_int64: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., w_bytes: _Optional[_Union[_wrappers_pb2.BytesValue, _Mapping]] = ..., w_double: _Optional[_Union[_wrappers_pb2.DoubleValue, _Mapping]] = ..., mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., empty: _Optional[_Union[_empty_pb2.Empty, _Mapping]] = ..., lv: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., r_ts: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ..., m_values: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., w_uint64: _Optional[_Union[_wrappers_pb2.UInt64Value, _Mapping]] = ..., w_float: _Optional[_Union[_wrappers_pb2.FloatValue, _Mapping]] = ..., w_uint32: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ("code", "message", "with_details", "trailers", "with_foreign_detail")
    class TrailersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WITH_DETAILS_FIELD_NUMBER: _ClassVar[int]
    TRAILERS_FIELD_NUMBER: _ClassVar[int]
    WITH_FOREIGN_DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    with_details: bool
    trailers: _containers.ScalarMap[str, str]
    with_foreign_detail: bool
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., with_details: _Optional[bool] = ..., trailers: _Optional[_Mapping[str, str]] = ..., with_foreign_detail: _Optional[bool] = ...) -> None: ...

class SleepRequest(_message.Message):
    __slots__ = ("duration", "tag")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    tag: str
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., tag: _Optional[str] = ...) -> None: ...

class SleepResponse(_message.Message):
    __slots__ = ("completed", "tag")
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    completed: bool
    tag: str
    def __init__(self, completed: _Optional[bool] = ..., tag: _Optional[str] = ...) -> None: ...

class MetadataResponse(_message.Message):
    __slots__ = ("received", "peer")
    class ReceivedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    received: _containers.ScalarMap[str, str]
    peer: str
    def __init__(self, received: _Optional[_Mapping[str, str]] = ..., peer: _Optional[str] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("count", "interval", "fail_code", "fail_after", "tag")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    FAIL_CODE_FIELD_NUMBER: _ClassVar[int]
    FAIL_AFTER_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    count: int
    interval: _duration_pb2.Duration
    fail_code: int
    fail_after: int
    tag: str
    def __init__(self, count: _Optional[int] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., fail_code: _Optional[int] = ..., fail_after: _Optional[int] = ..., tag: _Optional[str] = ...) -> None: ...

class StreamReply(_message.Message):
    __slots__ = ("index", "text")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    index: int
    text: str
    def __init__(self, index: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class StreamSummary(_message.Message):
    __slots__ = ("count", "texts")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    count: int
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, count: _Optional[int] = ..., texts: _Optional[_Iterable[str]] = ...) -> None: ...
