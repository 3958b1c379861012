"""The hot path's memos answer exactly what the work they save computes, on generated input.

Each memo is keyed on what its result is a pure function of: REST query
parameter routes (codec/query.py, by message, name, bound paths and body
field), what a response header block comes to (upstream/h2/grpc_status.py:
status and metadata), encoded metadata fields (upstream/grpc_request.py), the metadata of headers
seen before (upstream/metadata.py), and
the lean edge's response heads by shape (edge/head_template.py).
The memo is first filled by the same input under every other value of the
rest of its key; then its answer is compared with the computation run with
the memo empty, so that a key missing a part shows as a wrong answer.
"""

from __future__ import annotations

import base64
from functools import partial
from typing import Any

from bridgetest.v1 import kitchen_pb2
from google.protobuf.descriptor import Descriptor
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from grpc_bridge.codec import query
from grpc_bridge.edge import head_template
from grpc_bridge.edge.aiohttp_compat import serialize_head
from grpc_bridge.edge.cors import CorsPolicy
from grpc_bridge.edge.head_template import HeadTemplates, template_of
from grpc_bridge.edge.steps import prepare_headers
from grpc_bridge.errors import BridgeError
from grpc_bridge.settings.http import Cors
from grpc_bridge.upstream import grpc_request
from grpc_bridge.upstream.h2 import grpc_status, hpack_codec
from grpc_bridge.upstream.metadata import ClientInfo, MetadataMemo, MetadataPolicy, to_metadata
from tests.helpers.codec_tools import build_private_pool, message_class

KITCHEN: Descriptor = message_class(
    build_private_pool(kitchen_pb2.DESCRIPTOR), "bridgetest.v1.Kitchen"
).DESCRIPTOR

SEGMENTS = st.sampled_from(
    [
        "f_string", "fString", "f_int64", "nested", "name", "r_int32", "r_nested",
        "m_str_int[k]", "m_str_int", "m_int_nested[7]", "m_int_nested[x]", "m_bool_str[true]",
        "o_nested", "nope", "", "f_string[k]",
    ]
)  # fmt: skip
NAMES = st.lists(SEGMENTS, min_size=1, max_size=3).map(".".join)
BINDINGS: list[tuple[str, ...]] = [(), ("nested.name",), ("f_string", "f_int64")]
BODIES = [None, "nested", "f_string"]
VALUES = st.sampled_from(["1", "x", "true", "-3", ""])


def _outcome(descriptor: Descriptor, pairs: list[tuple[str, str]], **kwargs: Any) -> Any:
    try:
        return ("value", query.query_to_value(descriptor, pairs, **kwargs))
    except BridgeError as exc:
        return ("error", type(exc), exc.message)


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(st.tuples(NAMES, VALUES), max_size=3),
    bound=st.sampled_from(BINDINGS),
    body=st.sampled_from(BODIES),
    ignore_unknown=st.booleans(),
)
def test_query_parameter_routes_answer_as_resolved(
    pairs: list[tuple[str, str]], bound: tuple[str, ...], body: str | None, ignore_unknown: bool
) -> None:
    for other_bound in BINDINGS:
        for other_body in BODIES:
            _outcome(KITCHEN, pairs, bound=other_bound, body=other_body)
    kwargs: dict[str, Any] = {"bound": bound, "body": body, "ignore_unknown": ignore_unknown}
    remembered = _outcome(KITCHEN, pairs, **kwargs)
    query._ROUTES.clear()
    assert remembered == _outcome(KITCHEN, pairs, **kwargs)


HEADER_NAMES = st.sampled_from(
    [
        "grpc-status", "grpc-message", "grpc-status-details-bin", "content-type", "x-a",
        "x-b-bin", ":status", "grpc-encoding", "te",
    ]
)  # fmt: skip
HEADER_VALUES = st.sampled_from(
    ["0", "5", "13", "99", "x", "a%20b", "%zz", "AP8", "AP8=", "!!", "", "m" * 1100]
)
BLOCKS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=5).map(tuple)


HTTP_STATUSES = [None, "200", "503", "404", "abc"]


@settings(max_examples=300, deadline=None)
@given(block=BLOCKS, http_status=st.sampled_from(HTTP_STATUSES))
def test_header_blocks_read_as_computed(
    block: tuple[tuple[str, str], ...], http_status: str | None
) -> None:
    for other in HTTP_STATUSES:
        grpc_status.status_of(block, other)
    grpc_status.metadata_of(block)
    status = grpc_status.status_of(block, http_status)
    metadata = grpc_status.metadata_of(block)
    grpc_status._status_memo.clear()
    grpc_status._metadata_memo.clear()
    assert grpc_status._read_status(block, http_status) == status
    assert grpc_status._read_metadata(block) == metadata


