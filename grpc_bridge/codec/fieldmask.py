"""FieldMask paths from a PATCH body's JSON keys (grpc-gateway's ``FieldMaskFromRequestBody``).

A PATCH whose binding maps the body to one field, on a request with one
``google.protobuf.FieldMask`` field the client left empty, gets that mask
filled with the paths the body sets, so ``PATCH /v1/items/1 {"priceCents": 5}``
updates the price and nothing else:

- paths use proto field names (``price_cents``), whichever spelling the body used;
- objects for message fields are walked into (``{"dims": {"width": 2}}`` gives
  ``dims.width``); an empty object, ``null``, a scalar, a list, a map or a
  well-known type (Timestamp, Struct, Any, ...) ends a path where it stands
  (grpc-gateway walks into Struct keys too; those are not field paths);
- the paths come out sorted, as grpc-gateway sorts them.

Keys naming no field are skipped: the JSON decoding already refused them, or
was told to ignore them (``json.ignore_unknown_fields``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = ["mask_paths"]


def mask_paths(value: Any, message: Descriptor) -> list[str]:
    """Sorted field paths set by ``value``, the JSON of one ``message``."""
    paths: list[str] = []
    queue: deque[tuple[str, Any, Descriptor]] = deque([("", value, message)])
    while queue:
        prefix, node, descriptor = queue.popleft()
        if not isinstance(node, dict):
            continue
        for key, child in node.items():
            field = _field(descriptor, key)
            if field is None:
                continue
            path = f"{prefix}.{field.name}" if prefix else field.name
            sub = _walkable(field)
            if sub is not None and isinstance(child, dict) and child:
                queue.append((path, child, sub))
            else:
                paths.append(path)
    return sorted(paths)


def _field(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    field = descriptor.fields_by_name.get(key)
    if field is not None:
        return field
    return next((f for f in descriptor.fields if f.json_name == key), None)


def _walkable(field: FieldDescriptor) -> Descriptor | None:
    """The message a JSON object for ``field`` describes field by field, if any."""
    message = field.message_type
    if message is None or field.is_repeated or message.GetOptions().map_entry:
        return None
    if message.full_name.startswith("google.protobuf."):
        return None
    return message
