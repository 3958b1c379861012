"""Odd input at the edges of the browser protocols: address fields a client may not set,
malformed GET escapes, unfinished malformed heads (answered alike on both edges), and
trailers carried in the body, which are not HTTP fields and keep every name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from grpc_bridge.errors import InvalidArgument
from grpc_bridge.protocol.connect_errors import metadata_json
from grpc_bridge.protocol.connect_unary import get_message
from grpc_bridge.protocol.grpc_web_frames import trailer_frame
from grpc_bridge.upstream.metadata import ClientInfo, MetadataPolicy, to_metadata
from tests.helpers.raw_http import comparable, exchange
from tests.helpers.shared_bridges import SharedBridges, shared_bridges

_ALL = MetadataPolicy(forward_headers=frozenset(), max_bytes=8192, forward_all=True)
_CLIENT = ClientInfo(peer="203.0.113.9", host="bridge", scheme="http")


@pytest.mark.parametrize(
    "name",
    [
        "X-Client-IP",
        "CF-Connecting-IP",
        "Fastly-Client-IP",
        "X-Cluster-Client-IP",
        "X-Forwarded",
        "Forwarded-For",
    ],
)
def test_a_browser_client_cannot_name_its_own_address_in_any_common_field(name: str) -> None:
    """forward_all (gRPC-Web, Connect) drops Forwarded, X-Real-IP and True-Client-IP, but
    the other fields IP-extraction libraries read (request-ip: x-client-ip first) still
    reach the upstream as the client wrote them."""
    metadata = to_metadata([(name, "127.0.0.1")], _ALL, _CLIENT, "rid")
    assert name.lower() not in {key for key, _ in metadata}, metadata


@pytest.mark.parametrize(
    "query",
    [
        "encoding=json&message=%7B%22text%22%3A%22100%%22%7D",  # a lone '%'
        "encoding=json&message=%7B%22text%22%3A%22%zz%22%7D",  # '%' and no hex digits
        "encoding=json&message=%7B%7D%4",  # truncated escape
    ],
)
async def test_a_get_message_with_a_malformed_escape_is_refused_like_the_other_params(
    query: str,
) -> None:
    """Every other Connect GET parameter (and every REST query) is decoded strictly, a
    malformed escape a 400; the message is unquote_to_bytes'd, which keeps '%zz' as is,
    so a message no client could have encoded is called."""
    with pytest.raises(InvalidArgument):
        await get_message(query, 4096)


@pytest.fixture(scope="module")
def edges() -> Iterator[SharedBridges]:
    with shared_bridges(GRPC_BRIDGE_LIMITS__BODY_READ_TIMEOUT_S="2") as pair:
        yield pair


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS / HTTP/1.1\r\nBad Header: x\r\n",  # invalid header token, head not ended
        b"OPTIONS / HTTP/1.1\r\nX: a\x00b\r\n",  # NUL in a value
        b"GET / HTTP/9.9\r\n",  # bad version on the request line
        b"GET /a b HTTP/1.1\r\n",  # space in the target
    ],
)
async def test_a_malformed_unfinished_head_is_answered_alike_on_both_edges(
    edges: SharedBridges, data: bytes
) -> None:
    """aiohttp refuses a head at its first bad line with a 400 naming the problem; the lean
    edge now reads every head whole first (_REQUEST_LINE_START matches), so it sends
    nothing and closes at its head deadline: the two edges answer differently."""
    answer_plain = await exchange(edges.port("aiohttp"), data, within=6)
    answer_lean = await exchange(edges.port("lean"), data, within=6)
    assert not isinstance(answer_plain, str) and answer_plain[0] == 400, answer_plain
    assert comparable(answer_lean) == comparable(answer_plain)


#: Upstream trailing metadata an application may send (Envoy's grpc_web filter and
#: connect-go pass each on): none is an HTTP field where these placements put it.
_APP_TRAILERS = [
    ("content-language", "en"),
    ("server", "shard-7"),
    ("date", "2026-12-06"),
    ("vary", "tenant"),
    ("trailer-id", "t1"),
    ("x-request-id", "upstream-id"),
]


@pytest.mark.parametrize(("key", "value"), _APP_TRAILERS)
def test_trailing_metadata_in_a_grpc_web_trailer_frame_is_not_gated_as_http_fields(
    key: str, value: str
) -> None:
    """The trailer frame is in the body: _owned_by_http (meant for bare *response head*
    fields) applies to it too, since trailer_frame uses the bare placement."""
    frame = trailer_frame(0, "", None, [(key, value)])
    assert f"{key}: {value}\r\n".encode() in frame, frame


@pytest.mark.parametrize(("key", "value"), _APP_TRAILERS)
def test_trailing_metadata_in_a_connect_end_of_stream_is_not_gated_as_http_fields(
    key: str, value: str
) -> None:
    """Connect's end-of-stream ``metadata`` object is JSON in the body, not a head."""
    assert metadata_json([(key, value)]) == {key: [value]}
