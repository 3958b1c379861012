"""The playground with ``--workers``: served by the parent, calls through the shared proxy port."""

from __future__ import annotations

import aiohttp
import orjson

from tests.helpers.process import bridge_env
from tests.helpers.servers import TEST_SERVICE, RunningServer
from tests.helpers.workers_tools import start_workers, wait_ready


async def test_the_parent_serves_the_playground_and_forwards_calls(upstream: RunningServer) -> None:
    bp = await start_workers(upstream)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, bp)
            admin = f"http://127.0.0.1:{bp.admin_port}"
            async with session.get(f"{admin}/playground") as resp:
                assert resp.status == 200
                assert b"grpc-bridge playground" in await resp.read()
            body = orjson.dumps({"count": 3, "tag": "workers", "failCode": 5, "failAfter": 2})
            headers = {"Content-Type": "application/json", "X-Request-Id": "w"}
            answers = []
            for url in (
                f"http://127.0.0.1:{bp.proxy_port}/{TEST_SERVICE}/ServerStream",
                f"{admin}/playground/call/{TEST_SERVICE}/ServerStream",
            ):
                async with session.post(url, data=body, headers=headers) as resp:
                    answers.append((resp.status, resp.headers["Content-Type"], await resp.read()))
            assert answers[1] == answers[0]
            lines = [orjson.loads(line) for line in answers[1][2].splitlines()]
            assert [line.get("result", {}).get("text") for line in lines[:2]] == [
                "workers-0",
                "workers-1",
            ]
            assert lines[2]["error"]["code"] == 5
    finally:
        await bp.stop()
    # The call was served by a worker's proxy listener, like any client's.
    served = [e for e in bp.events if e.get("event") == "request" and e.get("worker") is not None]
    assert sum(1 for e in served if e.get("grpc_method", "").endswith("/ServerStream")) == 2


async def test_playground_off_in_the_parent_is_off(upstream: RunningServer) -> None:
    env = bridge_env(GRPC_BRIDGE_ADMIN__PLAYGROUND="false")
    bp = await start_workers(upstream, env=env)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, bp)
            admin = f"http://127.0.0.1:{bp.admin_port}"
            async with session.get(f"{admin}/playground") as resp:
                assert resp.status == 404
            async with session.post(f"{admin}/playground/call/{TEST_SERVICE}/Echo") as resp:
                assert resp.status == 404
            async with session.get(f"{admin}/v1/services") as resp:  # still forwarded
                assert resp.status == 200
    finally:
        await bp.stop()
