"""Checks on rendered manifests: Kubernetes schemas, Pod Security "restricted", bridge wiring."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from tests.helpers.packaging_tools import Manifest

#: The oldest Kubernetes with native sidecars on by default, and the newest schemas shipped.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
BRIDGE_CONTAINER = "grpc-bridge"
CONFIG_KEY = "config.yaml"

# Custom resources have no schema in the Kubernetes OpenAPI documents;
# check_crd() checks the fields the bridge relies on instead.
CRD_GROUPS = ("monitoring.coreos.com/",)

# Pod Security Standards, "restricted" profile.
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def schema_problems(doc: Manifest) -> list[str]:
    """Strict validation (unknown fields are errors) against each of KUBERNETES_VERSIONS."""
    # Imported here so GRPC_BRIDGE_SKIP_PACKAGING=1 works without the test extra.
    import kubernetes_validate

    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if str(doc.get("apiVersion", "")).startswith(CRD_GROUPS):
        return [f"{where}: {p}" for p in check_crd(doc)]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            at = ".".join(str(p) for p in exc.absolute_path)
            problems.append(f"{where} (Kubernetes {version}) at {at}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {doc.get('apiVersion')} in {version}")
    return problems


def check_crd(doc: Manifest) -> list[str]:
    """A ServiceMonitor's selector and endpoints (the CRD's schema is not available offline)."""
    if doc.get("kind") != "ServiceMonitor" or doc.get("apiVersion") != "monitoring.coreos.com/v1":
        return [f"unexpected custom resource {doc.get('apiVersion')} {doc.get('kind')}"]
    spec = doc.get("spec", {})
    problems = []
    if not spec.get("selector", {}).get("matchLabels"):
        problems.append("spec.selector.matchLabels is empty: it would select nothing useful")
    for i, endpoint in enumerate(spec.get("endpoints") or [None]):
        if not isinstance(endpoint, dict) or not isinstance(endpoint.get("port"), str):
            problems.append(f"spec.endpoints[{i}].port must name a Service port")
        elif endpoint.get("path") != "/metrics":
            problems.append(f"spec.endpoints[{i}].path must be /metrics")
    return problems


def pod_specs(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for doc in docs:
        template = doc.get("spec", {}).get("template")
        if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job") and template:
            yield f"{doc['kind']}/{doc['metadata']['name']}", template["spec"]


def containers(pod: Manifest) -> list[Manifest]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def restricted_problems(pod: Manifest) -> list[str]:
    """What keeps a pod from the "restricted" Pod Security Standard, plus a read-only root."""
    problems = []
    pod_sc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"{key} is set")
    for volume in pod.get("volumes", []):
        kind = next(k for k in volume if k != "name")
        if kind not in _RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']} is a {kind}")
    for c in containers(pod):
        sc = c.get("securityContext", {})

        def effective(key: str, sc: Manifest = sc) -> Any:
            return sc.get(key, pod_sc.get(key))

        name = c["name"]
        if effective("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        user = effective("runAsUser")
        if not isinstance(user, int) or user == 0:
            problems.append(f"{name}: runAsUser must be a non-zero number, not {user!r}")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities.drop lacks ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        seccomp = (effective("seccompProfile") or {}).get("type")
        if seccomp not in _SECCOMP_OK:
            problems.append(f"{name}: seccompProfile.type is {seccomp!r}")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
    return problems


def bridge_container(pod: Manifest) -> tuple[Manifest, bool]:
    """The bridge's container and whether it is a native sidecar (an init container)."""
    for c in pod.get("initContainers", []):
        if c["name"] == BRIDGE_CONTAINER:
            return c, True
    for c in pod.get("containers", []):
        if c["name"] == BRIDGE_CONTAINER:
            return c, False
    raise AssertionError(
        f"no {BRIDGE_CONTAINER} container in {[c['name'] for c in containers(pod)]}"
    )


def config_map_of(pod: Manifest, container: Manifest, docs: list[Manifest]) -> tuple[str, str]:
    """(the GRPC_BRIDGE_CONFIG path, the ConfigMap's file mounted there): they must agree."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    path = env.get("GRPC_BRIDGE_CONFIG")
    assert path, "the bridge container does not set GRPC_BRIDGE_CONFIG"
    mount = next(
        (m for m in container.get("volumeMounts", []) if path.startswith(m["mountPath"] + "/")),
        None,
    )
    assert mount, f"GRPC_BRIDGE_CONFIG={path} is not under any volumeMount"
    assert mount.get("readOnly") is True, "the config volume should be mounted read-only"
    volume = next(v for v in pod.get("volumes", []) if v["name"] == mount["name"])
    name = volume["configMap"]["name"]
    config_map = next(
        (d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name), None
    )
    assert config_map, f"ConfigMap {name} (volume {mount['name']}) is not rendered"
    key = path.removeprefix(mount["mountPath"] + "/")
    assert key in config_map["data"], f"ConfigMap {name} has no key {key}"
    return path, str(config_map["data"][key])


def named_port(container: Manifest, name: str) -> int:
    for port in container.get("ports", []):
        if port.get("name") == name:
            return int(port["containerPort"])
    raise AssertionError(f"{container['name']} has no port named {name!r}")


def wiring_problems(pod: Manifest, docs: list[Manifest]) -> list[str]:
    """Ports, probes, sidecar kind and grace period agree with the bridge's own config."""
    container, native = bridge_container(pod)
    _, text = config_map_of(pod, container, docs)
    config = yaml.safe_load(text)
    problems = []
    listen = config.get("listen", {}).get("port", 8080)
    admin = config.get("admin", {}).get("port", 8081)
    ports = {p["containerPort"] for p in container.get("ports", [])}
    if ports != {listen, admin}:
        problems.append(f"container ports {ports} are not listen/admin ports {listen}/{admin}")
    expected = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    for probe, path in expected.items():
        get = container.get(probe, {}).get("httpGet", {})
        port = get.get("port")
        port = named_port(container, port) if isinstance(port, str) else port
        if get.get("path") != path or port != admin:
            problems.append(f"{probe} is {get}, not {path} on the admin port {admin}")
    if native and container.get("restartPolicy") != "Always":
        problems.append("an init container without restartPolicy: Always is not a sidecar")
    shutdown = config.get("shutdown", {})
    needed = shutdown.get("drain_s", 0) + shutdown.get("timeout_s", 25)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= needed:
        problems.append(f"terminationGracePeriodSeconds {grace} <= drain_s + timeout_s {needed}")
    return problems
