"""HttpRule path templates (googleapis ``google/api/http.proto``): parse once, match many.

The grammar, as http.proto writes it::

    Template  = "/" Segments [ Verb ] ;
    Segments  = Segment { "/" Segment } ;
    Segment   = "*" | "**" | LITERAL | Variable ;
    Variable  = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb      = ":" LITERAL ;

Choices where http.proto is loose, following grpc-gateway's parser
(``internal/httprule/parse.go``) and matcher (``runtime/pattern.go``):

- The verb is whatever follows the last ``:`` of the last segment (outside a
  variable), so ``/v1/{name}:cancel`` has the verb ``cancel``; a ``:`` in any
  other segment is part of a literal.
- LITERALs are RFC 3986 pchars (unreserved, sub-delims, ``:``, ``@`` and
  ``%XX`` escapes); they are compared percent-decoded.
- ``**`` appears at most once. Like grpc-gateway, and unlike http.proto's
  "must be the last part", fixed segments may follow it
  (``/v1/{prefix=**}/operations/{op}``): ``**`` then takes every segment but
  that fixed tail. It matches zero segments too.
- A variable binds at most once per template; variables don't nest.

A parsed template knows which request segments each variable captures, so a
route table can match on segments alone and ask the winning template for its
captures afterwards (:meth:`PathTemplate.captures`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = ["PathTemplate", "SegmentKind", "TemplateError", "Variable", "parse_template"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 3986 pchar, with %XX escapes checked separately.
_PCHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+")


class TemplateError(ValueError):
    """A path template that is not valid; the message says where and why."""


class SegmentKind(enum.Enum):
    LITERAL = "literal"
    SINGLE = "*"
    DEEP = "**"


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentKind
    #: The literal, percent-decoded (empty for wildcards).
    value: str = ""

    def __str__(self) -> str:
        return self.value if self.kind is SegmentKind.LITERAL else self.kind.value


@dataclass(frozen=True, slots=True)
class Variable:
    """``{field.path=segments}``, over template segments ``start`` to ``end`` (exclusive)."""

    field_path: tuple[str, ...]
    start: int
    segments: tuple[Segment, ...]

    @property
    def name(self) -> str:
        return ".".join(self.field_path)

    @property
    def single(self) -> bool:
        """One ``*`` segment: its value is fully percent-decoded, ``%2F`` included."""
        return len(self.segments) == 1 and self.segments[0].kind is SegmentKind.SINGLE

    @property
    def end(self) -> int:
        return self.start + len(self.segments)


@dataclass(frozen=True, slots=True)
class PathTemplate:
    #: The template as written, e.g. ``/v1/{name=shelves/*}/books/{id}:publish``.
    text: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    #: Percent-decoded; empty when the template has none.
    verb: str
    #: Per variable: name, first and last+1 segment, and whether each index moves
    #: with ``**`` (segments after it are counted from the end). Made by the parser.
    _spans: tuple[tuple[str, int, int, bool, bool], ...] = field(default=(), repr=False)

    @property
    def deep_index(self) -> int | None:
        for i, segment in enumerate(self.segments):
            if segment.kind is SegmentKind.DEEP:
                return i
        return None

    @property
    def shape(self) -> str:
        """The template with variable names dropped: two templates with one shape match
        exactly the same paths (``/v1/items/{id}`` and ``/v1/{name=items/*}`` both give
        ``/v1/items/*``), which is what makes two bindings conflict."""
        path = "/" + "/".join(str(s) for s in self.segments)
        return f"{path}:{self.verb}" if self.verb else path

    def captures(self, raw_segments: Sequence[str]) -> dict[str, str]:
        """Each variable's value (still percent-encoded), for segments this template matched."""
        # How many more segments ** took than its one slot in the template (-1: none).
        shift = len(raw_segments) - len(self.segments)
        out: dict[str, str] = {}
        for name, start, stop, start_moves, stop_moves in self._spans:
            first = start + shift if start_moves else start
            last = stop + shift if stop_moves else stop
            out[name] = (
                raw_segments[first] if last - first == 1 else "/".join(raw_segments[first:last])
            )
        return out

    def __str__(self) -> str:
        return self.text


def parse_template(text: str) -> PathTemplate:
    """Parse an HttpRule path template; :class:`TemplateError` says what is wrong."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.segments: list[Segment] = []
        self.variables: list[Variable] = []

    def fail(self, problem: str) -> TemplateError:
        return TemplateError(f"invalid path template {self.text!r}: {problem}")

    def parse(self) -> PathTemplate:
        text = self.text
        if not text.startswith("/"):
            raise self.fail("it must start with '/'")
        body, verb = self._split_verb(text[1:])
        if not body:
            raise self.fail("it needs at least one segment after '/'")
        for part in self._top_level_parts(body):
            if part.startswith("{"):
                self._variable(part)
            else:
                self.segments.append(self._segment(part, inside=None))
        deep = [i for i, s in enumerate(self.segments) if s.kind is SegmentKind.DEEP]
        if len(deep) > 1:
            raise self.fail("'**' may appear only once")
        names = [v.name for v in self.variables]
        for name in names:
            if names.count(name) > 1:
                raise self.fail(f"field {name!r} is bound twice")
        at = deep[0] if deep else len(self.segments)
        spans = tuple(
            (v.name, v.start, v.end, v.start > at, v.end - 1 >= at) for v in self.variables
        )
        return PathTemplate(text, tuple(self.segments), tuple(self.variables), verb, spans)

    def _split_verb(self, body: str) -> tuple[str, str]:
        """(segments, verb): the verb follows the last ':' after the last '/' or '}'."""
        closing = body.rfind("}")
        if closing >= 0 and "{" in body[closing + 1 :]:
            raise self.fail("unterminated variable: '{' without '}'")
        start = max(closing, body.rfind("/")) + 1
        colon = body.rfind(":", start)
        if colon < 0:
            return body, ""
        verb = body[colon + 1 :]
        if not verb:
            raise self.fail("empty verb after ':'")
        if not _PCHARS.fullmatch(verb):
            raise self.fail(f"verb {verb!r} has characters a URL path can't carry unescaped")
        if colon == 0 or body[colon - 1] == "/":
            raise self.fail(f"the verb ':{verb}' must follow a segment")
        return body[:colon], unquote(verb)

    def _top_level_parts(self, body: str) -> list[str]:
        """Split on '/' outside braces; a variable stays one part."""
        parts: list[str] = []
        current = ""
        depth = 0
        for char in body:
            if char == "{":
                if depth:
                    raise self.fail("variables can't be nested")
                if current:
                    raise self.fail(f"a variable must be a whole segment (found {current!r}{{...)")
                depth = 1
            elif char == "}":
                if not depth:
                    raise self.fail("'}' without '{'")
                depth = 0
                current += char
                continue
            elif char == "/" and not depth:
                parts.append(current)
                current = ""
                continue
            elif not depth and current.endswith("}"):
                raise self.fail(f"a variable must be a whole segment (found {current}{char}...)")
            current += char
        if depth:
            raise self.fail("unterminated variable: '{' without '}'")
        parts.append(current)
        return parts

    def _variable(self, part: str) -> None:
        inner = part[1:-1]
        path, eq, pattern = inner.partition("=")
        field_path = tuple(path.split("."))
        for ident in field_path:
            if not _IDENT.fullmatch(ident):
                raise self.fail(
                    f"{path!r} in {part!r} is not a field path (identifiers joined by '.')"
                )
        if eq and not pattern:
            raise self.fail(f"empty pattern after '=' in {part!r}")
        pieces = pattern.split("/") if eq else ["*"]
        segments = tuple(self._segment(p, inside=part) for p in pieces)
        self.variables.append(Variable(field_path, len(self.segments), segments))
        self.segments.extend(segments)

    def _segment(self, part: str, *, inside: str | None) -> Segment:
        where = f" in {inside!r}" if inside else ""
        if part == "*":
            return Segment(SegmentKind.SINGLE)
        if part == "**":
            return Segment(SegmentKind.DEEP)
        if not part:
            raise self.fail(f"empty segment{where} ('//' or a trailing '/')")
        if "{" in part or "}" in part:
            raise self.fail(f"variables can't be nested ({part!r}{where})")
        if not _PCHARS.fullmatch(part):
            bad = next((c for c in part if not _PCHARS.fullmatch(c) and c != "%"), "%")
            raise self.fail(
                f"segment {part!r}{where} has {bad!r}, which a URL path can't carry unescaped"
                + (" (a '%' must start a %XX escape)" if bad == "%" else "")
            )
        return Segment(SegmentKind.LITERAL, unquote(part))
