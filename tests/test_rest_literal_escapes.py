"""REST templates: a literal segment matches only as written, never through an escape.

The generic route already refuses ``/pkg.Service/%45cho`` (tests/test_encoded_paths.py):
a front proxy's ACL on the raw path (``deny GET /v1/things/special``, say) would
not see that call. REST literals are compared percent-decoded instead, so
``/v1/%74hings/special`` reaches the method that ACL was meant to guard.
(docs/rest.md documents "literals compare percent-decoded"; docs/security.md's
reason for matching generic paths raw applies to them alike: a policy call.)
"""

from __future__ import annotations

import orjson
import pytest

from tests.rawhttp import PATHS, bridge_on, exchange, request
from tests.servers import StartServer

#: Each reaches a REST method when its literal segments are percent-decoded.
ESCAPED_LITERALS = [
    "/v1/%74hings/special",
    "/%761/things/1",
    "/v1/%74hings/1/tags",
]


@pytest.mark.xfail(
    strict=True,
    reason="routing/trie.py compares literal segments percent-decoded (decode_lenient), "
    "unlike the generic route: an escaped literal bypasses a raw-path ACL",
)
@pytest.mark.parametrize("path", PATHS)
async def test_an_escaped_rest_literal_is_no_route(
    upstream_factory: StartServer, path: str
) -> None:
    server = await upstream_factory(services=("rest",))
    async with bridge_on(server.target, path) as bridge:
        status, _, _ = await exchange(bridge, request("GET", "/v1/things/special"))
        assert status == 200
        for target in ESCAPED_LITERALS:
            status, _, body = await exchange(bridge, request("GET", target))
            assert status == 404, (target, body)
        # Where a variable could take the segment, it is data there, not the literal.
        status, _, body = await exchange(bridge, request("GET", "/v1/things/%73pecial"))
        assert status == 200 and orjson.loads(body)["id"] == "special", body
