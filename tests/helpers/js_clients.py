"""Real gRPC-Web and Connect clients, driven from tests, answering as ``CallResult``.

Each client is the one users have, installed from npm by ``make tools`` into
.venv/tools (package.json): ``@connectrpc/connect-node`` (Connect JSON and
binary, and its gRPC-Web transport: one long-lived Node process per test
process, a JSON line per call each way) and ``buf curl`` (a process per call)
here; ``@connectrpc/connect-web`` and the official ``grpc-web`` runtime from a
page in headless Chromium in tests/helpers/js_browser.py.

Messages are described at run time by a FileDescriptorSet (the test protos,
the demo and google.rpc's error details by default, see ``descriptor_set``):
no generated JS code, and the request and response messages are proto3 JSON.

All functions are async: the upstream of a test usually runs in the test's own
event loop, so a client must never block it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from bridgetest.v1 import kitchen_pb2, other_pb2, rest_pb2
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2

from grpc_bridge.demo import demo_pb2
from tests.helpers.descriptors import fdp, with_imports
from tests.helpers.json_lines_process import JsonLinesProcess

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "tests" / "js"

Protocol = Literal["connect", "grpcweb"]
Json = dict[str, Any]

# Connect's code names, by gRPC code number (connectrpc.com/docs/protocol#error-codes).
CODE_NAMES = (
    *("ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found"),
    *("already_exists", "permission_denied", "resource_exhausted", "failed_precondition"),
    *("aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss"),
    "unauthenticated",
)


@dataclass
class CallError:
    """An RPC error as the client reported it."""

    code: str  # Connect's name: "not_found", "deadline_exceeded", ...
    message: str
    details: list[Json] = field(default_factory=list)  # {type, value (base64), json?, debug?}
    metadata: dict[str, str] = field(default_factory=dict)  # headers and trailers, merged

    @property
    def code_number(self) -> int:
        return CODE_NAMES.index(self.code) if self.code in CODE_NAMES else 2


@dataclass
class CallResult:
    """What one call gave: messages as proto3 JSON, metadata, and the error if any."""

    messages: list[Json]
    headers: dict[str, str] | None = None  # response headers (None: never arrived)
    trailers: dict[str, str] | None = None
    error: CallError | None = None
    cancelled: bool = False  # the client cancelled after ``cancel_after`` messages
    raw: Json = field(default_factory=dict, repr=False)  # the client's own report


def result_from_json(data: Json) -> CallResult:
    """A CallResult from the JSON the JS runners print (tests/js/connect_call.cjs)."""
    error = data.get("error")
    return CallResult(
        messages=list(data.get("messages", [])),
        headers=data.get("headers"),
        trailers=data.get("trailers"),
        error=(
            CallError(
                code=error["code"],
                message=error.get("message", ""),
                details=list(error.get("details", [])),
                metadata=dict(error.get("metadata", {})),
            )
            if error
            else None
        ),
        cancelled=bool(data.get("cancelled")),
        raw=data,
    )


def node_modules() -> Path:
    """The npm tools ``make tools`` installed (GRPC_BRIDGE_JS_TOOLS overrides).

    Looked for in this checkout's .venv, then in the venv running the tests (a
    worktree shares its venv with the main checkout). Missing tools fail the
    test: CI must not pass by skipping.
    """
    override = os.environ.get("GRPC_BRIDGE_JS_TOOLS")
    candidates = (
        [Path(override)]
        if override
        else [
            ROOT / ".venv" / "tools" / "node_modules",
            Path(sys.executable).parent.parent / "tools" / "node_modules",
        ]
    )
    for candidate in candidates:
        if (candidate / "@connectrpc" / "connect-node" / "package.json").is_file():
            return candidate
    pytest.fail(
        f"the JS clients are missing from {', '.join(map(str, candidates))}: run `make tools`",
        pytrace=False,
    )


def node_binary() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is missing: `make tools` installs npm (and node) with apt", pytrace=False)
    return found


@functools.cache
def descriptor_set() -> Path:
    """A FileDescriptorSet of every service the tests start, written once per process."""
    files = with_imports(
        kitchen_pb2.DESCRIPTOR,
        other_pb2.DESCRIPTOR,
        rest_pb2.DESCRIPTOR,
        demo_pb2.DESCRIPTOR,
        health_pb2.DESCRIPTOR,
        error_details_pb2.DESCRIPTOR,
        status_pb2.DESCRIPTOR,
    )
    protos = [fdp(file) for file in files]
    for proto in protos:
        for message in proto.message_type:
            _set_json_names(message)
    data = descriptor_pb2.FileDescriptorSet(file=protos).SerializeToString()
    # Named by content: runs share the file instead of leaving one per run behind.
    path = (
        Path(tempfile.gettempdir())
        / f"grpc-bridge-js-{hashlib.sha256(data).hexdigest()[:16]}.binpb"
    )
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(path)
    return path


def _json_name(name: str) -> str:
    """protoc's ToJsonName: drop each underscore and upper-case the letter after it."""
    parts = name.split("_")
    return parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def _set_json_names(message: descriptor_pb2.DescriptorProto) -> None:
    # CopyToProto leaves json_name out, and protobuf-es reads JSON names from it
    # (as protoc always fills it in): without it, "fString" is an unknown key.
    for item in message.field:
        if not item.HasField("json_name"):
            item.json_name = _json_name(item.name)
    for nested in message.nested_type:
        _set_json_names(nested)


