"""``grpc-bridge call`` against a real upstream: every method kind, errors, metadata, deadlines."""

from __future__ import annotations

import asyncio
import base64
import os
import shlex
import signal
import sys
from pathlib import Path

import orjson
import pytest

from tests.helpers.client_tools import TEST_SERVICE, call, run_client, run_in_terminal
from tests.helpers.process import bridge_env
from tests.helpers.servers import (
    CLIENT_DEADLINE_S,
    FOREIGN_DETAIL,
    MYSTERY_TYPE_URL,
    UNFINDABLE_TYPE_URL,
    RunningServer,
    StartServer,
)


async def test_unary_prints_the_response_as_one_json_line(upstream: RunningServer) -> None:
    result = await call(upstream.target, "Echo", "-d", '{"fInt64": "5", "color": "RED"}')
    assert result.code == 0, result.err
    assert result.out.count("\n") == 1  # compact when piped
    (reply,) = result.messages()
    # The daemon's JSON defaults: lowerCamel names, int64 as strings, defaults emitted.
    assert reply["fInt64"] == "5" and reply["color"] == "RED" and reply["fInt32"] == 0


async def test_json_flags_change_the_mapping(upstream: RunningServer) -> None:
    result = await call(
        upstream.target,
        "Echo",
        "-d",
        '{"f_int32": 3, "color": 2}',
        "--no-emit-defaults",
        "--use-proto-names",
        "--enums-as-ints",
    )
    assert result.code == 0, result.err
    assert result.messages() == [{"f_int32": 3, "color": 2}]


async def test_config_file_json_settings_apply_and_flags_win(
    upstream: RunningServer, tmp_path: Path
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "upstreams: [{name: shop, targets: ['127.0.0.1:1']}]\n"
        "json: {use_proto_names: true, emit_unpopulated: false}\n"
    )
    result = await call(
        upstream.target, "Echo", "-d", '{"fInt32": 1}', "--config", str(config), "--emit-defaults"
    )
    assert result.code == 0, result.err
    (reply,) = result.messages()
    assert reply["f_int32"] == 1 and reply["f_string"] == ""


async def test_upstream_flag_takes_the_connection_from_the_config(
    upstream: RunningServer, tmp_path: Path
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"upstreams:\n  - {{name: other, targets: ['127.0.0.1:1']}}\n"
        f"  - {{name: shop, targets: ['{upstream.target}']}}\n"
        "json: {emit_unpopulated: false}\n"
    )
    flags = ("--config", str(config), "--upstream", "shop")
    result = await run_client("call", *flags, f"{TEST_SERVICE}/Echo", "-d", '{"fInt32": 4}')
    assert (result.code, result.messages()) == (0, [{"fInt32": 4}]), result.err
    result = await run_client("list", *flags)
    assert result.code == 0 and TEST_SERVICE in result.out.split(), result.err
    result = await run_client("call", *flags[:3], "nope", f"{TEST_SERVICE}/Echo")
    assert result.code == 2 and "the configuration has other, shop" in result.err
    result = await run_client("call", *flags, "--plaintext", f"{TEST_SERVICE}/Echo")
    assert result.code == 2 and "connection settings from the configuration" in result.err


