"""Server reflection through the bridge answers for what the bridge exposes, every upstream merged.

Two upstreams: ``live`` (TestService and the annotated RestService, found by
reflection) and ``legacy`` (Other and Internal, from a descriptor set, with
reflection off upstream, Internal excluded by a filter). ``buf curl --reflect``
lists and calls both, over Connect and gRPC-Web on h2c; the protocol itself is
read with grpcio-reflection's messages over a Connect stream (the h2 library's
client): Internal is nowhere, not even in the file it shares with Other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from bridgetest.v1 import kitchen_pb2, other_pb2
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2

from grpc_bridge.upstream.local_reflection import PENDING
from tests.helpers.descriptors import with_imports, write_set
from tests.helpers.h2c_client import envelope, h2c_connection, unframe
from tests.helpers.harness import MakeBridge, RunningBridge
from tests.helpers.js_clients import buf_curl, buf_list
from tests.helpers.reflection_client import CONNECT_STREAM, V1, Request, files_of, reflect
from tests.helpers.servers import (
    HEALTH_SERVICE,
    INTERNAL_SERVICE,
    OTHER_SERVICE,
    TEST_SERVICE,
    StartServer,
)
from tests.helpers.streamtools import NDJSON

REST_SERVICE = "bridgetest.v1.RestService"
HTTP_RULE = 72295728  # google.api.http, on google.protobuf.MethodOptions


async def two_upstreams(
    upstream_factory: StartServer, make_bridge: MakeBridge, tmp_path: Path, **legacy: Any
) -> RunningBridge:
    live = await upstream_factory(name="live", services=("test", "rest"))
    old = await upstream_factory(name="legacy", services=("other", "internal"), reflection=())
    pb = write_set(tmp_path / "legacy.pb", *with_imports(other_pb2.DESCRIPTOR))
    upstreams = [
        {"name": "live", "targets": [live.target]},
        {
            "name": "legacy",
            "targets": [old.target],
            "reflection": False,
            "descriptor_sets": [str(pb)],
            "services": {"exclude": ["*.Internal"]},
            **legacy,
        },
    ]
    return await make_bridge(None, upstreams=upstreams)


@pytest.fixture
async def bridge(
    upstream_factory: StartServer, make_bridge: MakeBridge, tmp_path: Path
) -> RunningBridge:
    return await two_upstreams(upstream_factory, make_bridge, tmp_path)


async def exposed(bridge: RunningBridge) -> list[str]:
    async with bridge.session.get(f"{bridge.admin_url}/v1/services") as resp:
        return sorted(s["name"] for s in (await resp.json())["services"])


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
async def test_buf_curl_lists_both_upstreams_and_not_what_a_filter_hides(
    bridge: RunningBridge, protocol: Any
) -> None:
    services = await buf_list(bridge.url, "services", protocol)
    assert services == await exposed(bridge)
    assert {TEST_SERVICE, REST_SERVICE, OTHER_SERVICE, HEALTH_SERVICE} <= set(services)
    assert INTERNAL_SERVICE not in services
    assert not any(s.startswith("grpc.reflection.") for s in services)
    methods = await buf_list(bridge.url, "methods", protocol)
    assert f"{OTHER_SERVICE}/Whoami" in methods and f"{TEST_SERVICE}/Echo" in methods
    assert not any(m.startswith(INTERNAL_SERVICE) for m in methods)


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
async def test_buf_curl_calls_each_upstream_by_the_bridges_reflection(
    bridge: RunningBridge, protocol: Any
) -> None:
    # Other comes from a descriptor set: its upstream has no reflection at all.
    whoami = await buf_curl(
        bridge.url, f"{OTHER_SERVICE}/Whoami", {"value": 7}, protocol=protocol, http2=True
    )
    assert (whoami.error, whoami.messages) == (None, [{"name": "legacy", "value": 7}])
    echo = await buf_curl(
        bridge.url, f"{TEST_SERVICE}/Echo", {"fString": "r"}, protocol=protocol, http2=True
    )
    assert (echo.error, echo.messages) == (None, [{"fString": "r"}])


async def test_a_hidden_service_is_in_no_answer_nor_in_the_file_it_shares(
    bridge: RunningBridge,
) -> None:
    listed, other, hidden, hidden_method, by_name, end = await reflect(
        bridge,
        Request(host="h", list_services=""),
        Request(file_containing_symbol=OTHER_SERVICE),
        Request(file_containing_symbol=INTERNAL_SERVICE),
        Request(file_containing_symbol=f"{INTERNAL_SERVICE}.Secret"),
        Request(file_by_filename="bridgetest/v1/other.proto"),
    )
    assert end == {}
    assert [s.name for s in listed.list_services_response.service] == await exposed(bridge)
    assert listed.valid_host == "h" and listed.original_request == Request(
        host="h", list_services=""
    )
    for answer in (other, by_name):
        (file,) = [f for f in files_of(answer) if f.name == "bridgetest/v1/other.proto"]
        assert [s.name for s in file.service] == ["Other"]
        assert list(file.dependency) == ["bridgetest/v1/common.proto"]
    for answer, symbol in (
        (hidden, INTERNAL_SERVICE),
        (hidden_method, f"{INTERNAL_SERVICE}.Secret"),
    ):
        assert answer.error_response.error_code == 5, answer
        assert symbol in answer.error_response.error_message
        assert answer.original_request.file_containing_symbol == symbol


async def test_every_kind_of_symbol_resolves_and_imports_are_sent_once_per_stream(
    bridge: RunningBridge,
) -> None:
    method, field, again, missing, end = await reflect(
        bridge,
        Request(file_containing_symbol=f"{TEST_SERVICE}.Echo"),
        Request(file_containing_symbol="bridgetest.v1.Kitchen.f_string"),
        Request(file_containing_symbol="bridgetest.v1.Kitchen"),
        Request(file_by_filename="no/such.proto"),
        path=V1,
    )
    assert end == {}
    first = files_of(method)
    assert first[0].name == "bridgetest/v1/kitchen.proto"
    assert {"bridgetest/v1/common.proto", "google/protobuf/timestamp.proto"} <= {
        f.name for f in first
    }
    # The requested file again, its imports not: this stream has them (grpc-go's way).
    assert [f.name for f in files_of(field)] == ["bridgetest/v1/kitchen.proto"]
    assert [f.name for f in files_of(again)] == ["bridgetest/v1/kitchen.proto"]
    assert missing.error_response.error_code == 5
    # The files received describe the service: a pool builds from them.
    pool = descriptor_pool.DescriptorPool()
    for file in reversed(first):
        pool.Add(file)
    assert pool.FindServiceByName(TEST_SERVICE).methods_by_name["Echo"].input_type.name == "Kitchen"


async def test_extensions_are_answered_from_the_exposed_files(bridge: RunningBridge) -> None:
    numbers, plain, unknown, found, absent, _ = await reflect(
        bridge,
        Request(all_extension_numbers_of_type="google.protobuf.MethodOptions"),
        Request(all_extension_numbers_of_type="bridgetest.v1.Kitchen"),
        Request(all_extension_numbers_of_type="no.such.Type"),
        Request(
            file_containing_extension=reflection_pb2.ExtensionRequest(
                containing_type="google.protobuf.MethodOptions", extension_number=HTTP_RULE
            )
        ),
        Request(
            file_containing_extension=reflection_pb2.ExtensionRequest(
                containing_type="bridgetest.v1.Kitchen", extension_number=100
            )
        ),
    )
    response = numbers.all_extension_numbers_response
    assert (response.base_type_name, list(response.extension_number)) == (
        "google.protobuf.MethodOptions",
        [HTTP_RULE],
    )
    assert plain.WhichOneof("message_response") == "all_extension_numbers_response"
    assert list(plain.all_extension_numbers_response.extension_number) == []
    assert unknown.error_response.error_code == 5
    assert files_of(found)[0].name == "google/api/annotations.proto"
    assert absent.error_response.error_code == 5


async def test_a_request_with_no_question_ends_the_stream_invalid_argument(
    bridge: RunningBridge,
) -> None:
    listed, end = await reflect(bridge, Request(list_services=""), Request(host="x"))
    assert listed.list_services_response.service
    assert end["error"]["code"] == "invalid_argument"
    assert "none of its questions" in end["error"]["message"]


async def test_answers_stay_within_the_message_limit(
    upstream_factory: StartServer, make_bridge: MakeBridge, tmp_path: Path
) -> None:
    """The bound is the upstreams' max_receive_message_bytes: other.proto fits, the
    3.4 kB kitchen.proto not; then with room for kitchen.proto, imports that don't fit
    are left out and come when asked for by name."""
    small = await two_upstreams(
        upstream_factory, make_bridge, tmp_path, max_receive_message_bytes=2000
    )
    other, kitchen, _ = await reflect(
        small,
        Request(file_containing_symbol=OTHER_SERVICE),
        Request(file_containing_symbol=TEST_SERVICE),
    )
    assert files_of(other)[0].name == "bridgetest/v1/other.proto"
    assert kitchen.error_response.error_code == 8
    assert "2000-byte message" in kitchen.error_response.error_message

    roomy = await two_upstreams(
        upstream_factory, make_bridge, tmp_path, max_receive_message_bytes=4500
    )
    imports = [d.name for d in kitchen_pb2.DESCRIPTOR.dependencies]
    kitchen, *rest, _ = await reflect(
        roomy,
        Request(file_containing_symbol=TEST_SERVICE),
        *(Request(file_by_filename=name) for name in imports),
    )
    assert kitchen.ByteSize() <= 4500
    sent = [f.name for f in files_of(kitchen)]
    assert sent[0] == "bridgetest/v1/kitchen.proto"
    assert [name for name in imports if name not in sent]  # some did not fit
    for name, answer in zip(imports, rest, strict=True):
        assert files_of(answer)[0].name == name


async def test_the_json_routes_reach_it_too_and_it_stays_unlisted(bridge: RunningBridge) -> None:
    async with bridge.session.post(
        f"{bridge.url}{V1}",
        data=b'{"listServices": ""}\n{"fileContainingSymbol": "bridgetest.v1.Internal"}\n',
        headers={"Content-Type": NDJSON, "Accept": NDJSON},
    ) as resp:
        assert resp.status == 200
        listed, hidden = [orjson.loads(line)["result"] for line in (await resp.read()).splitlines()]
    names = [s["name"] for s in listed["listServicesResponse"]["service"]]
    assert names == await exposed(bridge)
    assert hidden["errorResponse"]["errorCode"] == 5


async def test_a_websocket_asks_more_questions_than_the_call_holds_answers_for(
    bridge: RunningBridge,
) -> None:
    """The local call keeps PENDING answers unread, then waits for its reader."""
    questions = 3 * PENDING
    async with bridge.session.ws_connect(bridge.url.replace("http", "ws", 1) + V1) as ws:
        for _ in range(questions):
            await ws.send_str('{"fileContainingSymbol": "bridgetest.v1.Other"}')
        answers = [orjson.loads((await ws.receive(timeout=20)).data) for _ in range(questions)]
    files = [a["result"]["fileDescriptorResponse"]["fileDescriptorProto"] for a in answers]
    # The first answer has other.proto and its import; the rest other.proto alone.
    assert [len(f) for f in files] == [2] + [1] * (questions - 1)


async def test_a_stream_left_open_ends_at_its_deadline(bridge: RunningBridge) -> None:
    headers = [*CONNECT_STREAM, ("connect-timeout-ms", "300")]
    body = envelope(Request(list_services="").SerializeToString())
    async with h2c_connection(bridge.server.proxy_port) as client:
        # The request stream is never half-closed: only the deadline ends the call.
        state = await client.answer(client.request(V1, headers, body, end=False))
    *messages, (flags, end) = unframe(bytes(state.body))
    assert len(messages) == 1 and flags == 0x02
    assert orjson.loads(end)["error"]["code"] == "deadline_exceeded"


async def test_a_request_with_a_giant_name_gets_an_answer_within_the_message_limit(
    upstream_factory: StartServer, make_bridge: MakeBridge, tmp_path: Path
) -> None:
    """The echoed request is the answer's only copy of the name: an error message quotes
    it cut short. A request whose echo alone would not fit ends the stream."""
    small = await two_upstreams(
        upstream_factory, make_bridge, tmp_path, max_receive_message_bytes=2000
    )
    long, longer = "x" * 1200, "y" * 2100
    symbol, by_name, extension, numbers, end = await reflect(
        small,
        Request(file_containing_symbol=long),
        Request(file_by_filename=long),
        Request(
            file_containing_extension=reflection_pb2.ExtensionRequest(
                containing_type=long, extension_number=1
            )
        ),
        Request(all_extension_numbers_of_type=long),
    )
    assert end == {}
    for answer in (symbol, by_name, extension, numbers):
        assert answer.error_response.error_code == 5, answer
        assert answer.ByteSize() <= 2000
        assert "(1200 characters)" in answer.error_response.error_message
    *_, end = await reflect(small, Request(file_containing_symbol=longer))
    assert end["error"]["code"] == "resource_exhausted"
    assert "2000-byte message" in end["error"]["message"]
