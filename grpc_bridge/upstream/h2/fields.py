"""What a decoded response header block says, and whether HTTP/2 allows it (RFC 9113 §8).

A block is inspected once, when it is decoded (and then cached with it), so
the rules cost nothing per response: the stream reads ``problem``,
``status``, ``grpc`` and ``encoding`` instead of looping over the fields.
"""

from __future__ import annotations

from typing import NamedTuple

Header = tuple[str, str]

#: RFC 9113 §8.2.2: fields that describe one hop of HTTP/1.1, never sent in HTTP/2.
_CONNECTION_SPECIFIC = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


class Block(NamedTuple):
    """A decoded header block and the facts the stream needs about it."""

    headers: tuple[Header, ...]
    #: RFC 9113 §6.5.2 size: names and values plus 32 per field.
    size: int
    #: Why the block is malformed whatever it is used for (None when it is not).
    problem: str | None
    #: The ``:status`` value; None when the block has none (as trailers must).
    status: str | None
    #: ``content-type`` is ``application/grpc`` or ``application/grpc+...``/``;...``.
    grpc: bool
    content_type: str | None
    #: ``grpc-encoding`` (the response messages' compression), if any.
    encoding: str | None


def _is_grpc(content_type: str) -> bool:
    value = content_type.lower()
    return value.startswith("application/grpc") and (len(value) == 16 or value[16] in "+;")


def inspect(fields: list[tuple[bytes, bytes]]) -> Block:
    """The block of raw ``fields`` with the facts above worked out once."""
    headers = []
    size = 0
    problem = None
    status = content_type = encoding = None
    regular = False
    for raw_name, raw_value in fields:
        name = raw_name.decode("latin-1")
        # HTTP/2 allows any bytes in a value; gRPC's are ASCII. Never fail on them.
        value = raw_value.decode("utf-8", "replace")
        size += len(raw_name) + len(raw_value) + 32
        headers.append((name, value))
        if problem is not None:
            continue
        if not name or name != name.lower():
            problem = "upstream sent an empty or upper-case header name"
        elif name[0] == ":":
            if name != ":status":
                problem = f"upstream sent the pseudo-header {name!r} in a response"
            elif regular:
                problem = "upstream sent :status after a regular header field"
            elif status is not None:
                problem = "upstream sent :status twice"
            else:
                status = value
        else:
            regular = True
            if name in _CONNECTION_SPECIFIC or (name == "te" and value != "trailers"):
                problem = f"upstream sent the connection-specific header field {name!r}"
            elif name == "content-type":
                content_type = value
            elif name == "grpc-encoding":
                encoding = value
    grpc = content_type is not None and _is_grpc(content_type)
    return Block(tuple(headers), size, problem, status, grpc, content_type, encoding)