async def test_request_from_file_and_from_stdin(upstream: RunningServer, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text('{\n  "fString": "from a file"\n}\n')
    from_file = await call(upstream.target, "Echo", "-d", f"@{request}", "--no-emit-defaults")
    assert from_file.messages() == [{"fString": "from a file"}], from_file.err
    from_stdin = await call(
        upstream.target, "Echo", "-d", "@-", "--no-emit-defaults", stdin=b'{"fBool": true}'
    )
    assert from_stdin.messages() == [{"fBool": True}], from_stdin.err


async def test_no_data_sends_the_empty_message(upstream: RunningServer) -> None:
    result = await call(upstream.target, "Echo", "--no-emit-defaults")
    assert result.code == 0 and result.messages() == [{}], result.err


async def test_server_stream_prints_one_line_per_message(upstream: RunningServer) -> None:
    result = await call(upstream.target, "ServerStream", "-d", '{"count": 3, "tag": "s"}')
    assert result.code == 0, result.err
    assert result.messages() == [{"index": i, "text": f"s-{i}"} for i in range(3)]


async def test_server_stream_failing_midway_keeps_the_messages_and_exits_with_the_code(
    upstream: RunningServer,
) -> None:
    result = await call(
        upstream.target,
        "ServerStream",
        "-d",
        '{"count": 5, "failCode": 9, "failAfter": 2, "tag": "f"}',
    )
    assert result.code == 64 + 9
    assert [m["text"] for m in result.messages()] == ["f-0", "f-1"]
    assert result.status() == {"code": 9, "message": "failing after 2", "details": []}


async def test_client_stream_reads_ndjson_from_stdin(upstream: RunningServer) -> None:
    stdin = b'{"text": "a"}\n\n{"text": "b"}\n{\n  "text": "c"\n}\n'
    result = await call(upstream.target, "ClientStream", "-d", "@-", stdin=stdin)
    assert result.code == 0, result.err
    assert result.messages() == [{"count": 3, "texts": ["a", "b", "c"]}]
    assert upstream.test.received == ["a", "b", "c"]


async def test_bidi_echoes_every_line(upstream: RunningServer) -> None:
    lines = b"".join(b'{"index": %d, "text": "m%d"}\n' % (i, i) for i in range(4))
    result = await call(upstream.target, "Bidi", "-d", "@-", stdin=lines)
    assert result.code == 0, result.err
    assert result.messages() == [{"index": i, "text": f"echo: m{i}"} for i in range(4)]


async def test_bidi_prints_a_response_before_stdin_ends(upstream: RunningServer) -> None:
    """Interleaved: the first reply is on stdout while stdin is still open."""
    proc = await _from_stdin(upstream)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b'{"text": "first"}\n')
        await proc.stdin.drain()
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
        assert orjson.loads(line) == {"index": 0, "text": "echo: first"}
        proc.stdin.write(b'{"text": "second"}\n')
        proc.stdin.close()
        async with asyncio.timeout(30):
            rest = await proc.stdout.read()
            assert await proc.wait() == 0
        assert orjson.loads(rest) == {"index": 0, "text": "echo: second"}
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_error_is_the_status_json_with_details_and_exit_64_plus_code(
    upstream: RunningServer,
) -> None:
    result = await call(
        upstream.target, "Fail", "-d", '{"code": 5, "message": "no such item", "withDetails": true}'
    )
    assert result.code == 64 + 5
    assert result.out == ""
    assert result.status() == {
        "code": 5,
        "message": "no such item",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "name", "description": "must not be empty"}],
            },
            # Resolved through reflection: only the upstream knows this type.
            {
                "@type": "type.googleapis.com/bridgetest.v1.CustomDetail",
                "reason": "flaky",
                "attempt": 3,
            },
            {"@type": MYSTERY_TYPE_URL, "value": base64.b64encode(b"\x01\x02\x03").decode()},
        ],
    }


async def test_a_detail_type_no_service_file_imports_is_fetched_by_name(
    upstream: RunningServer,
) -> None:
    # RetryAdvice's file is not among the method's files and their imports: only a
    # reflection request for the symbol itself brings its fields. Mystery and
    # aardvark.v1.Missing are known nowhere: failing to find them leaves them as they
    # came, and failing to find the first (by name) does not stop the search for the rest.
    result = await call(
        upstream.target,
        "Fail",
        "-d",
        '{"code": 14, "message": "later", "withDetails": true, "withForeignDetail": true}',
    )
    assert result.code == 64 + 14, result.err
    details = result.status()["details"]
    assert details[2:] == [
        {"@type": MYSTERY_TYPE_URL, "value": base64.b64encode(b"\x01\x02\x03").decode()},
        {"@type": UNFINDABLE_TYPE_URL, "value": base64.b64encode(b"\x07").decode()},
        {
            "@type": "type.googleapis.com/bridgetest.v1.RetryAdvice",
            "waitSeconds": FOREIGN_DETAIL.wait_seconds,
            "why": FOREIGN_DETAIL.why,
        },
    ]


async def test_any_is_resolved_through_reflection_both_ways(upstream_factory: StartServer) -> None:
    # demo.v1.Item is in no file TestService's imports: only reflection can tell its fields.
    upstream = await upstream_factory(services=("test", "demo"))
    request = {
        "any": {"@type": "type.googleapis.com/demo.v1.Item", "name": "Kite", "priceCents": "5"},
        "ts": "2024-01-02T03:04:05Z",
        "dur": "1.500s",
        "st": {"a": [1.5, "x", None]},
    }
    result = await call(
        upstream.target, "Echo", "-d", orjson.dumps(request).decode(), "--no-emit-defaults"
    )
    assert result.code == 0, result.err
    assert result.messages() == [request]


