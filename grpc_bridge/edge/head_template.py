"""A response head made once per shape and filled in per answer: the lean edge's 200s.

Under load the answers of one method differ in three values only: the request
id, the Content-Length and the Date. The rest (the reply's headers, CORS, the
compression's ``Vary``, ``Connection: close``) is a function of a few inputs the
caller keys the template by. Building the head (a ``CIMultiDict``, the steps
that add to it, aiohttp's serializer) costs a few µs per answer; a template is
built by those very steps, run once with a mark in place of each of the three
values, and cut at the marks: filling it in is a join.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

#: Stand-ins for the values filled in per answer: characters no header value that
#: reaches the head holds (they are printable ASCII), and that aiohttp's serializer
#: writes as they are (UTF-8, no control character).
REQUEST_ID, LENGTH, DATE = "\ue001", "\ue002", "\ue003"
_MARKS = tuple(mark.encode() for mark in (REQUEST_ID, LENGTH, DATE))

#: Templates kept per edge: shapes are few (a method's answers share theirs); a memo
#: full of distinct shapes (Origins, upstream metadata values) is emptied, not swept.
MAX_TEMPLATES = 64


class Template:
    """A head cut at its marks: ``parts`` around the values, ``order`` which value goes
    in each gap (0: the request id, 1: the length, 2: the date)."""

    __slots__ = ("order", "parts")

    def __init__(self, parts: tuple[bytes, ...], order: tuple[int, ...]) -> None:
        self.parts = parts
        self.order = order

    def fill(self, request_id: str, length: int, date: str) -> bytes:
        """The head with these values: the bytes the steps would have made with them
        (``request_id`` and ``date`` printable ASCII, as the steps' own are)."""
        values = (request_id.encode("ascii"), b"%d" % length, date.encode("ascii"))
        parts, order = self.parts, self.order
        return b"".join(
            (
                parts[0],
                values[order[0]],
                parts[1],
                values[order[1]],
                parts[2],
                values[order[2]],
                parts[3],
            )
        )


def template_of(head: bytes) -> Template | None:
    """The template of a head made with the marks; None unless each is there once."""
    found = []
    for index, mark in enumerate(_MARKS):
        at = head.find(mark)
        if at < 0 or head.find(mark, at + 1) >= 0:
            return None
        found.append((at, index))
    found.sort()
    parts = []
    start = 0
    for at, index in found:
        parts.append(head[start:at])
        start = at + len(_MARKS[index])
    parts.append(head[start:])
    return Template(tuple(parts), tuple(index for _, index in found))


class HeadTemplates:
    """Templates by shape (whatever the caller's head is a function of, besides the three
    values); None kept for a shape that cannot have one."""

    __slots__ = ("_memo",)

    def __init__(self) -> None:
        self._memo: dict[Hashable, Template | None] = {}

    def head(
        self,
        shape: Hashable,
        build: Callable[[str, str, str], bytes],
        request_id: str,
        length: int,
        date: str,
    ) -> bytes | None:
        """The head of ``shape`` filled in; None: call ``build`` with the values.

        ``build(request_id, length, date)`` makes the head by the steps themselves.
        """
        memo = self._memo
        try:
            template = memo[shape]
        except KeyError:
            if len(memo) >= MAX_TEMPLATES:
                memo.clear()
            template = memo[shape] = template_of(build(REQUEST_ID, LENGTH, DATE))
        if template is None:
            return None
        return template.fill(request_id, length, date)