@functools.cache
def _connect_node() -> JsonLinesProcess:
    """tests/js/connect_node.cjs, started once per test process (per xdist worker)."""
    env = {**os.environ, "NODE_PATH": str(node_modules())}
    return JsonLinesProcess(
        [node_binary(), str(JS_DIR / "connect_node.cjs")], env, "connect_node.cjs"
    )


def close_connect_node() -> None:
    if _connect_node.cache_info().currsize:
        _connect_node().close()


def call_spec(
    method: str,
    request: Json | None,
    requests: Sequence[Json] | None,
    headers: Mapping[str, str] | None,
    timeout_ms: int | None,
    cancel_after: int | None,
    emit_defaults: bool,
) -> Json:
    """The call description tests/js/connect_call.cjs (and the grpc-web page) read."""
    spec: Json = {"method": method.lstrip("/"), "headers": dict(headers or {})}
    if requests is not None:
        spec["requests"] = list(requests)
    else:
        spec["request"] = request or {}
    if timeout_ms is not None:
        spec["timeoutMs"] = timeout_ms
    if cancel_after is not None:
        spec["cancelAfter"] = cancel_after
    spec["emitDefaults"] = emit_defaults
    return spec


async def connect_node_call(
    base_url: str,
    method: str,
    request: Json | None = None,
    *,
    requests: Sequence[Json] | None = None,
    protocol: Protocol = "connect",
    binary: bool = False,
    headers: Mapping[str, str] | None = None,
    timeout_ms: int | None = None,
    cancel_after: int | None = None,
    http_version: Literal["1.1", "2"] = "1.1",
    use_http_get: bool = False,
    emit_defaults: bool = False,
    descriptors: Path | None = None,
) -> CallResult:
    """One call with @connectrpc/connect-node.

    ``method`` is ``pkg.Service/Method``; ``request`` its proto3 JSON (client
    and bidi streams: ``requests``). ``protocol`` picks the Connect or the
    gRPC-Web transport, ``binary`` the proto encoding over JSON. ``headers`` go
    out as metadata; ``timeout_ms`` is the deadline the client sends (and
    enforces); ``cancel_after`` aborts a stream after that many messages.
    ``use_http_get`` sends Connect GET for NO_SIDE_EFFECTS methods.
    """
    payload = {
        "descriptorSet": str(descriptors or descriptor_set()),
        "baseUrl": base_url,
        "protocol": protocol,
        "binary": binary,
        "httpVersion": http_version,
        "useHttpGet": use_http_get,
        "call": call_spec(
            method, request, requests, headers, timeout_ms, cancel_after, emit_defaults
        ),
    }
    answer = await _connect_node().request(payload, timeout=60.0)
    if "failure" in answer:
        raise AssertionError(f"connect_node.cjs failed the call: {answer['failure'][-4000:]}")
    return result_from_json(answer["result"])


def decode_bin_header(value: str) -> bytes:
    """A ``-bin`` metadata value as sent on the wire (unpadded or padded base64)."""
    return base64.b64decode(value + "=" * (-len(value) % 4))


