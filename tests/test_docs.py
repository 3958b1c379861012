"""README.md and docs/*.md: every example runs as printed, every printed output is what it prints.

The conventions (which blocks are samples, how outputs are normalised) are in
tests/helpers/doc_samples.py and docs/development.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grpc_bridge.cli import _parser
from grpc_bridge.settings import load_settings
from tests.helpers.doc_samples import (
    DEMO_PORTS,
    ROOT,
    Command,
    Transcript,
    cli_transcripts,
    command_words,
    doc_pages,
    for_demo,
    normalise,
    output_mismatch,
    page_commands,
    text_mismatch,
    transcript_env,
)
from tests.helpers.packaging_tools import shell_commands
from tests.helpers.process import bridge_env, expected_status, running_demo

PAGES = doc_pages()
WITH_COMMANDS = [p for p in PAGES if page_commands(p)]
_STATUS_MARK = "\n<<<http-status:"


def test_the_docs_have_runnable_examples_and_samples() -> None:
    commands = [c for p in PAGES for c in page_commands(p)]
    assert len(commands) >= 25
    assert sum(1 for c in commands if c.expected is not None) >= 20
    # The tour on the front page shows outputs too.
    assert sum(1 for c in page_commands(ROOT / "README.md") if c.expected is not None) >= 5


async def run_curl(command: str) -> tuple[str, str]:
    """The command's standard output and the HTTP status curl saw last."""
    curl = await asyncio.create_subprocess_shell(
        command + f" -w '{_STATUS_MARK}%{{http_code}}'", stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        out, _ = await curl.communicate()
    text, _, status = out.decode().rpartition(_STATUS_MARK)
    return text, status


def check(command: Command, output: str, status: str, ports: dict[str, int]) -> str | None:
    if command.expected is None:
        want = expected_status(command.command)
        return None if status == want else f"HTTP {status} instead of {want}"
    return output_mismatch(
        command.lang, normalise(command.expected, DEMO_PORTS), normalise(output, ports)
    )


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
@pytest.mark.parametrize("page", WITH_COMMANDS, ids=lambda p: str(p.relative_to(ROOT)))
async def test_examples_run_against_the_demo_and_print_what_is_shown(page: Path) -> None:
    """A fresh demo per page: each page's examples run in its order, from the demo's data."""
    problems = []
    async with running_demo() as ports:
        for command in page_commands(page):
            output, status = await run_curl(for_demo(command.command, ports))
            problem = check(command, output, status, ports)
            if problem:
                problems.append(f"{command}\n    {problem}")
    assert not problems, "\n".join(problems)


# --- commands other than curl -------------------------------------------------------------


def all_shell_commands() -> list[tuple[str, str]]:
    return [
        (str(page.relative_to(ROOT)), command)
        for page in PAGES
        for command in shell_commands(page.read_text())
    ]


def test_documented_grpc_bridge_commands_parse() -> None:
    """Flags and subcommands exist as documented (the lines run with .venv/bin on PATH)."""
    lines = [(p, c) for p, c in all_shell_commands() if command_words(c)[:1] == ["grpc-bridge"]]
    assert len(lines) >= 5
    for page, command in lines:
        words = command_words(command)[1:]
        if words == ["--version"]:
            continue  # argparse prints it and exits 0
        try:
            _parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"{page}: {command}: not a valid command line")


def test_documented_make_targets_exist() -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for page, command in all_shell_commands():
        words = command_words(command)
        if words[:1] == ["make"]:
            wanted = [w for w in words[1:] if "=" not in w]
            assert set(wanted) <= targets, f"{page}: {command}"


# --- the configuration reference -----------------------------------------------------------


def _differences(code: object, doc: object, key: str = "") -> list[str]:
    """Where the documented YAML and the defaults disagree: keys missing, unknown or different."""
    if isinstance(code, dict) and isinstance(doc, dict):
        out = [f"{key}{k}: not documented" for k in code if k not in doc]
        out += [f"{key}{k}: not a setting" for k in doc if k not in code]
        for k in code.keys() & doc.keys():
            out += _differences(code[k], doc[k], f"{key}{k}.")
        return out
    if isinstance(code, list) and isinstance(doc, list) and code and isinstance(code[0], dict):
        return _differences(code[0], doc[0], f"{key}[0].")
    return [] if code == doc else [f"{key.rstrip('.')}: documented {doc!r}, default {code!r}"]


