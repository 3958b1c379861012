"""A trie over path segments: which templates match a request path, most specific first.

Each edge is a literal segment, ``*`` (one non-empty segment) or ``**`` (any
number of segments, then a fixed tail). Templates of one shape
(``/v1/items/{id}`` and ``/v1/{name=items/*}``) end at the same node, which
is how conflicts are found on insertion.

Lookup walks the request's segments once, preferring a literal over ``*`` over
``**`` and backtracking only where two of them could both continue: the cost
follows the number of segments, not the number of routes (a list scan, as
grpc-gateway's mux does, grows with every binding). Results come out most
specific first, so the first one that accepts the HTTP method wins, and a
path that only matches with other methods can still be told apart (405) from
one that matches nothing (404).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from grpc_bridge.codec.percent import decode_lenient
from grpc_bridge.routing.template import PathTemplate, SegmentKind

__all__ = ["ANY_METHOD", "Leaf", "SegmentTrie", "serving", "sort_methods", "with_head"]

V = TypeVar("V")

#: ``custom: {kind: "*"}``: http.proto's wildcard HTTP method.
ANY_METHOD = "*"

# The order methods are listed in an Allow header; custom kinds follow, sorted.
_METHOD_ORDER = {m: i for i, m in enumerate(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"))}


def sort_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """Unique, in Allow-header order."""
    return tuple(sorted(set(methods), key=lambda m: (_METHOD_ORDER.get(m, len(_METHOD_ORDER)), m)))


def with_head(methods: Iterable[str]) -> tuple[str, ...]:
    """``methods`` and HEAD wherever GET is one of them (RFC 9110 §9.3.2), in Allow-header order."""
    listed = set(methods)
    return sort_methods(listed | {"HEAD"} if "GET" in listed else listed)


def serving(methods: dict[str, V]) -> dict[str, V]:
    """What each request method finds: the bound ones, and HEAD the GET binding's
    unless a binding takes HEAD itself."""
    get = methods.get("GET")
    if get is None or "HEAD" in methods:
        return methods
    return {**methods, "HEAD": get}


class Leaf(Generic[V]):
    """Where templates of one shape and verb end: their values by HTTP method."""

    __slots__ = ("allowed", "methods", "served")

    def __init__(self) -> None:
        #: As bound (what clashes are found on).
        self.methods: dict[str, V] = {}
        #: What a request's method looks up: ``methods`` with HEAD served like GET.
        self.served: dict[str, V] = {}
        #: ``served``'s keys in Allow-header order.
        self.allowed: tuple[str, ...] = ()


class _Node(Generic[V]):
    __slots__ = ("deep", "leaves", "literals", "star")

    def __init__(self) -> None:
        self.literals: dict[str, _Node[V]] = {}
        self.star: _Node[V] | None = None
        #: Tail length after ``**`` -> the trie of those tails; longest tails first.
        self.deep: dict[int, _Node[V]] | None = None
        #: verb ("" for none) -> the templates ending here.
        self.leaves: dict[str, Leaf[V]] = {}


class SegmentTrie(Generic[V]):
    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        #: Every verb some template ends with; a path's last ':' only splits off one of these.
        self.verbs: set[str] = set()

    def insert(self, template: PathTemplate, method: str, value: V) -> V | None:
        """Add ``value``; returns the value already bound to this shape and method, if any.

        ``ANY_METHOD`` clashes with every method of the same shape, and the reverse.
        """
        node = self._root
        segments = template.segments
        for index, segment in enumerate(segments):
            if segment.kind is SegmentKind.LITERAL:
                node = node.literals.setdefault(segment.value, _Node())
            elif segment.kind is SegmentKind.SINGLE:
                if node.star is None:
                    node.star = _Node()
                node = node.star
            else:
                tail = len(segments) - index - 1
                if node.deep is None:
                    node.deep = {}
                if tail not in node.deep:
                    node.deep[tail] = _Node()
                    node.deep = dict(sorted(node.deep.items(), reverse=True))
                node = node.deep[tail]
        leaf = node.leaves.setdefault(template.verb, Leaf())
        methods = leaf.methods
        clash = methods.get(method)
        if clash is None and method == ANY_METHOD and methods:
            clash = next(iter(methods.values()))
        if clash is None:
            clash = methods.get(ANY_METHOD)
        if clash is not None:
            return clash
        methods[method] = value
        leaf.served = serving(methods)
        leaf.allowed = sort_methods(leaf.served)
        if template.verb:
            self.verbs.add(template.verb)
        return None

    def could_match(self, first_segment: str) -> bool:
        """False when no template can match a path starting so (the common generic-route
        case), decided without walking anything."""
        root = self._root
        if root.star is not None or root.deep is not None:
            return True
        if decode_lenient(first_segment) in root.literals:
            return True
        colon = first_segment.rfind(":")  # a one-segment path with a verb
        return colon > 0 and decode_lenient(first_segment[:colon]) in root.literals

    def lookup(self, raw_segments: Sequence[str]) -> Iterator[tuple[Leaf[V], list[str]]]:
        """``(leaf, segments)`` for every template matching the path, most specific first.

        ``raw_segments`` are the request path's segments, still percent-encoded;
        the segments returned are the ones the template matched (the last one
        without its ``:verb``), for :meth:`PathTemplate.captures`.
        """
        if not raw_segments:
            return
        last = raw_segments[-1]
        colon = last.rfind(":")
        if colon > 0 and self.verbs:
            verb = decode_lenient(last[colon + 1 :])
            if verb in self.verbs:
                trimmed = [*raw_segments[:-1], last[:colon]]
                for node in self._walk(self._root, trimmed, _decoded(trimmed), 0):
                    leaf = node.leaves.get(verb)
                    if leaf is not None:
                        yield leaf, trimmed
        segments = list(raw_segments)
        for node in self._walk(self._root, segments, _decoded(segments), 0):
            leaf = node.leaves.get("")
            if leaf is not None:
                yield leaf, segments

    def _walk(
        self, node: _Node[V], raw: list[str], decoded: list[str], index: int
    ) -> Iterator[_Node[V]]:
        # Recursion depth is bounded by the longest template, not by the path.
        if index == len(raw):
            yield node
        else:
            child = node.literals.get(decoded[index])
            if child is not None:
                yield from self._walk(child, raw, decoded, index + 1)
            if node.star is not None and raw[index]:
                yield from self._walk(node.star, raw, decoded, index + 1)
        if node.deep is not None:
            for tail, after in node.deep.items():
                if index + tail <= len(raw):
                    yield from self._walk(after, raw, decoded, len(raw) - tail)


def _decoded(segments: list[str]) -> list[str]:
    return [decode_lenient(s) for s in segments]