async def buf_curl(
    base_url: str,
    method: str,
    request: Json | None = None,
    *,
    requests: Sequence[Json] | None = None,
    protocol: Literal["connect", "grpcweb", "grpc"] = "connect",
    reflect: bool = True,
    schema: Path | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    http2: bool = False,
    emit_defaults: bool = False,
    extra_args: Sequence[str] = (),
) -> CallResult:
    """One call with ``buf curl`` (npm @bufbuild/buf), as a user types it.

    ``reflect`` resolves the method by server reflection through ``base_url``
    itself (reflection is a bidi stream: over plain TCP it needs ``http2``);
    otherwise the schema is ``schema`` (default: ``descriptor_set()``).
    ``timeout_s`` is buf's ``--timeout``, sent as the call's deadline.
    ``http2``: ``--http2-prior-knowledge`` (h2c).

    ``headers`` and ``trailers`` are what ``-v`` shows of the HTTP response:
    trailers are HTTP trailers plus Connect unary's ``trailer-`` headers
    (prefix removed); buf does not print trailers carried in the body
    (gRPC-Web trailer frame, Connect end-of-stream), so those are None.
    ``raw`` has ``status`` (the HTTP status), ``stderr`` and ``exit``.
    """
    binary = node_modules() / ".bin" / "buf"
    args = ["curl", "-v", "--protocol", protocol]
    if reflect:
        args.append("--reflect")
    else:
        args += ["--reflect=false", "--schema", str(schema or descriptor_set())]
    if http2:
        args.append("--http2-prior-knowledge")
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if timeout_s is not None:
        args += ["--timeout", f"{int(timeout_s * 1000)}ms"]
    if emit_defaults:
        args.append("--emit-defaults")
    body = "\n".join(json.dumps(r) for r in (requests if requests is not None else [request or {}]))
    args += ["-d", "@-", *extra_args, f"{base_url.rstrip('/')}/{method.lstrip('/')}"]
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Its own config and cache, never the user's (buf reads ~/.config/buf).
        env={**os.environ, "BUF_CACHE_DIR": tempfile.gettempdir() + "/grpc-bridge-buf-cache"},
    )
    try:
        async with asyncio.timeout(60 + (timeout_s or 0)):
            out, err = await proc.communicate(body.encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"buf curl {method} did not finish within 60s") from None
    exit_code = proc.returncode or 0
    stderr = err.decode()
    if exit_code and (exit_code < 8 or exit_code % 8):
        raise AssertionError(f"buf curl failed ({exit_code}): {stderr[-4000:]}")
    return _buf_result(method, out.decode(), stderr, exit_code)


async def buf_list(
    base_url: str, what: Literal["services", "methods"], protocol: Protocol
) -> list[str]:
    """``buf curl --reflect --list-services`` (or ``--list-methods``) over h2c: the names."""
    binary = node_modules() / ".bin" / "buf"
    args = ["curl", "--http2-prior-knowledge", "--reflect", "--protocol", protocol]
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        *args,
        f"--list-{what}",
        base_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BUF_CACHE_DIR": tempfile.gettempdir() + "/grpc-bridge-buf-cache"},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-4000:]
    return out.decode().split()


def _json_values(text: str) -> list[Json]:
    """Concatenated JSON documents (buf prints one pretty-printed object per message)."""
    decoder = json.JSONDecoder()
    values: list[Json] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return values
        value, index = decoder.raw_decode(text, index)
        values.append(value)


def _buf_result(method: str, out: str, stderr: str, exit_code: int) -> CallResult:
    # -v lines look like "buf: < (#2) Name: value"; the call's stream is the one
    # that POSTed the method (reflection streams come first).
    verbose = [line[5:] for line in stderr.splitlines() if line.startswith("buf: ")]
    stream = next(
        (
            line.split(")")[0] + ")"
            for line in verbose
            if line.startswith("> (#") and line.endswith(f" POST /{method.lstrip('/')}")
        ),
        None,
    )
    headers: dict[str, str] | None = None
    trailers: dict[str, str] | None = None
    status = None
    prefix = f"< {stream[2:]}" if stream else None
    for line in verbose:
        if prefix is None or not line.startswith(prefix):
            continue
        text = line[len(prefix) :].strip()
        if text.startswith("HTTP/"):
            status = int(text.split()[1])
            headers = {}
        elif text.startswith("[*] "):  # an HTTP trailer
            name, _, value = text[4:].partition(":")
            trailers = trailers or {}
            trailers[name.strip().lower()] = value.strip()
        elif ":" in text and headers is not None:
            name, _, value = text.partition(":")
            key = name.strip().lower()
            if key.startswith("trailer-"):
                trailers = trailers or {}
                trailers[key.removeprefix("trailer-")] = value.strip()
            else:
                headers[key] = value.strip()
    error = None
    if exit_code:
        report = "\n".join(line for line in stderr.splitlines() if not line.startswith("buf: "))
        data = json.loads(report)
        error = CallError(
            code=data["code"],
            message=data.get("message", ""),
            details=list(data.get("details", [])),
            metadata={**(headers or {}), **(trailers or {})},
        )
    raw = {"status": status, "stderr": stderr, "exit": exit_code}
    return CallResult(
        messages=_json_values(out), headers=headers, trailers=trailers, error=error, raw=raw
    )