async def test_header_flags_reach_the_server(upstream: RunningServer) -> None:
    result = await call(
        upstream.target,
        "EchoMetadata",
        *("-H", "X-Team: blue", "-H", "x-trace-bin: AAEC", "-H", "x-team: green"),
    )
    assert result.code == 0, result.err
    (reply,) = result.messages()
    assert reply["received"]["x-team"] == "blue, green"
    assert reply["received"]["x-trace-bin"] == base64.b64encode(b"\x00\x01\x02").decode()


async def test_verbose_shows_metadata_headers_and_trailers_on_stderr(
    upstream: RunningServer,
) -> None:
    result = await call(upstream.target, "EchoMetadata", "-v", "-H", "x-team: blue")
    assert result.code == 0, result.err
    assert len(result.messages()) == 1  # stdout stays JSON
    err = result.err
    assert (
        "\nResolved method descriptor:\n"
        "rpc EchoMetadata ( .google.protobuf.Empty )"
        " returns ( .bridgetest.v1.MetadataResponse ) {\n"
        "  option idempotency_level = NO_SIDE_EFFECTS;\n}\n"
    ) in err
    assert "\nRequest metadata to send:\nx-team: blue\n" in err
    assert "\nResponse headers received:\nx-initial: yes\nx-initial-bin: AAE=\n" in err
    assert "\nResponse trailers received:\nx-trailer: done\nx-trailer-bin: /w==\n" in err
    assert err.endswith("Sent 0 requests and received 1 response\n")


async def test_verbose_on_error_shows_trailers_before_the_status(upstream: RunningServer) -> None:
    result = await call(
        upstream.target,
        "Fail",
        "-v",
        "-d",
        '{"code": 7, "message": "denied", "trailers": {"x-why": "policy"}}',
    )
    assert result.code == 64 + 7
    assert "\nResponse trailers received:\nx-why: policy\n" in result.err
    assert "Sent 1 request and received 0 responses\n" in result.err
    assert result.status() == {"code": 7, "message": "denied", "details": []}


async def test_max_time_against_a_slow_method_is_deadline_exceeded(
    upstream: RunningServer,
) -> None:
    result = await call(
        upstream.target,
        "Sleep",
        "--max-time",
        str(CLIENT_DEADLINE_S),
        "-d",
        '{"duration": "30s", "tag": "slow"}',
    )
    assert result.code == 64 + 4 == 68
    assert result.status()["code"] == 4
    # The deadline travelled with the call: the server gave up too.
    await upstream.test.wait_for("cancelled", "slow", within=30)


async def test_bad_request_json_exits_1_naming_the_message(upstream: RunningServer) -> None:
    result = await call(upstream.target, "Echo", "-d", '{"fInt32": "abc"}')
    assert result.code == 1
    assert result.err.startswith("grpc-bridge: request message 1: invalid value for field")


async def test_bad_line_in_a_request_stream_cancels_the_call(upstream: RunningServer) -> None:
    proc = await _from_stdin(upstream, "ClientStream")
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(b'{"text": "good"}\n')
        await proc.stdin.drain()
        # The bad line comes once the server holds the first message: a cancellation
        # right behind a message may reach the server first, which then drops the message.
        await upstream.test.wait_for("received", "good", within=30)
        proc.stdin.write(b'{"nope": 1}\n{"text": "never"}\n')
        proc.stdin.close()
        async with asyncio.timeout(30):
            err, code = await asyncio.gather(proc.stderr.read(), proc.wait())
        assert code == 1
        assert 'request message 2: unknown field "nope"' in err.decode()
        await upstream.test.wait_for("cancelled", "good", within=30)
        assert "never" not in upstream.test.received
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_two_messages_for_a_unary_method_is_an_error(upstream: RunningServer) -> None:
    result = await call(upstream.target, "Echo", "-d", "{}\n{}")
    assert result.code == 1 and "takes one request message" in result.err


async def test_unknown_method_and_service_exit_1(upstream: RunningServer) -> None:
    result = await call(upstream.target, "Nope")
    assert result.code == 1 and "has no method 'Nope'" in result.err
    result = await run_client("call", "--plaintext", upstream.target, "nope.v1.Gone/Nope")
    assert result.code == 1 and "service not found: nope.v1.Gone" in result.err


