"""A Connect GET's ``message`` may be percent-encoded binary protobuf, without base64.

connectrpc.com/docs/protocol (Unary-Get-Request): ``message`` is the
percent-encoded message, and ``base64=1`` is optional ("if base64 is not set,
the message is percent-encoded"): a ``proto`` message percent-encoded as it
is holds bytes that are not UTF-8, and must reach the upstream unchanged,
as the same message does with ``base64=1``.
"""

from __future__ import annotations

import base64

import pytest
from bridgetest.v1 import kitchen_pb2

from tests.helpers.connect_tools import get
from tests.helpers.harness import running_bridge
from tests.helpers.servers import RunningServer

LOOKUP = "/bridgetest.v1.TestService/Lookup"
#: f_int32 = 150: its varint's first byte (0x96) is not UTF-8 on its own.
MESSAGE = kitchen_pb2.Kitchen(f_int32=150).SerializeToString()


def _percent(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


def _base64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "query",
    [f"message={_base64(MESSAGE)}&base64=1", f"message={_percent(MESSAGE)}"],
    ids=["base64", "percent-encoded"],
)
async def test_a_proto_get_message_reaches_the_upstream_however_it_is_encoded(
    upstream: RunningServer, query: str
) -> None:
    assert b"\x96" in MESSAGE
    async with running_bridge(upstream.target) as b:
        answer = await get(b, f"{LOOKUP}?connect=v1&encoding=proto&{query}")
        assert answer.status == 200, answer
        assert kitchen_pb2.Kitchen.FromString(answer.body).f_int32 == 150