def test_the_configuration_page_lists_every_key_with_its_default() -> None:
    """docs/configuration.md's YAML block is the settings' defaults (one upstream, as shown)."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    block = text.split("Every key, with its default:", 1)[1].split("```yaml\n", 1)[1]
    doc = yaml.safe_load(block.split("```", 1)[0])
    target = doc["upstreams"][0]["targets"][0]
    defaults = load_settings(None, {"upstream": target}).model_dump(mode="json")
    defaults["json"] = defaults.pop("json_")
    problems = _differences(defaults, doc)
    assert not problems, "\n".join(problems)


# --- links and the site ---------------------------------------------------------------------


def _anchors(page: Path) -> set[str]:
    """Heading ids as MkDocs (and GitHub) make them."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _without_code(page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-")
        out.add(slug)
    return out


def _without_code(markdown: str) -> str:
    return re.sub(r"^\s*```.*?^\s*```", "", markdown, flags=re.M | re.S)


def test_relative_links_and_anchors_resolve() -> None:
    problems = []
    for page in PAGES:
        text = _without_code(page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                problems.append(f"{page.name}: {target}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                problems.append(f"{page.name}: {target}: no such heading")
    assert not problems, "\n".join(problems)


def nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return []


def test_every_docs_page_is_in_the_site_nav() -> None:
    """Every page of docs/ is in mkdocs.yml's nav and in README's list of pages."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    present = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    missing = [p for p in present if p not in listed]
    assert not missing, f"add these pages to the nav in mkdocs.yml: {missing}"
    assert sorted(set(listed)) == present and len(listed) == len(set(listed))
    # And to the README's list of pages, the way in from the repository.
    readme = (ROOT / "README.md").read_text()
    unlinked = [p for p in present if p != "index.md" and f"(docs/{p})" not in readme]
    assert not unlinked, f"link these pages from README.md's Documentation list: {unlinked}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`make docs`: MkDocs (Material) from the docs extra, warnings (broken anchors) fatal."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    assert mkdocs.exists(), "mkdocs not installed: pip install -e '.[docs]' (make docs does)"
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    built = {p.relative_to(tmp_path / "site").parts[0] for p in (tmp_path / "site").iterdir()}
    for page in (ROOT / "docs").glob("*.md"):
        if page.stem != "index":
            assert page.stem in built, page


# --- grpc-bridge transcripts --------------------------------------------------------------


@pytest.mark.parametrize(
    "transcript",
    [t for page in PAGES for t in cli_transcripts(page)],
    ids=lambda t: f"{t.page}:{t.line}",
)
async def test_cli_transcripts_print_what_is_shown(transcript: Transcript, tmp_path: Path) -> None:
    """`$ grpc-bridge check-config ...` blocks run in a directory holding the files shown."""
    for name, text in transcript.files.items():
        (tmp_path / name).write_text(text)
    async with contextlib.AsyncExitStack() as stack:
        ports = DEMO_PORTS
        if f"127.0.0.1:{DEMO_PORTS['grpc']}" in transcript.command:
            # The client commands (docs/cli.md) talk to the demo's gRPC service.
            ports = await stack.enter_async_context(running_demo())
        command = transcript.command.replace(
            f"127.0.0.1:{DEMO_PORTS['grpc']}", f"127.0.0.1:{ports['grpc']}"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "grpc_bridge",
            *command_words(command)[1:],
            cwd=tmp_path,
            env=bridge_env(PYTHONPATH=str(ROOT), **transcript_env(command)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    printed = normalise(err.decode() + out.decode(), ports)
    problem = text_mismatch(transcript.expected, printed)
    assert problem is None, f"{transcript.page}:{transcript.line}: {problem}"


# --- make bench's tables --------------------------------------------------------------------


def test_make_bench_writes_its_tables_into_the_performance_page(tmp_path: Path) -> None:
    """bench/run.py regenerates the block between the markers of docs/performance.md."""
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert report.PERFORMANCE_PAGE == ROOT / "docs" / "performance.md"
    results = json.loads((ROOT / "bench" / "results" / "results.json").read_text())
    page = tmp_path / "performance.md"
    original = report.PERFORMANCE_PAGE.read_text()
    stale = re.sub(r"\| grpc_bridge \|[^\n]*", "| grpc_bridge | stale |", original)
    page.write_text(stale)
    assert report.update_tables(page, results)
    # The committed page shows the committed results, as make bench left them.
    assert page.read_text() == original
    assert "(../bench/results/results.md)" in original
