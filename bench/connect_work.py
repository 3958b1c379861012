"""Which work each proxy does for the Connect JSON unary case, checked before it is timed.

Envoy's ``connect_grpc_bridge`` filter does not transcode: it forwards a Connect
unary JSON body upstream as the gRPC message of an ``application/grpc+json``
call. The C echo upstream hands those bytes back, so the answer looks right, but
a protobuf-only server (anything built from generated code) cannot parse them.
grpc_bridge transcodes JSON to protobuf and back; so does Envoy's
``grpc_json_transcoder`` when no Connect filter is in front of it, which makes
that Envoy the like-for-like comparator.

``protobuf_only_answers`` sends the case's request through all three in front of
a protobuf-only upstream (``bench/upstream.py --protobuf-only``), and
``evidence`` turns what came back into the report's note, or refuses to go on
when the answers do not show that split.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson
import servers

#: The three ways the Connect JSON case is served, in the report's words.
NO_TRANSCODING = "envoy"
LIKE_WORK = "envoy_transcoding"
BRIDGE = "grpc_bridge"


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def brief(self) -> str:
        text = self.body.decode(errors="replace")
        return f"HTTP {self.status} {text[:160]}{'…' if len(text) > 160 else ''}"


def call(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """One POST; an HTTP error status is an answer too."""
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(
                response.status, response.headers.get("Content-Type", ""), response.read()
            )
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers.get("Content-Type", ""), exc.read())


def same_json(a: bytes, b: bytes) -> bool:
    """Equal as JSON values: map entries may come in another order."""
    try:
        equal: bool = orjson.loads(a) == orjson.loads(b)
    except orjson.JSONDecodeError:
        return False
    return equal


def protobuf_only_answers(
    workdir: Path,
    gen: Path,
    descriptor: Path,
    envoy: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> tuple[dict[str, Answer], dict[str, str]]:
    """The case's request through each way of serving it, before a protobuf-only upstream.

    Returns the answers and, for the two Envoys, the content-type each sent
    upstream (from its access log, read once it has stopped and flushed it).
    """
    logs = {name: workdir / f"check-{name}.access" for name in (NO_TRANSCODING, LIKE_WORK)}
    started: list[servers.Proc] = []
    try:
        upstream = servers.start_protobuf_only_upstream(workdir, gen, None)
        started.append(upstream)
        procs = {
            name: servers.start_envoy(
                workdir,
                envoy,
                upstream,
                descriptor,
                None,
                connect_filter=name == NO_TRANSCODING,
                name=f"check-{name}",
                upstream_log=log,
            )
            for name, log in logs.items()
        }
        procs[BRIDGE] = servers.start_bridge(workdir, upstream, descriptor, None)
        started += procs.values()
        answers = {
            name: call(f"http://127.0.0.1:{proc.port}{path}", body, headers)
            for name, proc in procs.items()
        }
    finally:
        for proc in reversed(started):
            proc.stop()
    sent: dict[str, str] = {}
    for name, log in logs.items():
        lines = log.read_text().split() if log.exists() else []
        # One line, "path content-type status", for the one request.
        sent[name] = lines[1] if len(lines) == 3 and lines[0] == path else "?"
    return answers, sent


def evidence(answers: dict[str, Answer], upstream_types: dict[str, str], sent: bytes) -> list[str]:
    """The report's notes on the Connect case, or SystemExit if the answers contradict them."""
    bridge, like, untranscoded = answers[BRIDGE], answers[LIKE_WORK], answers[NO_TRANSCODING]
    if bridge.status != 200 or not same_json(bridge.body, sent):
        raise SystemExit(
            f"grpc_bridge failed the Connect call on a protobuf-only upstream: {bridge}"
        )
    if like.status != 200 or not same_json(like.body, bridge.body):
        raise SystemExit(
            f"Envoy's transcoder failed the Connect call on a protobuf-only upstream: {like}"
        )
    if untranscoded.status == 200:
        raise SystemExit(
            "Envoy's connect_grpc_bridge served the Connect JSON call from a protobuf-only "
            f"upstream, so it does transcode after all: {untranscoded.brief()}"
        )
    return [
        "Connect JSON, checked before timing against a protobuf-only upstream (bench/upstream.py "
        "--protobuf-only: grpc.aio parsing each request as its message, as generated code "
        "does): Envoy with connect_grpc_bridge sends it upstream as "
        f"`{upstream_types[NO_TRANSCODING]}` (its access log) and answers "
        f"`{untranscoded.brief()}`: the filter forwards the JSON bytes as the gRPC message, "
        "which the echo upstream of the timed runs hands back as they are. Envoy without "
        "the filter sends the same request upstream as "
        f"`{upstream_types[LIKE_WORK]}` (its grpc_json_transcoder made protobuf of it) and "
        "answers HTTP 200 with the Order, as grpc_bridge does.",
        "Connect JSON target: measured against Envoy transcoding the same request (same URL, "
        "body and headers, Connect-Protocol-Version: 1 included; a second Envoy without "
        "connect_grpc_bridge, its success answer checked equal to grpc_bridge's), the work "
        "grpc_bridge does. The connect_grpc_bridge row is kept for reference; it compares "
        "reframing JSON with transcoding it.",
    ]


def check_same_success(
    procs: dict[str, servers.Proc], path: str, body: bytes, headers: dict[str, str]
) -> str:
    """Before timing: every way of serving the case answers 200 with grpc_bridge's JSON.

    Returns the note saying so. The connect_grpc_bridge Envoy's content-type is
    not checked: it follows the upstream's, and the C echo answers
    ``application/grpc`` (protobuf) around the JSON bytes it was sent.
    """
    answers = {
        name: call(f"http://127.0.0.1:{proc.port}{path}", body, headers)
        for name, proc in procs.items()
    }
    reference = answers[BRIDGE]
    for name, answer in answers.items():
        typed = name == NO_TRANSCODING or answer.content_type.startswith("application/json")
        if answer.status != 200 or not typed or not same_json(answer.body, reference.body):
            raise SystemExit(
                f"Connect JSON: {name} answers {answer.brief()} ({answer.content_type}), "
                f"grpc_bridge {reference.brief()}"
            )
    note = f"Connect JSON: answers checked equal as JSON before timing ({', '.join(procs)})"
    untranscoded = answers.get(NO_TRANSCODING)
    if untranscoded and not untranscoded.content_type.startswith("application/json"):
        note += (
            f"; Envoy with connect_grpc_bridge labels its JSON answer "
            f"`{untranscoded.content_type}`, after the echo upstream's content-type"
        )
    return note + "."
