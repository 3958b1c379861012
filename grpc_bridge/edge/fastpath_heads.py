"""Which requests the lean HTTP/1.1 edge serves itself, decided from a parsed head alone.

A pure function of the head (edge/fastpath.py keeps what it says per head's
bytes): the method, target and framing headers (:func:`served_length`), then
the request's protocol, asked exactly as the aiohttp edge asks it
(``Protocols.of_head``): a JSON request with a plain ``application/json``
Content-Type (or none), or a unary call of a protocol whose steps are on
plain values (:class:`~grpc_bridge.protocol.base.PlainUnary`: gRPC-Web,
Connect) in a form those steps serve. Once routed, :func:`routed_here` keeps
unary methods only (a PlainUnary protocol's at its generic route).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import hdrs
from aiohttp.http import HttpVersion11

from grpc_bridge.discovery.registry import MethodKind
from grpc_bridge.edge.aiohttp_compat import RawRequestMessage
from grpc_bridge.pipeline.responses import JSON_CONTENT_TYPE
from grpc_bridge.protocol.base import PlainUnary
from grpc_bridge.protocol.select import Protocols
from grpc_bridge.routing.table import Match, MatchKind

#: The request methods served here. HEAD stays aiohttp's (it answers GET's status
#: and headers without the body), as do OPTIONS and custom methods.
_METHODS = frozenset({"POST", "GET", "PUT", "PATCH", "DELETE"})
#: Methods served without a Content-Length: their requests usually have no body.
_BODYLESS = frozenset({"GET", "DELETE"})
_GENERIC_METHODS = frozenset({"POST", "GET"})
#: An origin-form target made of RFC 3986 characters only (unreserved, sub-delims,
#: ":@/?" and "%"), no fragment. Bytes beyond those (controls, quotes, braces, "#")
#: are aiohttp's to judge, as they have been.
_PCHARS = r"-A-Za-z0-9._~!$&'()*+,;=:@/%"
_TARGET = re.compile(rf"/[{_PCHARS}]*(?:\?[{_PCHARS}?]*)?")
#: Request headers after which aiohttp decides: bodies it frames or inflates,
#: upgrades, preflights.
_HAND_OVER = (
    hdrs.TRANSFER_ENCODING,
    hdrs.EXPECT,
    hdrs.UPGRADE,
    hdrs.CONTENT_ENCODING,
    hdrs.ACCESS_CONTROL_REQUEST_METHOD,
    hdrs.SEC_WEBSOCKET_KEY,
)
# Header names as istr (aiohttp's): a case-insensitive lookup without folding the name.
CONTENT_TYPE, ACCEPT_ENCODING, ORIGIN, HOST = (
    hdrs.CONTENT_TYPE,
    hdrs.ACCEPT_ENCODING,
    hdrs.ORIGIN,
    hdrs.HOST,
)
_ACCEPTED = frozenset({"*/*", JSON_CONTENT_TYPE})
#: Connect's GET: its message in the query string (``?connect=v1&encoding=json&message=``).
_CONNECT_QUERY = "connect"


def served_length(message: RawRequestMessage) -> int | None:
    """The body length of a request whose head may be served here; None: aiohttp's."""
    method = message.method
    if (
        method not in _METHODS
        or message.version != HttpVersion11
        or message.chunked
        or message.upgrade
        or not _TARGET.fullmatch(message.path)
    ):
        return None
    headers = message.headers
    for name in _HAND_OVER:
        if name in headers:
            return None
    length = headers.get(hdrs.CONTENT_LENGTH)
    if length is None:
        return 0 if method in _BODYLESS else None
    return int(length)  # digits only: the parser refuses any other


def _json_served(message: RawRequestMessage) -> bool:
    """Whether a request of the JSON protocol is one served here."""
    headers = message.headers
    content_type = headers.get(CONTENT_TYPE)
    if content_type is not None and content_type != JSON_CONTENT_TYPE:
        return False  # binary protobuf, a charset parameter: aiohttp's
    if headers.get(hdrs.ACCEPT, "*/*") not in _ACCEPTED:
        return False
    return not (message.method == "GET" and _connect_get(message.path))


def _connect_get(target: str) -> bool:
    """A query string with a ``connect`` parameter (Connect's GET of a unary method)."""
    query = target.partition("?")[2]
    return _CONNECT_QUERY in query and any(
        item.partition("=")[0] == _CONNECT_QUERY for item in query.split("&")
    )


def routed_here(match: Match, method: str, plain: bool) -> bool:
    """A unary method through a REST binding, or a POST or GET to its generic route;
    ``plain`` (a :class:`PlainUnary` protocol's request): its generic route only.

    (A full match means the method is allowed there: GET only on methods marked
    NO_SIDE_EFFECTS.) Every streaming method and every request that matched
    nothing (404, 405) is aiohttp's.
    """
    return (
        match.kind is MatchKind.FULL
        and match.plan.info.kind is MethodKind.UNARY
        and (
            match.binding is None and method in _GENERIC_METHODS
            if plain
            else match.binding is not None or method in _GENERIC_METHODS
        )
    )


#: What a head served here comes to: its body's size, and for a :class:`PlainUnary`
#: protocol's request that protocol and the form its head asks for (JSON: None, None).
Served = tuple[int, PlainUnary | None, Any]


def served_head(message: RawRequestMessage, protocols: Protocols) -> Served | None:
    """What a head is, if it is one served here; None: aiohttp's."""
    length = served_length(message)
    if length is None:
        return None
    method, headers = message.method, message.headers
    protocol = protocols.of_head(method, headers, message.path.partition("?")[2])
    if protocol is protocols.json:
        return (length, None, None) if _json_served(message) else None
    if not isinstance(protocol, PlainUnary):
        return None  # Connect's streams
    form = protocol.unary_form(method, headers)
    return None if form is None else (length, protocol, form)
