"""The request bodies every case sends, as JSON values (the same bytes go to every proxy)."""

from __future__ import annotations

from typing import Any

import orjson


def order() -> dict[str, Any]:
    """A ~1.2 KB ``benchpb.v1.Order``: nested objects, a repeated message, a map, a timestamp."""
    items = [
        {
            "sku": f"SKU-{1000 + i}",
            "title": f"Wireless noise-cancelling headphones, model {i}",
            "quantity": i + 1,
            "unitPriceMicros": str(129_990_000 + i * 1_000_000),
            "tags": ["audio", "bluetooth", f"batch-{i}"],
        }
        for i in range(4)
    ]
    address = {
        "name": "Ada Lovelace",
        "street": "12 St James's Square",
        "city": "London",
        "postalCode": "SW1Y 4JH",
        "country": "GB",
    }
    return {
        "id": "ord_01HZX3V7Q9K2M4N6P8R0S2T4V6",
        "customerId": "cus_8f14e45fceea167a5a36dedd4bea2543",
        "status": "STATUS_PAID",
        "shipping": address,
        "billing": {**address, "name": "Lovelace Ltd"},
        "items": items,
        "labels": {"channel": "web", "campaign": "spring-sale", "priority": "standard"},
        "totalMicros": "664950000",
        "currency": "GBP",
        "createdAt": "2024-05-01T12:34:56.789Z",
        "gift": True,
        "discount": 0.15,
        "note": "Leave the parcel with the concierge if nobody answers.",
    }


def ping() -> dict[str, Any]:
    return {"id": "p1", "seq": 7}


ORDER_BODY = orjson.dumps(order())
PING_BODY = orjson.dumps(ping())
