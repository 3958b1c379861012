"""The documentation's runnable examples, and how their printed outputs are compared.

Pages: README.md and every docs/*.md (a new page is picked up by the glob).

Conventions (written up in docs/development.md, "How the docs are tested"):

- Every command of a ```sh / ```bash block that is a ``curl`` against the
  demo's ports (127.0.0.1:8080 proxy, 127.0.0.1:8081 admin) runs against a fresh
  ``grpc-bridge demo``, the page's commands in page order.
- A ```sh block with exactly one such command, followed (only blank lines
  between) by a ```json or ```text block, is a *sample*: that block is the
  command's output. So is a ```text block whose first line is ``$ curl ...``
  (a transcript: the command, then its output; with ``-i``, the status line and
  the headers shown, then the body).
- Both sides are normalised before comparing: the demo's real ports become
  8080 / 8081 / 50051 (its gRPC port), RFC 3339 timestamps become one
  placeholder, 32-hex-digit request ids another.
- ```json outputs are compared as JSON (one document, or one per line for
  NDJSON), whitespace and key order aside. The string ``"..."`` as a value
  matches any value; a key ``"..."`` in an object allows other keys; ``"..."``
  as a list's last element allows more elements.
- ```text outputs are compared line by line, ``...`` (or ``…``) matching any
  text within a line; transcript headers must be among the answer's headers.
- A command without a sample must answer 200, or 404 when it asks for item
  ``"404"`` (curl's ``-w '%{http_code}'``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.helpers.packaging_tools import shell_commands

ROOT = Path(__file__).resolve().parents[2]
DEMO_PORTS = {"proxy": 8080, "admin": 8081, "grpc": 50051}
_DEMO_URL = re.compile(r"127\.0\.0\.1:808[01]")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")
_REQUEST_ID = re.compile(r"\b[0-9a-f]{32}\b")
WILDCARD = "..."


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class Block:
    lang: str
    lines: list[str]
    line: int  # where the opening fence is, 1-based


def fenced_blocks(markdown: str) -> list[Block | None]:
    """Fenced blocks in order; None stands for prose between two blocks."""
    out: list[Block | None] = []
    current: Block | None = None
    prose = False
    for number, raw in enumerate(markdown.splitlines(), 1):
        stripped = raw.strip()
        if current is None:
            if stripped.startswith("```"):
                if prose:
                    out.append(None)
                    prose = False
                current = Block(stripped[3:].strip(), [], number)
            elif stripped:
                prose = True
        elif stripped == "```":
            out.append(current)
            current = None
        else:
            # Blocks indented in a list item: the fence's indentation is not content.
            current.lines.append(raw)
    return out


@dataclass
class Command:
    """One curl line of a page, and the output printed for it, if any."""

    page: str
    line: int
    command: str
    expected: str | None = None
    lang: str = ""

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.command}"


def is_demo_curl(command: str) -> bool:
    words = command.split("|")[-1].split()
    return bool(words) and words[0] == "curl" and bool(_DEMO_URL.search(command))


def page_commands(page: Path) -> list[Command]:
    name = str(page.relative_to(ROOT))
    blocks = fenced_blocks(page.read_text())
    out: list[Command] = []
    for i, block in enumerate(blocks):
        if block is None:
            continue
        if block.lang in ("sh", "bash"):
            commands = [c for c in shell_commands("```sh\n" + "\n".join(block.lines) + "\n```")]
            demo = [c for c in commands if is_demo_curl(c)]
            follow = blocks[i + 1] if i + 1 < len(blocks) else None
            sample = follow is not None and follow.lang in ("json", "text") and len(demo) == 1
            for command in demo:
                out.append(Command(name, block.line, command))
            if sample and follow is not None and len(commands) == 1:
                out[-1].expected = "\n".join(follow.lines)
                out[-1].lang = follow.lang
        elif block.lang == "text" and block.lines and block.lines[0].startswith("$ curl "):
            command = block.lines[0][2:]
            if is_demo_curl(command):
                out.append(Command(name, block.line, command, "\n".join(block.lines[1:]), "http"))
    return out


def for_demo(command: str, ports: dict[str, int]) -> str:
    return command.replace("127.0.0.1:8080", f"127.0.0.1:{ports['proxy']}").replace(
        "127.0.0.1:8081", f"127.0.0.1:{ports['admin']}"
    )


def normalise(text: str, ports: dict[str, int]) -> str:
    for role, real in ports.items():
        text = text.replace(f"127.0.0.1:{real}", f"127.0.0.1:{DEMO_PORTS[role]}")
    text = _TIMESTAMP.sub("<timestamp>", text)
    return _REQUEST_ID.sub("<request-id>", text)


def json_documents(text: str) -> list[Any]:
    """One JSON document, or one per non-blank line (NDJSON)."""
    try:
        return [orjson.loads(text)]
    except orjson.JSONDecodeError:
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def json_mismatch(expected: Any, actual: Any, where: str = "$") -> str | None:
    """Where ``actual`` differs from ``expected`` (with its wildcards), or None."""
    if expected == WILDCARD:
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where}: expected an object, got {actual!r}"
        keys = set(expected) - {WILDCARD}
        if WILDCARD not in expected and set(actual) != keys:
            return f"{where}: keys {sorted(actual)} instead of {sorted(keys)}"
        for key in keys:
            if key not in actual:
                return f"{where}: no key {key!r}"
            problem = json_mismatch(expected[key], actual[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{where}: expected a list, got {actual!r}"
        open_ended = bool(expected) and expected[-1] == WILDCARD
        items = expected[:-1] if open_ended else expected
        if len(actual) < len(items) or (not open_ended and len(actual) != len(items)):
            return f"{where}: {len(actual)} elements instead of {len(items)}"
        for n, (e, a) in enumerate(zip(items, actual, strict=False)):
            problem = json_mismatch(e, a, f"{where}[{n}]")
            if problem:
                return problem
        return None
    if expected != actual or type(expected) is not type(actual):
        return f"{where}: {actual!r} instead of {expected!r}"
    return None


def text_mismatch(expected: str, actual: str) -> str | None:
    want = [line.rstrip() for line in expected.strip("\n").splitlines()]
    got = [line.rstrip() for line in actual.strip("\n").splitlines()]
    if len(want) != len(got):
        return f"{len(got)} lines instead of {len(want)}:\n{actual}"
    for w, g in zip(want, got, strict=True):
        pattern = ".*?".join(re.escape(part) for part in re.split(r"\.\.\.|…", w))
        if not re.fullmatch(pattern, g):
            return f"{g!r} does not match {w!r}"
    return None


def http_mismatch(expected: str, actual: str) -> str | None:
    """A transcript: the status line, the headers shown (a subset), then the body."""
    head, _, body = actual.replace("\r\n", "\n").partition("\n\n")
    status, *header_lines = head.splitlines()
    headers = {k.lower(): v for k, _, v in (h.partition(": ") for h in header_lines)}
    want = expected.strip("\n").splitlines()
    if want[0] != status:
        return f"status line {status!r} instead of {want[0]!r}"
    rest = want[1:]
    while rest and re.match(r"[A-Za-z-]+: ", rest[0]):
        name, _, value = rest.pop(0).partition(": ")
        if headers.get(name.lower()) != value:
            return f"header {name}: {headers.get(name.lower())!r} instead of {value!r}"
    want_body = "\n".join(rest).strip()
    if not want_body:
        return None
    return output_mismatch("json", want_body, body)


def output_mismatch(lang: str, expected: str, actual: str) -> str | None:
    if lang == "http":
        return http_mismatch(expected, actual)
    if lang == "json":
        try:
            want, got = json_documents(expected), json_documents(actual)
        except orjson.JSONDecodeError as exc:
            return f"not JSON ({exc}):\n{actual}"
        return json_mismatch(want, got)
    return text_mismatch(expected, actual)


def command_words(command: str) -> list[str]:
    """A documented command line as argv (env assignments before it dropped)."""
    words = shlex.split(command, comments=True)
    # A redirection or a pipe ends the command's own arguments.
    for i, word in enumerate(words):
        if word in (">", ">>", "<", "|") or word.startswith((">", "2>")):
            del words[i:]
            break
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words.pop(0)
    return words


@dataclass
class Transcript:
    """A ```text block ``$ grpc-bridge ...`` and what it prints (stderr, then stdout)."""

    page: str
    line: int
    command: str
    expected: str
    files: dict[str, str]  # the ```yaml blocks before it that start with "# NAME"