ENTRIES = st.lists(
    st.tuples(
        st.sampled_from(["x-forwarded-for", "x-a", "trace-bin", "token", "x-request-id"]),
        st.one_of(
            st.sampled_from(["127.0.0.1", "", "v" * 126, "v" * 127, "v" * 300]),
            st.binary(max_size=40),
        ),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(entries=ENTRIES)
def test_metadata_fields_encode_as_computed(entries: list[tuple[str, str | bytes]]) -> None:
    computed = b"".join(grpc_request.metadata_field(name, value) for name, value in entries)
    # Each field as hpack_codec writes a literal (the request id's by its kept name part).
    assert computed == b"".join(
        hpack_codec.literal(
            name.encode(),
            base64.b64encode(value).rstrip(b"=") if isinstance(value, bytes) else value.encode(),
        )
        for name, value in entries
    )
    assert grpc_request.metadata_block(entries) == computed
    assert grpc_request.metadata_block(entries) == computed


HEAD_NAMES = st.sampled_from(
    ["Content-Type", "x-a", "X-Request-Id", "content-length", "Date", "server", "Vary", "grpc-x"]
)
HEAD_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
ORIGINS = st.sampled_from([None, "https://app.example", "https://other.example"])


def _edge_head(
    cors: CorsPolicy,
    reply: list[tuple[str, str]],
    request_id: str,
    length: str,
    date: str,
    close: bool,
    origin: str | None,
) -> bytes:
    # The lean edge's steps for a 200 (edge/fastpath_serve.py: _ok_head, _head).
    headers = CIMultiDict(reply)
    headers["X-Request-Id"] = request_id
    headers["Content-Length"] = length
    headers["Date"] = date
    headers["Server"] = "aiohttp"
    if close:
        headers["Connection"] = "close"
    prepare_headers(headers, request_id, cors, origin, close, lambda name: name.startswith("x-"))
    return serialize_head("HTTP/1.1 200 OK", headers)


@settings(max_examples=300, deadline=None)
@given(
    reply=st.lists(st.tuples(HEAD_NAMES, HEAD_VALUES), max_size=4),
    request_id=HEAD_VALUES.filter(bool),
    length=st.integers(min_value=0, max_value=10**9),
    date=HEAD_VALUES,
    close=st.booleans(),
    origin=ORIGINS,
    allowed=st.sampled_from([[], ["*"], ["https://app.example"]]),
)
def test_head_templates_fill_in_what_the_steps_make(
    reply: list[tuple[str, str]],
    request_id: str,
    length: int,
    date: str,
    close: bool,
    origin: str | None,
    allowed: list[str],
) -> None:
    cors = CorsPolicy(Cors(allowed_origins=allowed), (), ())
    templates = HeadTemplates()
    shape = (tuple(reply), close, origin)

    def build(request_id: str, length: str, date: str) -> bytes:
        return _edge_head(cors, reply, request_id, length, date, close, origin)

    templates.head(shape, build, "other-id", 7, "Sun, 06 Dec 2026 12:00:00 GMT")  # filled first
    computed = build(request_id, str(length), date)
    assert templates.head(shape, build, request_id, length, date) == computed
    # A template is found for every head whose values hold no mark (all of them here).
    assert template_of(build(head_template.REQUEST_ID, head_template.LENGTH, head_template.DATE))


REQUEST_HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "X-Request-Id", "x-a", "Grpc-Metadata-b", "Authorization", "X-Forwarded-For",
                "t-bin", "Host", "Content-Type", "x-denied", "Bad Key",
            ]
        ),
        st.sampled_from(["v", "", "AP8", "10.0.0.1", "é", "v" * 200]),
    ),
    max_size=5,
)  # fmt: skip
POLICIES = [
    MetadataPolicy(frozenset(), 4096),
    MetadataPolicy(frozenset({"x-request-id", "x-a"}), 4096, trust_forwarded_for=True),
    MetadataPolicy(frozenset(), 4096, forward_all=True, deny_headers=frozenset({"x-request-id"})),
    MetadataPolicy(frozenset(), 300, forward_all=True),
]


def _metadata_outcome(call: Any) -> Any:
    try:
        return ("metadata", call())
    except BridgeError as exc:
        return ("error", type(exc), exc.message)


@settings(max_examples=300, deadline=None)
@given(
    pairs=REQUEST_HEADERS,
    policy=st.sampled_from(POLICIES),
    peer=st.sampled_from([None, "127.0.0.1"]),
    request_id=st.sampled_from(["0" * 32, "client-id", "f" * 40]),
)
def test_metadata_of_headers_seen_before_is_computed_anew(
    pairs: list[tuple[str, str]], policy: MetadataPolicy, peer: str | None, request_id: str
) -> None:
    headers = CIMultiDictProxy(CIMultiDict(pairs))
    client = ClientInfo(peer=peer, host=headers.get("Host"), scheme="http")
    memo = MetadataMemo()
    for other_policy in POLICIES:
        for other_id in ("1" * 32, "other-id!", "e" * 40):
            _metadata_outcome(partial(memo.metadata, headers, other_policy, client, other_id))
    computed = _metadata_outcome(lambda: to_metadata(headers.items(), policy, client, request_id))
    assert _metadata_outcome(lambda: memo.metadata(headers, policy, client, request_id)) == computed
