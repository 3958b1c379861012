"""``grpc-bridge list`` and ``describe``: grpcurl's output format, by reflection or descriptor sets.

The expected texts are written by hand from grpcurl's format (protoprint with
Compact, SortElements and ForceFullyQualifiedNames); test_client_grpcurl.py
checks the same against a real grpcurl when one is installed.
"""

from __future__ import annotations

from pathlib import Path

from bridgetest.v1 import kitchen_pb2, other_pb2

from grpc_bridge.demo import demo_pb2
from tests.helpers.client_tools import TEST_SERVICE, call, compile_descriptor_set, run_client
from tests.helpers.descriptors import with_imports, write_set
from tests.helpers.servers import RunningServer, StartServer

SERVICES = """\
bridgetest.v1.Internal
bridgetest.v1.Other
bridgetest.v1.TestService
grpc.health.v1.Health
grpc.reflection.v1.ServerReflection
grpc.reflection.v1alpha.ServerReflection
"""

TEST_SERVICE_METHODS = """\
bridgetest.v1.TestService.Bidi
bridgetest.v1.TestService.ClientStream
bridgetest.v1.TestService.Echo
bridgetest.v1.TestService.EchoMetadata
bridgetest.v1.TestService.Fail
bridgetest.v1.TestService.Lookup
bridgetest.v1.TestService.ServerStream
bridgetest.v1.TestService.Sleep
"""

DESCRIBED = {
    TEST_SERVICE: """\
bridgetest.v1.TestService is a service:
service TestService {
  rpc Bidi ( stream .bridgetest.v1.StreamReply ) returns ( stream .bridgetest.v1.StreamReply );
  rpc ClientStream ( stream .bridgetest.v1.StreamReply ) returns ( .bridgetest.v1.StreamSummary );
  rpc Echo ( .bridgetest.v1.Kitchen ) returns ( .bridgetest.v1.Kitchen );
  rpc EchoMetadata ( .google.protobuf.Empty ) returns ( .bridgetest.v1.MetadataResponse ) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  rpc Fail ( .bridgetest.v1.FailRequest ) returns ( .google.protobuf.Empty );
  rpc Lookup ( .bridgetest.v1.Kitchen ) returns ( .bridgetest.v1.Kitchen ) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  rpc ServerStream ( .bridgetest.v1.StreamRequest ) returns ( stream .bridgetest.v1.StreamReply );
  rpc Sleep ( .bridgetest.v1.SleepRequest ) returns ( .bridgetest.v1.SleepResponse );
}
""",
    "bridgetest.v1.FailRequest": """\
bridgetest.v1.FailRequest is a message:
message FailRequest {
  int32 code = 1;
  string message = 2;
  bool with_details = 3;
  map<string, string> trailers = 4;
  bool with_foreign_detail = 5;
}
""",
    "bridgetest.v1.Color": """\
bridgetest.v1.Color is an enum:
enum Color {
  COLOR_UNSPECIFIED = 0;
  RED = 1;
  GREEN = 2;
  BLUE = 3;
}
""",
    "bridgetest.v1.Nested.name": """\
bridgetest.v1.Nested.name is a field:
string name = 1;
""",
    "bridgetest.v1.Kitchen.choice": """\
bridgetest.v1.Kitchen.choice is a one-of:
oneof choice {
  string o_string = 25;
  .bridgetest.v1.Nested o_nested = 26;
  int64 o_int64 = 27;
}
""",
    "bridgetest.v1.FailRequest.TrailersEntry": """\
bridgetest.v1.FailRequest.TrailersEntry is the entry type for a map field:
map<string, string> trailers = 4;
""",
    f"{TEST_SERVICE}.ServerStream": """\
bridgetest.v1.TestService.ServerStream is a method:
rpc ServerStream ( .bridgetest.v1.StreamRequest ) returns ( stream .bridgetest.v1.StreamReply );
""",
}

KITCHEN_EXCERPT = """\
  .bridgetest.v1.Color color = 16;
  .bridgetest.v1.Nested nested = 17;
  repeated int32 r_int32 = 18;
  repeated string r_string = 19;
  repeated .bridgetest.v1.Nested r_nested = 20;
  repeated .bridgetest.v1.Color r_color = 21;
  map<string, int32> m_str_int = 22;
  map<int64, .bridgetest.v1.Nested> m_int_nested = 23;
  map<bool, string> m_bool_str = 24;
  oneof choice {
    string o_string = 25;
    .bridgetest.v1.Nested o_nested = 26;
    int64 o_int64 = 27;
  }
  optional int32 opt_int32 = 28;
  optional string opt_string = 29;
  .google.protobuf.Timestamp ts = 30;
"""

SHOP_EXCERPT = """\
  rpc GetItem ( .demo.v1.GetItemRequest ) returns ( .demo.v1.Item ) {
    option idempotency_level = NO_SIDE_EFFECTS;
    option (.google.api.http) = { get:"/v1/items/{id}" };
  }
"""


def protoset(tmp_path: Path) -> Path:
    files = with_imports(kitchen_pb2.DESCRIPTOR, other_pb2.DESCRIPTOR)
    return write_set(tmp_path / "bridgetest.protoset", *files)


async def test_list_services_and_methods(upstream: RunningServer) -> None:
    result = await run_client("list", "--plaintext", upstream.target)
    assert (result.code, result.out) == (0, SERVICES), result.err
    result = await run_client("list", "--plaintext", upstream.target, TEST_SERVICE)
    assert (result.code, result.out) == (0, TEST_SERVICE_METHODS), result.err