async def test_usage_errors_exit_2(upstream: RunningServer) -> None:
    result = await call(upstream.target, "Echo", "-H", "no colon")
    assert result.code == 2 and "expected 'key: value'" in result.err
    result = await call(upstream.target, "Echo", "--cacert", "/nonexistent.pem")
    assert result.code == 2 and "--plaintext" in result.err
    result = await run_client("call", "--cacert", "/nonexistent.pem", upstream.target, "a.B/C")
    assert result.code == 2
    assert result.err == "grpc-bridge: --cacert '/nonexistent.pem' is not a readable file\n"
    result = await run_client("call", "--plaintext", "nohost", "a.B/C")
    assert result.code == 2 and result.err.startswith("grpc-bridge: TARGET: 'nohost' is not")


async def test_pretty_json_in_a_terminal(upstream: RunningServer) -> None:
    out = await run_in_terminal(
        "call",
        "--plaintext",
        upstream.target,
        f"{TEST_SERVICE}/ServerStream",
        "-d",
        '{"count": 2, "tag": "t"}',
    )
    assert out == ('{\n  "index": 0,\n  "text": "t-0"\n}\n{\n  "index": 1,\n  "text": "t-1"\n}\n')


async def test_method_names_with_a_dot_and_a_leading_slash(upstream: RunningServer) -> None:
    for name in (f"{TEST_SERVICE}.Echo", f"/{TEST_SERVICE}/Echo"):
        result = await run_client(
            "call", "--plaintext", upstream.target, name, "--no-emit-defaults"
        )
        assert result.code == 0 and result.messages() == [{}], (name, result.err)


async def test_a_closed_stdout_ends_the_stream_quietly(upstream: RunningServer) -> None:
    command = (
        f"{shlex.quote(sys.executable)} -m grpc_bridge call --plaintext {upstream.target} "
        f'{TEST_SERVICE}/ServerStream -d \'{{"count": 100000, "tag": "p"}}\' | head -1'
    )
    proc = await asyncio.create_subprocess_shell(
        command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=bridge_env()
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert orjson.loads(out) == {"index": 0, "text": "p-0"}
    assert b"Traceback" not in err and b"Error" not in err, err.decode()
    # The server saw the call cancelled, not left running.
    await upstream.test.wait_for("cancelled", "p", within=30)


@pytest.mark.parametrize("to", ["process", "other threads"])
async def test_ctrl_c_cancels_the_call_and_exits_130(upstream: RunningServer, to: str) -> None:
    """The kernel hands a process's SIGINT to any of its threads that does not block it:
    one taken by the thread reading stdin must still reach the event loop."""
    proc = await _from_stdin(upstream)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(b'{"text": "interrupted"}\n')
        await proc.stdin.drain()
        async with asyncio.timeout(30):
            assert await proc.stdout.readline()  # the call is up
        if to == "process":
            proc.send_signal(signal.SIGINT)
        else:
            # kill() on a thread's id offers the signal to that thread first; one that
            # blocks it passes it on to the main thread.
            others = [int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task")]
            others.remove(proc.pid)
            assert others, "no thread reads stdin"
            for tid in others:
                assert _blocks(proc.pid, tid, signal.SIGINT), f"thread {tid} takes SIGINT"
                os.kill(tid, signal.SIGINT)
        async with asyncio.timeout(30):
            assert await proc.wait() == 130
        assert b"Traceback" not in await proc.stderr.read()
        await upstream.test.wait_for("cancelled", "interrupted")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _blocks(pid: int, tid: int, sig: int) -> bool:
    """Whether thread ``tid`` of process ``pid`` blocks signal ``sig`` (Linux /proc)."""
    with open(f"/proc/{pid}/task/{tid}/status") as status:
        for line in status:
            if line.startswith("SigBlk:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    raise AssertionError(f"no SigBlk for thread {tid}")


async def _from_stdin(upstream: RunningServer, method: str = "Bidi") -> asyncio.subprocess.Process:
    """``grpc-bridge call ... METHOD -d @-`` with its stdin, stdout and stderr piped.

    Started with SIGINT at its default, as a terminal starts a command: a test process
    started with it ignored (a background job of a non-interactive shell: ``pytest &``)
    would pass that on, and Python leaves an ignored SIGINT ignored.
    """
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:  # a handler here is the default in the child (exec resets handlers)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "grpc_bridge", "call", "--plaintext", upstream.target),
            *(f"{TEST_SERVICE}/{method}", "-d", "@-"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=bridge_env(),
        )
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
