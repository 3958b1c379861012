"""Hypothesis strategies for plain HTTP/1.1 requests to the bridge's JSON and REST routes.

For tests that send the same request to two bridges or over two protocols
(tests/test_edges_send_the_same_bytes.py, tests/test_http1_and_h2c_answer_alike.py):
methods, the generic and REST routes of the test services (and routes that are
none), path variables and query strings (escapes, unknown and Connect
parameters), headers (CORS ``Origin`` allowed or not, repeated ones, request
ids, timeouts, content and encoding negotiation, other protocols' markers) and
bodies (valid JSON, invalid JSON, wrong types, over ``MAX_BODY``); a third are
gRPC-Web and Connect unary calls (tests/helpers/browser_requests.py). The
bridge they go to runs with ``routes=ROUTES`` (tests/helpers/lean_path.py),
``cors=CORS`` and ``limits.max_request_bytes=MAX_BODY``.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

from tests.helpers.browser_requests import browser_requests
from tests.helpers.raw_http import ECHO, FAIL

__all__ = [
    "ALLOWED_ORIGIN",
    "CORS",
    "LOOKUP",
    "MAX_BODY",
    "METADATA",
    "SEGMENTS",
    "bodies",
    "requests",
    "targets",
]

MAX_BODY = 2048
ALLOWED_ORIGIN = "https://app.example"
CORS = {"allowed_origins": [ALLOWED_ORIGIN], "allow_credentials": True}
LOOKUP = "/bridgetest.v1.TestService/Lookup"
METADATA = "/bridgetest.v1.TestService/EchoMetadata"


SEGMENTS = st.sampled_from(
    ["1", "7", "abc", "a%2Fb", "x%20y", "%zz", "-3", "true", "BLUE", "special", "%C3%A9", "a.b"]
) | st.text(alphabet="abcXYZ019-._~!$&'()*+,;=:@", min_size=1, max_size=6)
TS = "2024-01-01T00:00:00Z"


@st.composite
def targets(draw: Any) -> str:
    seg = [draw(SEGMENTS) for _ in range(2)]
    path = draw(
        st.sampled_from(
            [
                ECHO,
                ECHO,
                LOOKUP,
                LOOKUP,
                FAIL,
                METADATA,
                "/nope.v1.Nope/Nope",
                f"/v1/things/{seg[0]}",
                f"/v1/things/{seg[0]}",
                f"/v1/things/{seg[0]}/tags",
                f"/v1/things/{seg[0]}/nested",
                f"/v1/shelves/{seg[0]}/things/{seg[1]}",
                "/v1/things/special",
                f"/v1/shelves/{seg[0]}/books/{seg[1]}",
                f"/v1/files/{seg[0]}/{seg[1]}",
                f"/v1/ops/{seg[0]}/status/{seg[1]}",
                f"/v1/typed/{seg[0]}/true/BLUE/{TS}/7",
                "/v1/things",
                f"/v1/things/{seg[0]}:archive",
                f"/v1/things/{seg[0]}/download",
                "/v1/echo-body",
                f"/v1/echo/{seg[0]}",
                "/v1/fail",
                "/v1/nothing/here",
            ]
        )
    )
    if draw(st.integers(0, 2)):
        return path
    names = ["name", "num", "tags", "color", "flag", "f_string", "fString", "f_int64"]
    names += ["r_string", "update_mask", "bogus", "connect", "encoding", "message", "nested.name"]
    values = ["x", "1", "a+b", "%20", "%zz", "BLUE", "true", "v1", "", "%C3%A9", "%FF"]
    items = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(values)), max_size=4))
    return path + "?" + "&".join(f"{name}={value}" for name, value in items)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=6,
)
FIELDS = ["fString", "fInt32", "fInt64", "fBool", "rString", "name", "id", "num", "flag"]
FIELDS += ["color", "tags", "nested", "code", "message", "bogus", "contentType", "data"]


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["json"] * 6 + ["typed", "invalid", "empty", "oversize"]))
    if kind == "json":
        return orjson.dumps(draw(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=3)))
    if kind == "typed":  # values of the fields' own types, the answers that succeed
        return orjson.dumps(
            draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "fString": st.text(max_size=8),
                        "fInt32": st.integers(-(2**31), 2**31 - 1),
                        "name": st.text(max_size=8),
                        "num": st.integers(0, 99).map(str),
                        "tags": st.lists(st.text(max_size=3), max_size=2),
                    },
                )
            )
        )
    if kind == "invalid":
        return draw(st.sampled_from([b"{", b"{not json", b"[1,", b'{"a":}', b"\xff\xfe", b"nul"]))
    if kind == "empty":
        return b""
    return b'{"fString": "' + b"x" * (MAX_BODY + draw(st.integers(1, 500))) + b'"}'


EXTRA_HEADERS = [
    f"Origin: {ALLOWED_ORIGIN}",
    f"Origin: {ALLOWED_ORIGIN}",
    "Origin: https://other.example",
    "X-Request-Id: req-1",
    "X-Request-Id: req 2",
    "X-Request-Id: a\tb",
    "Grpc-Timeout: 5S",
    "Grpc-Timeout: banana",
    "Connect-Timeout-Ms: 3000",
    "Accept: application/json",
    "Accept: */*",
    "Accept: application/x-ndjson",
    "Accept-Encoding: gzip",
    "Accept-Encoding: identity;q=0",
    "Accept-Encoding: br, gzip;q=0.5",
    "x-custom: a",
    "x-custom: b",
    "Grpc-Metadata-Trace: 1",
    "Authorization: Bearer t",
    "Connection: keep-alive",
    "Connection: close",
    "Connection: upgrade",
    "Connection: keep-alive, TE",
    "Connect-Protocol-Version: 1",
    "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "User-Agent: t",
    "Access-Control-Request-Method: POST",
    "Content-Encoding: identity",
]
CONTENT_TYPES = ["application/json"] * 6 + [
    None,
    "text/plain",
    "application/json; charset=utf-8",
    "application/grpc-web+json",
    "application/connect+json",
    "application/proto",
]


#: Headers that leave a request the lean edge's to serve.
BENIGN_HEADERS = [
    f"Origin: {ALLOWED_ORIGIN}",
    "Origin: https://other.example",
    "X-Request-Id: req-1",
    "Grpc-Timeout: 5S",
    "Accept: application/json",
    "Accept-Encoding: gzip",
    "Accept-Encoding: br, gzip;q=0.5",
    "x-custom: a",
    "x-custom: b",
    "Grpc-Metadata-Trace: 1",
    "Connection: keep-alive",
    "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
]
THING = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=8),
        "num": st.integers(0, 99).map(str),
        "tags": st.lists(st.text(max_size=3), max_size=2),
        "flag": st.booleans(),
    },
).map(orjson.dumps)
KITCHEN = st.fixed_dictionaries(
    {}, optional={"fString": st.text(max_size=8), "fInt32": st.integers(-5, 5)}
).map(orjson.dumps)
FAILURE = st.builds(
    lambda code, text: orjson.dumps({"code": code, "message": text}),
    st.integers(1, 16),
    st.text(max_size=8),
)
NO_BODY: st.SearchStrategy[bytes | None] = st.none()
#: Requests the lean edge serves, most of the time: (method, path, body).
SERVED = [
    ("POST", st.just(ECHO), KITCHEN),
    ("GET", st.sampled_from([LOOKUP, f"{LOOKUP}?f_string=x&r_string=a&r_string=b"]), NO_BODY),
    ("GET", st.just(METADATA), NO_BODY),
    ("POST", st.sampled_from([FAIL, "/v1/fail"]), FAILURE),
    ("GET", SEGMENTS.map(lambda s: f"/v1/things/{s}?name=a+b&tags=x&tags=y"), NO_BODY),
    ("GET", SEGMENTS.map(lambda s: f"/v1/things/{s}/download?tags=a"), NO_BODY),
    ("POST", st.just("/v1/things"), THING),
    ("PUT", SEGMENTS.map(lambda s: f"/v1/things/{s}"), THING),
    ("PATCH", SEGMENTS.map(lambda s: f"/v1/things/{s}"), THING),
    ("DELETE", SEGMENTS.map(lambda s: f"/v1/things/{s}"), NO_BODY),
    ("PATCH", st.just("/v1/echo/5"), KITCHEN),
]


@st.composite
def requests(draw: Any) -> tuple[str, bytes, bool]:
    """(method, bytes, whether it is a gRPC-Web or Connect unary request)."""
    if not draw(st.integers(0, 2)):
        return (*draw(browser_requests(MAX_BODY)), True)
    headers = ["Host: bridge"]
    if draw(st.booleans()):
        method, paths, bodies_of = draw(st.sampled_from(SERVED))
        target = draw(paths)
        body = draw(bodies_of)
        if body is not None:
            headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        headers += draw(st.lists(st.sampled_from(BENIGN_HEADERS), max_size=4))
    else:
        method = draw(
            st.sampled_from(
                ["GET"] * 5 + ["POST"] * 5 + ["PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
            )
        )
        target = draw(targets())
        with_body = method in ("POST", "PUT", "PATCH") or not draw(st.integers(0, 5))
        body = draw(bodies()) if with_body else None
        if not draw(st.integers(0, 30)):
            headers = []  # no Host: aiohttp's parser refuses it
        if body is not None:
            content_type = draw(st.sampled_from(CONTENT_TYPES))
            if content_type is not None:
                headers.append(f"Content-Type: {content_type}")
            headers.append(f"Content-Length: {len(body)}")
        headers += draw(st.lists(st.sampled_from(EXTRA_HEADERS), max_size=5))
    headers = draw(st.permutations(headers))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    return method, head.encode() + (body or b""), False