async def test_describe_each_kind_of_symbol(upstream: RunningServer) -> None:
    for symbol, expected in DESCRIBED.items():
        result = await run_client("describe", "--plaintext", upstream.target, symbol)
        assert (result.code, result.out) == (0, expected), (symbol, result.err)


async def test_describe_message_with_maps_oneofs_optionals(upstream: RunningServer) -> None:
    result = await run_client("describe", "--plaintext", upstream.target, ".bridgetest.v1.Kitchen")
    assert result.code == 0, result.err
    assert result.out.startswith("bridgetest.v1.Kitchen is a message:\nmessage Kitchen {\n")
    assert KITCHEN_EXCERPT in result.out


async def test_describe_prints_method_options_and_http_annotations(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory(services=("demo",))
    result = await run_client("describe", "--plaintext", server.target, "demo.v1.Shop")
    assert result.code == 0, result.err
    assert SHOP_EXCERPT in result.out


async def test_describe_without_a_symbol_describes_every_service(upstream: RunningServer) -> None:
    result = await run_client("describe", "--plaintext", upstream.target)
    assert result.code == 0, result.err
    headings = [line for line in result.out.splitlines() if " is a service:" in line]
    assert headings == [f"{name} is a service:" for name in SERVICES.split()]
    assert DESCRIBED[TEST_SERVICE] in result.out


async def test_unknown_symbol_exits_1(upstream: RunningServer) -> None:
    result = await run_client("describe", "--plaintext", upstream.target, "nope.v1.Nothing")
    assert result.code == 1 and "symbol not found: nope.v1.Nothing" in result.err


async def test_v1alpha_only_server(upstream_factory: StartServer) -> None:
    server = await upstream_factory(reflection=("v1alpha",))
    result = await run_client("list", "--plaintext", server.target)
    assert result.code == 0, result.err
    assert "grpc.reflection.v1alpha.ServerReflection" in result.out.split()
    assert "grpc.reflection.v1.ServerReflection" not in result.out.split()
    result = await call(server.target, "ServerStream", "-d", '{"count": 2, "tag": "a"}')
    assert result.code == 0 and len(result.messages()) == 2, result.err


async def test_server_without_reflection_exits_1_with_a_hint(
    upstream_factory: StartServer,
) -> None:
    server = await upstream_factory(reflection=())
    result = await run_client("list", "--plaintext", server.target)
    assert result.code == 1
    assert "server reflection is not enabled" in result.err


async def test_descriptor_sets_instead_of_reflection(
    upstream_factory: StartServer, tmp_path: Path
) -> None:
    server = await upstream_factory(reflection=())
    sets = str(protoset(tmp_path))
    # list and describe need no server at all with descriptor sets.
    result = await run_client("list", "--protoset", sets)
    assert result.out == "bridgetest.v1.Internal\nbridgetest.v1.Other\nbridgetest.v1.TestService\n"
    result = await run_client("list", "--protoset", sets, TEST_SERVICE)
    assert (result.code, result.out) == (0, TEST_SERVICE_METHODS), result.err
    result = await run_client("describe", "--protoset", sets, "bridgetest.v1.Color")
    assert result.out == DESCRIBED["bridgetest.v1.Color"], result.err
    # And the calls go to a server that has no reflection.
    result = await run_client(
        "call",
        *("--plaintext", "--protoset", sets, server.target, f"{TEST_SERVICE}/Bidi"),
        *("-d", '{"text": "x"}'),
    )
    assert result.code == 0 and result.messages() == [{"index": 0, "text": "echo: x"}], result.err


async def test_bad_descriptor_set_exits_1_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.protoset"
    bad.write_bytes(b"not a descriptor set")
    result = await run_client("list", "--protoset", str(bad))
    assert result.code == 1
    assert "bad.protoset" in result.err and "Traceback" not in result.err


async def test_describe_demo_service_from_generated_descriptors(tmp_path: Path) -> None:
    sets = write_set(tmp_path / "demo.protoset", *with_imports(demo_pb2.DESCRIPTOR))
    result = await run_client("describe", "--protoset", str(sets), "demo.v1.Shop")
    assert result.code == 0, result.err
    assert SHOP_EXCERPT in result.out


async def test_comments_from_source_info_are_printed(tmp_path: Path) -> None:
    """Descriptors with source info (protoc --include_source_info, or grpc-go's reflection)
    carry the .proto comments; describe prints each element's leading comment."""
    sets = str(compile_descriptor_set(tmp_path / "src.protoset", "bridgetest/v1/kitchen.proto"))
    result = await run_client("describe", "--protoset", sets, "bridgetest.v1.FailRequest")
    assert result.out == (
        "bridgetest.v1.FailRequest is a message:\n"
        "message FailRequest {\n"
        "  int32 code = 1;\n"
        "  string message = 2;\n"
        "  // Attach google.rpc.BadRequest, CustomDetail and an unknown type as details.\n"
        "  bool with_details = 3;\n"
        "  // Initial metadata / trailers the server sets before failing.\n"
        "  map<string, string> trailers = 4;\n"
        "  // Attach bridgetest.v1.RetryAdvice (details.proto, which no service file imports).\n"
        "  bool with_foreign_detail = 5;\n"
        "}\n"
    ), result.err
    result = await run_client("describe", "--protoset", sets, "bridgetest.v1.Kitchen")
    assert result.out.startswith(
        "bridgetest.v1.Kitchen is a message:\n"
        "// Every field type of proto3, for round-trip tests of the JSON mapping.\n"
        "message Kitchen {\n"
    ), result.err
