"""OpenTelemetry spans, exported by a real bridge process to real OTLP receivers.

The chain a trace must follow: the client's ``traceparent`` → the bridge's
server span → its client span → the ``traceparent`` the upstream received
(EchoMetadata answers with the metadata it got).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.otlp import (
    CLIENT,
    SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    Receiver,
    start_grpc_receiver,
    start_http_receiver,
)
from tests.helpers.process import BridgeProcess, serve_args
from tests.helpers.servers import RunningServer
from tests.helpers.streamtools import BIDI, CLIENT_STREAM, META, NDJSON, SERVER_STREAM, TEST_SERVICE
from tests.helpers.tracing_tools import (
    CLIENT_SPAN_ID,
    CLIENT_TRACE_ID,
    CLIENT_TRACEPARENT,
    one,
    post,
    traced_bridge,
    tracing_env,
)

FAIL = f"{TEST_SERVICE}/Fail"


@pytest.fixture(params=["grpc", "http/protobuf"])
async def receiver(request: pytest.FixtureRequest) -> AsyncIterator[Receiver]:
    start = start_grpc_receiver if request.param == "grpc" else start_http_receiver
    received = await start()
    try:
        yield received
    finally:
        await received.stop()


def otlp_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return tracing_env(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL=receiver.protocol,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_SERVICE_NAME="bridge-under-test",
        **extra,
    )


async def test_trace_goes_from_the_client_through_both_spans_to_the_upstream(
    upstream: RunningServer, receiver: Receiver
) -> None:
    env = otlp_env(receiver, OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test")
    async with traced_bridge(upstream.target, env) as (bridge, session):
        status, body = await post(
            session, META, {}, traceparent=CLIENT_TRACEPARENT, tracestate="vendor=opaque"
        )
        assert status == 200
        spans = await receiver.wait_for(2)
    server = one(spans, SERVER, f"POST {META}")
    client = one(spans, CLIENT, META[1:])
    # client → server span → client span, one trace.
    assert server.trace_id == client.trace_id == CLIENT_TRACE_ID
    assert server.parent_span_id == CLIENT_SPAN_ID
    assert client.parent_span_id == server.span_id
    # The upstream saw our client span as its parent, not the client's traceparent.
    assert body["received"]["traceparent"] == f"00-{CLIENT_TRACE_ID}-{client.span_id}-01"
    assert body["received"]["tracestate"] == "vendor=opaque"
    assert server.attributes == {
        "http.request.method": "POST",
        "url.path": META,
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "client.address": "127.0.0.1",
        "user_agent.original": server.attributes["user_agent.original"],
        "http.route": META,
        "http.response.status_code": 200,
    }
    assert client.attributes == {
        "rpc.system": "grpc",
        "rpc.service": "bridgetest.v1.TestService",
        "rpc.method": "EchoMetadata",
        "server.address": "127.0.0.1",
        "server.port": upstream.port,
        "rpc.grpc.status_code": 0,
        "rpc.messages.sent": 1,
        "rpc.messages.received": 1,
    }
    assert server.status_code == client.status_code == STATUS_UNSET
    assert server.resource["service.name"] == "bridge-under-test"
    assert server.resource["deployment.environment"] == "test"
    # The request's log line carries the server span's ids.
    line = next(e for e in bridge.events if e.get("event") == "request")
    assert (line["trace_id"], line["span_id"]) == (server.trace_id, server.span_id)


async def test_a_request_without_trace_context_starts_a_trace(upstream: RunningServer) -> None:
    receiver = await start_grpc_receiver()
    try:
        async with traced_bridge(upstream.target, otlp_env(receiver)) as (_, session):
            status, body = await post(session, META, {})
            assert status == 200
            spans = await receiver.wait_for(2)
    finally:
        await receiver.stop()
    server = one(spans, SERVER, f"POST {META}")
    client = one(spans, CLIENT, META[1:])
    assert server.parent_span_id == "" and client.parent_span_id == server.span_id
    traceparent = body["received"]["traceparent"]
    assert traceparent.startswith(f"00-{server.trace_id}-{client.span_id}-")
    # Sampled (the bridge made these ids: trace context level 2 marks them random too).
    assert int(traceparent.rsplit("-", 1)[1], 16) & 1


async def test_upstream_errors_set_the_span_status(upstream: RunningServer) -> None:
    receiver = await start_http_receiver()
    try:
        async with traced_bridge(upstream.target, otlp_env(receiver)) as (_, session):
            assert (await post(session, FAIL, {"code": 5, "message": "no such thing"}))[0] == 404
            assert (await post(session, FAIL, {"code": 13, "message": "it broke"}))[0] == 500
            spans = await receiver.wait_for(4)
    finally:
        await receiver.stop()
    by_code = {s.attributes["rpc.grpc.status_code"]: s for s in spans if s.kind == CLIENT}
    assert by_code[5].status_code == STATUS_ERROR
    assert by_code[5].status_message == "no such thing"
    assert by_code[13].status_code == STATUS_ERROR
    assert by_code[13].status_message == "it broke"
    servers = {s.attributes["http.response.status_code"]: s for s in spans if s.kind == SERVER}
    # A 4xx is the client's error: the server span's status stays unset (HTTP conventions).
    assert servers[404].status_code == STATUS_UNSET
    assert servers[500].status_code == STATUS_ERROR
    assert servers[500].status_message == "it broke"
    assert servers[500].attributes["error.type"] == "500"


async def test_streams_count_their_messages(upstream: RunningServer, tmp_path: Path) -> None:
    receiver = await start_grpc_receiver()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"upstreams:\n  - name: default\n    targets: ['{upstream.target}']\n",
        encoding="utf-8",
    )
    env = otlp_env(receiver)
    try:
        async with traced_bridge(None, env, "--config", str(config)) as (_, session):
            async with session.post(
                SERVER_STREAM, json={"count": 3, "tag": "t"}, headers={"Accept": NDJSON}
            ) as resp:
                assert resp.status == 200
                assert len([line for line in (await resp.text()).splitlines() if line]) == 3
            lines = b'{"text": "a"}\n{"text": "b"}\n'
            async with session.post(
                CLIENT_STREAM, data=lines, headers={"Content-Type": NDJSON}
            ) as resp:
                assert resp.status == 200
            spans = await receiver.wait_for(4)
    finally:
        await receiver.stop()
    server_stream = one(spans, CLIENT, SERVER_STREAM[1:])
    assert server_stream.attributes["rpc.messages.sent"] == 1
    assert server_stream.attributes["rpc.messages.received"] == 3
    assert server_stream.attributes["rpc.grpc.status_code"] == 0
    client_stream = one(spans, CLIENT, CLIENT_STREAM[1:])
    assert client_stream.attributes["rpc.messages.sent"] == 2
    assert client_stream.attributes["rpc.messages.received"] == 1
    server = one(spans, SERVER, f"POST {SERVER_STREAM}")
    assert server_stream.parent_span_id == server.span_id


async def test_a_websocket_session_is_one_server_span_over_its_calls(
    upstream: RunningServer,
) -> None:
    receiver = await start_grpc_receiver()
    try:
        async with traced_bridge(upstream.target, otlp_env(receiver)) as (bridge, session):
            async with session.ws_connect(BIDI) as ws:
                for index, text in enumerate(("one", "two")):
                    await ws.send_json({"index": index, "text": text})
                    assert (await ws.receive_json())["result"]["text"] == f"echo: {text}"
                await ws.close()
            spans = await receiver.wait_for(2)
    finally:
        await receiver.stop()
    server = one(spans, SERVER, f"GET {BIDI}")
    call = one(spans, CLIENT, BIDI[1:])
    # 101, or 499 when the client's close cancels the handler first: as the log line says.
    line = next(e for e in bridge.events if e.get("event") == "request")
    assert server.attributes["http.response.status_code"] == line["http_status"]
    assert line["span_id"] == server.span_id
    assert call.parent_span_id == server.span_id
    assert call.attributes["rpc.messages.sent"] == 2
    assert call.attributes["rpc.messages.received"] == 2


async def test_a_stream_failing_midway_records_its_status(upstream: RunningServer) -> None:
    receiver = await start_grpc_receiver()
    try:
        async with traced_bridge(upstream.target, otlp_env(receiver)) as (_, session):
            body = {"count": 5, "fail_code": 9, "fail_after": 2}
            async with session.post(SERVER_STREAM, json=body, headers={"Accept": NDJSON}) as r:
                await r.read()
            spans = await receiver.wait_for(2)
    finally:
        await receiver.stop()
    call = one(spans, CLIENT, SERVER_STREAM[1:])
    assert call.attributes["rpc.grpc.status_code"] == 9
    assert call.attributes["rpc.messages.received"] == 2
    assert call.status_code == STATUS_ERROR
    assert call.status_message == "failing after 2"


async def test_yaml_tracing_section_configures_the_exporter(
    upstream: RunningServer, tmp_path: Path
) -> None:
    receiver = await start_http_receiver()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "tracing:\n"
        "  enabled: true\n"
        "  protocol: http/protobuf\n"
        f"  endpoint: {receiver.endpoint}\n"
        "  service_name: from-yaml\n"
        "  resource_attributes: {team: edge}\n",
        encoding="utf-8",
    )
    try:
        async with traced_bridge(upstream.target, tracing_env(), "--config", str(config)) as (
            _,
            session,
        ):
            assert (await post(session, META, {}))[0] == 200
            spans = await receiver.wait_for(2)
    finally:
        await receiver.stop()
    assert {s.resource["service.name"] for s in spans} == {"from-yaml"}
    assert {s.resource["team"] for s in spans} == {"edge"}


async def test_otel_variables_win_over_the_yaml(upstream: RunningServer, tmp_path: Path) -> None:
    receiver = await start_grpc_receiver()
    config = tmp_path / "bridge.yaml"
    # The YAML points at nothing that listens, over the other protocol.
    config.write_text(
        "tracing:\n  enabled: true\n  protocol: http/protobuf\n"
        "  endpoint: http://127.0.0.1:9\n  service_name: from-yaml\n",
        encoding="utf-8",
    )
    env = otlp_env(receiver)
    try:
        async with traced_bridge(upstream.target, env, "--config", str(config)) as (
            bridge,
            session,
        ):
            assert (await post(session, META, {}))[0] == 200
            spans = await receiver.wait_for(2)
    finally:
        await receiver.stop()
    assert {s.resource["service.name"] for s in spans} == {"bridge-under-test"}
    # The start-up line shows what was resolved.
    resolved = await bridge.wait_for("tracing")
    assert (resolved["protocol"], resolved["endpoint"]) == ("grpc", receiver.endpoint)
    assert resolved["service_name"] == "bridge-under-test"


async def test_spans_queued_at_sigterm_are_flushed(upstream: RunningServer) -> None:
    receiver = await start_grpc_receiver()
    # An export interval longer than the test: only the shutdown flush sends them.
    env = otlp_env(receiver, OTEL_BSP_SCHEDULE_DELAY="600000")
    try:
        async with traced_bridge(upstream.target, env) as (_, session):
            assert (await post(session, META, {}))[0] == 200
            assert receiver.spans == []
        # traced_bridge has sent SIGTERM and waited for the exit.
        assert len(await receiver.wait_for(2, within=1)) == 2
    finally:
        await receiver.stop()


@pytest.mark.parametrize(
    "setting",
    [{"OTEL_TRACES_SAMPLER": "always_off"}, {"OTEL_SDK_DISABLED": "true"}],
    ids=["sampler-off", "sdk-disabled"],
)
async def test_nothing_is_exported_when_sampled_out_or_disabled(
    upstream: RunningServer, setting: dict[str, str]
) -> None:
    receiver = await start_grpc_receiver()
    try:
        async with traced_bridge(upstream.target, otlp_env(receiver, **setting)) as (
            bridge,
            session,
        ):
            status, body = await post(session, META, {}, traceparent=CLIENT_TRACEPARENT)
            assert status == 200
        # Stopped: anything queued would have been flushed by now.
        assert receiver.spans == []
    finally:
        await receiver.stop()
    forwarded = body["received"]["traceparent"]
    line = next(e for e in bridge.events if e.get("event") == "request")
    if "OTEL_SDK_DISABLED" in setting:
        # Tracing off: the client's traceparent is forwarded as it came, as without tracing.
        assert forwarded == CLIENT_TRACEPARENT
        assert "trace_id" not in line
    else:
        # Sampled out, still propagated: same trace, the (unrecorded) client span as parent.
        assert forwarded.startswith(f"00-{CLIENT_TRACE_ID}-")
        assert forwarded != CLIENT_TRACEPARENT
        assert line["trace_id"] == CLIENT_TRACE_ID


async def test_each_worker_exports_its_own_spans(upstream: RunningServer) -> None:
    receiver = await start_grpc_receiver()
    bridge = await BridgeProcess.spawn(
        *serve_args(upstream.target, "--workers", "2"), env=otlp_env(receiver)
    )
    try:
        while "workers" not in (event := await bridge.wait_for("listening")):
            bridge.events.remove(event)  # a worker's; the parent's line comes last
        port = int(event["proxy"].rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{port}{META}"
        for _ in range(40):
            # A new connection per request: the kernel spreads them over both workers.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as fresh:
                for _attempt in range(100):
                    async with fresh.post(url, json={}) as resp:
                        if resp.status == 200:  # 503 until that worker has discovered
                            break
                    await asyncio.sleep(0.05)
                assert resp.status == 200
    finally:
        await bridge.stop()  # each worker flushes its spans as it stops
        await receiver.stop()
    spans = receiver.spans
    served = [e for e in bridge.events if e.get("event") == "request" and e["http_status"] == 200]
    workers = {e["worker"] for e in served}
    assert len(served) == 40 and workers == {0, 1}
    # One provider per worker process: each has its own service.instance.id.
    instances = {s.resource["service.instance.id"] for s in spans}
    assert len(instances) == 2
    by_trace = {s.trace_id: s.resource["service.instance.id"] for s in spans}
    instance_of = {}
    for line in served:
        instance_of.setdefault(line["worker"], set()).add(by_trace[line["trace_id"]])
    assert all(len(ids) == 1 for ids in instance_of.values())
