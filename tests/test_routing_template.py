"""The HttpRule path-template parser: every grammar form, and malformed templates."""

from __future__ import annotations

import pytest

from grpc_bridge.codec.percent import decode_lenient, decode_path_value
from grpc_bridge.routing.template import SegmentKind, TemplateError, parse_template


@pytest.mark.parametrize(
    ("text", "shape", "variables", "verb"),
    [
        ("/v1/items", "/v1/items", {}, ""),
        ("/v1/items/{id}", "/v1/items/*", {"id": (2, 3, True)}, ""),
        ("/v1/items/{id=*}", "/v1/items/*", {"id": (2, 3, True)}, ""),
        (
            "/v1/{name=shelves/*/books/*}",
            "/v1/shelves/*/books/*",
            {"name": (1, 5, False)},
            "",
        ),
        ("/v1/files/{path=**}", "/v1/files/**", {"path": (2, 3, False)}, ""),
        ("/v1/{item.id}", "/v1/*", {"item.id": (1, 2, True)}, ""),
        ("/v1/{a.b.c_d}/x", "/v1/*/x", {"a.b.c_d": (1, 2, True)}, ""),
        ("/v1/items/{id}:publish", "/v1/items/*:publish", {"id": (2, 3, True)}, "publish"),
        ("/v1/items:batchGet", "/v1/items:batchGet", {}, "batchGet"),
        ("/v1/*/items/**", "/v1/*/items/**", {}, ""),
        (
            "/v1/{name=ops/**}/status/{id}",
            "/v1/ops/**/status/*",
            {"name": (1, 3, False), "id": (4, 5, True)},
            "",
        ),
        ("/v1/{name=x}", "/v1/x", {"name": (1, 2, False)}, ""),
        ("/v1/a%20b", "/v1/a b", {}, ""),
        ("/v1/a:b/c", "/v1/a:b/c", {}, ""),
        ("/v1/x:y:z", "/v1/x:y:z", {}, "z"),
        ("/v1/{name=a:b/*}", "/v1/a:b/*", {"name": (1, 3, False)}, ""),
        ("/v1/{name=**}:cancel", "/v1/**:cancel", {"name": (1, 2, False)}, "cancel"),
        ("/x", "/x", {}, ""),
        ("/~user/@home/a+b;c=d,e!$&'()", "/~user/@home/a+b;c=d,e!$&'()", {}, ""),
    ],
)
def test_valid_templates(
    text: str, shape: str, variables: dict[str, tuple[int, int, bool]], verb: str
) -> None:
    template = parse_template(text)
    assert template.text == text
    assert template.shape == shape
    assert template.verb == verb
    assert {v.name: (v.start, v.end, v.single) for v in template.variables} == variables


def test_segment_kinds_and_decoded_literals() -> None:
    template = parse_template("/v1/a%2Fb/*/{x=**}")
    kinds = [s.kind for s in template.segments]
    assert kinds == [SegmentKind.LITERAL, SegmentKind.LITERAL, SegmentKind.SINGLE, SegmentKind.DEEP]
    assert template.segments[1].value == "a/b"
    assert template.deep_index == 3


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v1/items", "must start with '/'"),
        ("", "must start with '/'"),
        ("/", "at least one segment"),
        ("/v1//items", "empty segment"),
        ("/v1/items/", "empty segment"),
        ("/v1/{id", "unterminated variable"),
        ("/v1/{id:verb", "unterminated variable"),
        ("/v1/id}", "'}' without '{'"),
        ("/v1/{a{b}}", "can't be nested"),
        ("/v1/{a=b/{c}}", "can't be nested"),
        ("/v1/{}", "is not a field path"),
        ("/v1/{1a}", "is not a field path"),
        ("/v1/{a..b}", "is not a field path"),
        ("/v1/{a-b}", "is not a field path"),
        ("/v1/x{id}", "must be a whole segment"),
        ("/v1/{id}x", "must be a whole segment"),
        ("/v1/{a}{b}", "must be a whole segment"),
        ("/v1/**/x/**", "'**' may appear only once"),
        ("/v1/{a=**}/{b=**}", "'**' may appear only once"),
        ("/v1/{id}/{id}", "field 'id' is bound twice"),
        ("/v1/{item.id}/x/{item.id=*}", "bound twice"),
        ("/v1/items:", "empty verb"),
        ("/v1/:verb", "must follow a segment"),
        ("/v1/it ems", "can't carry unescaped"),
        ("/v1/a?b", "can't carry unescaped"),
        ("/v1/a#b", "can't carry unescaped"),
        ("/v1/a%zz", "'%' must start a %XX escape"),
        ("/v1/a%2", "'%' must start a %XX escape"),
        ("/v1/{id=}", "empty pattern"),
        ("/v1/{id=a//b}", "empty segment"),
        ("/v1/items:a b", "verb"),
    ],
)
def test_malformed_templates(text: str, problem: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(text)
    message = str(info.value)
    assert message.startswith(f"invalid path template {text!r}: ")
    assert problem in message


@pytest.mark.parametrize(
    ("text", "path", "captures"),
    [
        ("/v1/items/{id}", "v1/items/42", {"id": "42"}),
        ("/v1/{item.id}", "v1/a%2Fb", {"item.id": "a%2Fb"}),
        ("/v1/{name=shelves/*/books/*}", "v1/shelves/1/books/2", {"name": "shelves/1/books/2"}),
        ("/v1/files/{path=**}", "v1/files/a/b/c", {"path": "a/b/c"}),
        ("/v1/files/{path=**}", "v1/files", {"path": ""}),
        ("/v1/{n=ops/**}/status/{id}", "v1/ops/a/b/status/9", {"n": "ops/a/b", "id": "9"}),
        ("/v1/{n=ops/**}/status/{id}", "v1/ops/status/9", {"n": "ops", "id": "9"}),
        ("/{a}/{b=x/*}/{c=**}", "1/x/2/3/4", {"a": "1", "b": "x/2", "c": "3/4"}),
    ],
)
def test_captures(text: str, path: str, captures: dict[str, str]) -> None:
    assert parse_template(text).captures(path.split("/")) == captures


@pytest.mark.parametrize(
    ("raw", "single", "decoded"),
    [
        ("plain", True, "plain"),
        ("a%2Fb", True, "a/b"),
        ("a%2fb", True, "a/b"),
        ("a%2Fb/c%20d", False, "a%2Fb/c d"),
        ("a%2fb", False, "a%2fb"),
        ("%3A%40%21%2B", False, "%3A%40%21%2B"),
        ("%3A%40%21%2B", True, ":@!+"),
        ("caf%C3%A9", True, "café"),
        ("caf%C3%A9/x", False, "café/x"),
        ("50%25", False, "50%"),
    ],
)
def test_percent_decoding(raw: str, single: bool, decoded: str) -> None:
    assert decode_path_value(raw, single=single) == decoded


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("a%zz", "malformed percent-encoding at '%zz'"), ("a%", "malformed"), ("%FF", "not UTF-8")],
)
def test_percent_decoding_errors(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_path_value(raw, single=True)
    assert decode_lenient(raw) == raw