def cli_transcripts(page: Path) -> list[Transcript]:
    files: dict[str, str] = {}
    out = []
    for block in fenced_blocks(page.read_text()):
        if block is None or not block.lines:
            continue
        first = block.lines[0]
        named = re.fullmatch(r"# ([\w.-]+\.ya?ml)", first.strip())
        if block.lang == "yaml" and named:
            files[named[1]] = "\n".join(block.lines[1:]) + "\n"
        elif block.lang == "text" and first.startswith("$ ") and "grpc-bridge " in first:
            words = command_words(first[2:])
            # Commands that end by themselves (serve and demo run until stopped).
            if words[:1] == ["grpc-bridge"] and words[1:2] != ["serve"] and words[1:2] != ["demo"]:
                expected = "\n".join(block.lines[1:])
                name = str(page.relative_to(ROOT))
                out.append(Transcript(name, block.line, first[2:], expected, dict(files)))
    return out


def transcript_env(command: str) -> dict[str, str]:
    """The ``NAME=value`` assignments in front of a documented command."""
    env = {}
    for word in shlex.split(command):
        name, eq, value = word.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            break
        env[name] = value
    return env


def buf_examples(page: Path) -> list[Command]:
    """The page's ``buf curl`` lines against the demo, each with the JSON (or, for a
    listing, the text) shown after it.

    (tests/test_docs.py runs curl lines only; buf needs its binary from .venv/tools.)
    """
    name = str(page.relative_to(ROOT))
    blocks = fenced_blocks(page.read_text())
    out: list[Command] = []
    for i, block in enumerate(blocks):
        follow = blocks[i + 1] if i + 1 < len(blocks) else None
        if block is None or block.lang not in ("sh", "bash") or follow is None:
            continue
        commands = shell_commands("```sh\n" + "\n".join(block.lines) + "\n```")
        if (
            len(commands) == 1
            and commands[0].startswith("buf curl ")
            and _DEMO_URL.search(commands[0])
            and follow.lang in ("json", "text")
        ):
            text = "\n".join(follow.lines)
            out.append(Command(name, block.line, commands[0], text, follow.lang))
    return out
