"""Imports in grpc_bridge/ point one way (docs/development.md's layout, the architecture guide).

Every module's imports are read with ``ast`` (function-level ones included), so
a lazy import cannot hide a dependency. Imports under ``if TYPE_CHECKING:``
count for the layering but not for cycles: they never run.

The layers, lowest first: the leaves (settings, errors, status) ← discovery,
codec, upstream ← routing ← bridge ← http ← the entry points that wire things
together (app, cli, workers). A rule today's code breaks is listed in
``KNOWN_EXCEPTIONS`` with the issue that removes it, never dropped.

Also read here: no module is over ``MAX_MODULE_LINES`` (one concern each), and
the HTTP/2 client's state machine and the gRPC call it feeds write only their
own fields.
"""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.process import bridge_env
from tests.helpers.servers import TEST_SERVICE, RunningServer

PACKAGE = Path(__file__).resolve().parent.parent / "grpc_bridge"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a grpc_bridge module, or a third-party top-level name
    type_only: bool
    line: int


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _own(name: str) -> str | None:
    """The grpc_bridge module ``name`` lives in (``a.b.C`` → ``a.b``), None if not ours."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                nodes.update(id(n) for n in ast.walk(child))
    return nodes


def _imports_of(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    type_only = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            target = _own(name) if name.split(".")[0] == "grpc_bridge" else name.split(".")[0]
            if target is not None and target != module:
                found.append(Import(module, target, id(node) in type_only, node.lineno))
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports_of(module, path)]
OURS = [imp for imp in IMPORTS if imp.imported in MODULES]


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


#: Import nothing of grpc_bridge but each other (and the package root's __version__).
LEAVES = (
    "grpc_bridge",
    "grpc_bridge.settings",
    "grpc_bridge.settings.base",
    "grpc_bridge.settings.upstream",
    "grpc_bridge.settings.http",
    "grpc_bridge.settings.observability",
    "grpc_bridge.settings.hints",
    "grpc_bridge.settings.loading",
    "grpc_bridge.errors",
    "grpc_bridge.status",
)
#: The composition root and the entry points: the only importers of each other.
ENTRY_POINTS = (
    "grpc_bridge.__main__",
    "grpc_bridge.app",
    "grpc_bridge.cli",
    "grpc_bridge.workers",
    "grpc_bridge.openapi_command",  # `grpc-bridge openapi`, started by cli.py
    "grpc_bridge.demo.runner",  # `grpc-bridge demo`: a demo upstream and a bridge in one process
)
#: What the edges (edge/, admin/) and what they call may not import: only the entry points wire.
ABOVE_HTTP = (*ENTRY_POINTS, "grpc_bridge.tracing", "grpc_bridge.client", "grpc_bridge.demo")


#: The HTTP/2 client, split as h2 and grpclib split theirs: a state machine fed bytes
#: (streams' HTTP/2 state included), the asyncio protocol that owns the socket, and
#: the gRPC call each stream's events go to.
H2_STATE_MACHINE = ("grpc_bridge.upstream.h2.outbound", "grpc_bridge.upstream.h2.state")
H2_CONNECTION = "grpc_bridge.upstream.h2.connection"
H2_CALL = ("grpc_bridge.upstream.h2.response", "grpc_bridge.upstream.h2.stream")


@dataclass(frozen=True)
class Rule:
    name: str
    applies_to: tuple[str, ...]
    forbidden: tuple[str, ...]  # grpc_bridge module prefixes, or third-party top-level names


#: The two listeners' packages: the proxy edge (both HTTP/1.1 edges) and the admin port.
EDGES = ("grpc_bridge.edge", "grpc_bridge.admin")
#: What a call goes through whichever protocol carries it, and the protocols.
CALL_PATH = ("grpc_bridge.protocol", "grpc_bridge.pipeline")
#: What serves a routed call: given pipeline/env.py's CallEnv, never the Bridge.
CALL_HANDLERS = (
    "grpc_bridge.protocol",
    "grpc_bridge.pipeline.call",
    "grpc_bridge.pipeline.relay",
    "grpc_bridge.pipeline.sink",
)

RULES = [
    Rule("codec/ is pure: no aiohttp, no grpc", ("grpc_bridge.codec",), ("aiohttp", "grpc")),
    Rule(
        "codec/ sits on the leaves only",
        ("grpc_bridge.codec",),
        (
            "grpc_bridge.upstream",
            "grpc_bridge.routing",
            *EDGES,
            *CALL_PATH,
            "grpc_bridge.bridge",
            *ABOVE_HTTP,
        ),
    ),
    Rule("routing/ is pure: no aiohttp", ("grpc_bridge.routing",), ("aiohttp",)),
    Rule(
        "routing/ knows no edge, no protocol and no running state",
        ("grpc_bridge.routing",),
        (*EDGES, *CALL_PATH, "grpc_bridge.bridge", *ABOVE_HTTP),
    ),
    Rule("upstream/ imports no aiohttp", ("grpc_bridge.upstream",), ("aiohttp",)),
    Rule(
        "upstream/ is below routing, the protocols and the edges",
        ("grpc_bridge.upstream",),
        (
            *EDGES,
            *CALL_PATH,
            "grpc_bridge.routing",
            "grpc_bridge.codec",
            "grpc_bridge.bridge",
            *ABOVE_HTTP,
        ),
    ),
    Rule(
        "the upstream API is owned by no transport",
        ("grpc_bridge.upstream.api",),
        (
            "grpc_bridge.upstream.invoker",
            "grpc_bridge.upstream.stream_call",
            "grpc_bridge.upstream.pool",
            "grpc_bridge.upstream.slot",
            "grpc_bridge.upstream.dial",
            "grpc_bridge.upstream.retry",
            "grpc_bridge.upstream.grpc_request",
            "grpc_bridge.upstream.h2",
            "grpc_bridge.upstream.state",
            "grpc",
        ),
    ),
    Rule(
        "reflection and health checks call through the upstream API, not a transport",
        ("grpc_bridge.upstream.reflection", "grpc_bridge.upstream.health"),
        (
            "grpc_bridge.upstream.invoker",
            "grpc_bridge.upstream.stream_call",
            "grpc_bridge.upstream.pool",
            "grpc_bridge.upstream.h2",
            "grpc",
        ),
    ),
    Rule(
        "discovery/ is below routing, the protocols and the edges",
        ("grpc_bridge.discovery",),
        (
            *EDGES,
            *CALL_PATH,
            "grpc_bridge.routing",
            "grpc_bridge.upstream",
            "grpc_bridge.bridge",
            *ABOVE_HTTP,
        ),
    ),
    Rule(
        "the running state (bridge.py) knows no edge and no protocol",
        ("grpc_bridge.bridge",),
        ("aiohttp", *EDGES, *CALL_PATH, *ABOVE_HTTP),
    ),
    Rule(
        "protocol/ is below the edges: it never imports what listens",
        ("grpc_bridge.protocol",),
        (*EDGES, *ABOVE_HTTP),
    ),
    Rule(
        "a call's handlers read the running bridge only through pipeline/env.py's CallEnv",
        CALL_HANDLERS,
        ("grpc_bridge.bridge",),
    ),
    Rule(
        "pipeline/ (what every protocol's call goes through) knows no protocol and no edge",
        ("grpc_bridge.pipeline",),
        ("grpc_bridge.protocol", *EDGES, *ABOVE_HTTP),
    ),
    Rule(
        "the edges import everything below them, nothing that wires them",
        EDGES,
        ABOVE_HTTP,
    ),
    Rule(
        "the HTTP/2 state machine knows neither its I/O nor the gRPC call it feeds",
        H2_STATE_MACHINE,
        ("asyncio", H2_CONNECTION, *H2_CALL),
    ),
    Rule(
        "the gRPC call on an HTTP/2 stream knows neither the state machine nor the connection",
        H2_CALL,
        (H2_CONNECTION, *H2_STATE_MACHINE),
    ),
]

#: (importer, imported): rules today's code breaks, each with what removes it.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _forbidden(imp: Import, rule: Rule) -> bool:
    if not _in(imp.importer, *rule.applies_to):
        return False
    if imp.imported in MODULES:
        return _in(imp.imported, *rule.forbidden)
    return imp.imported in rule.forbidden


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_layer_rule(rule: Rule) -> None:
    broken = [
        f"{imp.importer} imports {imp.imported} (line {imp.line})"
        for imp in IMPORTS
        if _forbidden(imp, rule) and (imp.importer, imp.imported) not in KNOWN_EXCEPTIONS
    ]
    assert not broken, f"{rule.name}:\n" + "\n".join(broken)


def test_leaves_import_only_leaves() -> None:
    broken = [
        f"{imp.importer} imports {imp.imported} (line {imp.line})"
        for imp in OURS
        if imp.importer in LEAVES and imp.imported not in LEAVES
    ]
    assert not broken, "\n".join(broken)


def test_only_entry_points_import_entry_points() -> None:
    broken = [
        f"{imp.importer} imports {imp.imported} (line {imp.line})"
        for imp in OURS
        if _in(imp.imported, *ENTRY_POINTS)
        and imp.imported != "grpc_bridge.demo.runner"
        and not _in(imp.importer, *ENTRY_POINTS)
    ]
    assert not broken, "\n".join(broken)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module in MODULES:
        edges[module]
    for imp in OURS:
        if not imp.type_only:
            edges[imp.importer].add(imp.imported)
    assert not _cycles(edges), f"import cycles: {_cycles(edges)}"


#: The upstream API and the native transport: the bridge's calls, reflection and health
#: checks need nothing of grpcio, and neither does the CLI client that calls through
#: them (the demo server and tests do).
GRPC_FREE = (
    "grpc_bridge.client",
    "grpc_bridge.upstream.api",
    "grpc_bridge.upstream.invoker",
    "grpc_bridge.upstream.pool",
    "grpc_bridge.upstream.stream_call",
    "grpc_bridge.upstream.slot",
    "grpc_bridge.upstream.dial",
    "grpc_bridge.upstream.retry",
    "grpc_bridge.upstream.grpc_request",
    "grpc_bridge.upstream.reflection",
    "grpc_bridge.upstream.health",
    "grpc_bridge.upstream.h2",
)


def _runtime_closure(start: str) -> dict[str, Import]:
    """Every module ``start`` loads when imported, with the import that first brings it in."""
    by_importer: dict[str, list[Import]] = defaultdict(list)
    for imp in IMPORTS:
        if not imp.type_only:
            by_importer[imp.importer].append(imp)
    seen: dict[str, Import] = {}
    work = [start]
    while work:
        for imp in by_importer[work.pop()]:
            if imp.imported not in seen:
                seen[imp.imported] = imp
                if imp.imported in MODULES:
                    work.append(imp.imported)
    return seen


@pytest.mark.parametrize(
    "module", [m for m in MODULES if _in(m, *GRPC_FREE)], ids=lambda m: m.rpartition(".")[2]
)
def test_upstream_api_and_native_transport_never_load_grpc(module: str) -> None:
    loaded = _runtime_closure(module)
    grpc = loaded.get("grpc")
    assert grpc is None, f"{module} loads grpc: {grpc.importer} imports it (line {grpc.line})"


def test_the_grpc_check_can_fail() -> None:
    """The demo's service module does load grpc: the closure above would see it."""
    assert "grpc" in _runtime_closure("grpc_bridge.demo.service")


def test_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a two-module cycle and a three-module one are found."""
    edges: dict[str, set[str]] = defaultdict(set)
    edges.update({"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": set()})
    assert sorted(_cycles(edges)) == [["a", "b"], ["c", "d", "e"]]


def test_function_level_and_type_checking_imports_are_read() -> None:
    """The reader sees what lazy imports and TYPE_CHECKING blocks bring in."""
    lazy = {(i.importer, i.imported) for i in OURS if not i.type_only}
    assert ("grpc_bridge.cli", "grpc_bridge.app") in lazy  # imported inside main()
    type_only = {(i.importer, i.imported) for i in OURS if i.type_only}
    assert ("grpc_bridge.codec.json_codec", "grpc_bridge.settings") in type_only


def test_call_handlers_never_take_the_bridge_off_the_app() -> None:
    """``request.app[BRIDGE]`` would reach past the CallEnv: no handler imports the key."""
    importers = {
        module: node.lineno
        for module, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and any(a.name == "BRIDGE" for a in node.names)
    }
    assert "grpc_bridge.edge.proxy" in importers  # the edge does (it makes the CallEnv)
    broken = [
        f"{m} imports BRIDGE (line {line})"
        for m, line in importers.items()
        if _in(m, *CALL_HANDLERS)
    ]
    assert not broken, "\n".join(broken)


def test_aiohttp_private_names_are_imported_by_the_compat_module_only() -> None:
    """aiohttp's internals go through edge/aiohttp_compat.py (tests/test_aiohttp_compat.py)."""
    broken = []
    for module, path in MODULES.items():
        if module == "grpc_bridge.edge.aiohttp_compat":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiohttp"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(p.startswith("_") for p in (node.module or "").split(".")):
                    broken.append(f"{module} line {node.lineno}: {ast.unparse(node)}")
    assert not broken, "\n".join(broken)


# -- module size: one concern per module --------------------------------------------------

#: Lines past which a module must be split (the architecture guide's ~400, with slack).
MAX_MODULE_LINES = 450
#: Modules over the limit today, each with what splits it. An entry that no longer
#: applies fails too, so the list only shrinks.
OVERSIZED: dict[str, str] = {}


def _oversized(paths: Iterable[Path], limit: int) -> dict[str, int]:
    """Each module over ``limit`` lines, by path from the repository root; generated
    protobuf code (``*_pb2*.py``) aside."""
    found = {}
    for path in paths:
        if "_pb2" in path.name:
            continue
        lines = len(path.read_text().splitlines())
        if lines > limit:
            found[path.relative_to(PACKAGE.parent).as_posix()] = lines
    return found


def test_no_module_is_over_the_size_limit() -> None:
    over = _oversized(MODULES.values(), MAX_MODULE_LINES)
    broken = [f"{path}: {lines} lines" for path, lines in over.items() if path not in OVERSIZED]
    assert not broken, f"over {MAX_MODULE_LINES} lines, split by concern:\n" + "\n".join(broken)
    stale = [path for path in OVERSIZED if path not in over]
    assert not stale, f"no longer over {MAX_MODULE_LINES} lines, drop from OVERSIZED: {stale}"


def test_the_size_check_counts_lines_and_leaves_generated_code_aside() -> None:
    generated = [path for path in MODULES.values() if "_pb2" in path.name]
    assert generated  # there is generated code to leave aside
    expected = {
        path.relative_to(PACKAGE.parent).as_posix(): len(path.read_text().splitlines())
        for path in MODULES.values()
        if path not in generated
    }
    assert _oversized(MODULES.values(), -1) == expected


# -- the HTTP/2 client: the state machine and the gRPC call write only their own fields --

H2 = PACKAGE / "upstream" / "h2"


def _attribute_writes(source: str) -> list[tuple[str, str, int]]:
    """(object, attribute, line) of each ``x.a = ...``, ``x.a += ...`` and ``x.a: T = ...``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            targets = [t for target in node.targets for t in ast.walk(target)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.ctx, ast.Store):
                found.append((ast.unparse(target.value), target.attr, node.lineno))
    return found


def _h2_stream_fields() -> frozenset[str]:
    """The fields of a stream's HTTP/2 state that the gRPC call has none of."""
    from grpc_bridge.upstream.h2.outbound import H2Stream
    from grpc_bridge.upstream.h2.response import Response

    return frozenset(H2Stream.__slots__) - frozenset(Response.__slots__)


def _foreign_writes(source: str, *, state_machine: bool) -> list[str]:
    """Writes to another object's fields: the gRPC call writes only its own (``self``);
    the state machine and the connection their own (their flood guard's too) and a
    stream's HTTP/2 state, nothing else."""
    own = {"self", "self.guard"} if state_machine else {"self"}
    allowed = _h2_stream_fields() if state_machine else frozenset()
    return [
        f"line {line}: {obj}.{attr}"
        for obj, attr, line in _attribute_writes(source)
        if obj not in own and attr not in allowed
    ]


@pytest.mark.parametrize("name", ["outbound.py", "state.py", "connection.py"])
def test_the_h2_state_machine_writes_no_field_of_the_grpc_call(name: str) -> None:
    assert not _foreign_writes((H2 / name).read_text(), state_machine=True)


@pytest.mark.parametrize("name", ["response.py", "stream.py"])
def test_the_grpc_call_writes_no_field_of_the_h2_state_machine(name: str) -> None:
    assert not _foreign_writes((H2 / name).read_text(), state_machine=False)


def test_the_field_write_check_can_fail() -> None:
    source = (
        "def f(self, stream, call):\n"
        "    stream.send_window -= 1\n"
        "    stream.call.status = None\n"
        "    call.headers, self.x = (), 1\n"
        "    self.connection.max_concurrent += 1\n"
        "    self.guard.queued_acks = 0\n"
    )
    assert _foreign_writes(source, state_machine=True) == [
        "line 3: stream.call.status",
        "line 4: call.headers",
        "line 5: self.connection.max_concurrent",
    ]
    assert len(_foreign_writes(source, state_machine=False)) == 5  # all but self.x


# -- the tests themselves: organised by behaviour, helpers in a package of their own ----

TESTS = Path(__file__).resolve().parent
HELPERS = TESTS / "helpers"
#: Words that name when or why a test was written, not what it proves.
HISTORY_WORDS = ("review", "session", "fixes")
#: Python under tests/ that is neither a test module nor a helper: the package marker,
#: the shared fixtures, and the protobuf code generated from tests/protos.
NOT_HELPERS = ("__init__.py", "conftest.py", "gen/")


def _test_modules_imported_by(path: Path, source: str | None = None) -> list[str]:
    """The test modules the module at ``path`` (read unless ``source`` is given) imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the module's own package
                parts = path.parent.relative_to(TESTS.parent).parts
                package = parts[: len(parts) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found += [f"{name} (line {node.lineno})" for name in names if _names_a_test_module(name)]
    return found


def _names_a_test_module(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[0] == "tests" and parts[1].startswith("test_")


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/helpers/, shared fixtures in tests/conftest.py."""
    broken = [
        f"{path.name} imports {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in _test_modules_imported_by(path)
    ]
    assert not broken, "\n".join(broken)


def _misplaced(paths: Iterable[Path]) -> list[str]:
    """Test modules outside tests/ itself, and other Python outside tests/helpers/."""
    found = []
    for path in paths:
        relative = path.relative_to(TESTS).as_posix()
        if relative in NOT_HELPERS or relative.startswith(NOT_HELPERS[-1]):
            continue
        if path.name.startswith("test_"):
            if path.parent != TESTS:
                found.append(f"{relative}: a test module belongs in tests/")
        elif path.parent != HELPERS:
            found.append(f"{relative}: a shared helper belongs in tests/helpers/")
    return found


def test_helpers_live_in_the_helpers_package_and_tests_beside_it() -> None:
    assert not _misplaced(TESTS.rglob("*.py")), "\n".join(_misplaced(TESTS.rglob("*.py")))
    assert (HELPERS / "__init__.py").exists()


def test_the_placement_check_can_fail() -> None:
    paths = [
        TESTS / "raw_http.py",
        TESTS / "helpers" / "test_raw_http.py",
        TESTS / "helpers" / "raw_http.py",
        TESTS / "test_unary.py",
        TESTS / "conftest.py",
        TESTS / "gen" / "bridgetest" / "v1" / "common_pb2.py",
    ]
    assert _misplaced(paths) == [
        "raw_http.py: a shared helper belongs in tests/helpers/",
        "helpers/test_raw_http.py: a test module belongs in tests/",
    ]


def test_test_modules_are_named_for_behaviour() -> None:
    named_for_history = [
        path.name
        for path in sorted(TESTS.glob("test_*.py"))
        if any(word in path.stem for word in HISTORY_WORDS)
    ]
    assert not named_for_history, named_for_history


def test_the_test_import_check_can_fail() -> None:
    """Each import form that reaches a test module is seen; helper modules are not."""
    assert _names_a_test_module("tests.test_fastpath")
    assert _names_a_test_module("tests.test_fastpath.ECHO")
    assert not _names_a_test_module("tests.helpers.raw_http")
    assert not _names_a_test_module("tests.helpers")
    assert not _names_a_test_module("tests")
    source = "from .. import test_unary\nfrom ..test_cors import ORIGIN\nfrom . import servers\n"
    assert _test_modules_imported_by(HELPERS / "relative.py", source) == [
        "tests.test_unary (line 1)",
        "tests.test_cors (line 2)",
        "tests.test_cors.ORIGIN (line 2)",
    ]


async def test_the_cli_loads_no_grpcio(upstream: RunningServer) -> None:
    """Reflection, a unary and a bidi call, all in one process: grpcio is never imported."""
    target = upstream.target
    probe = (
        "import sys\n"
        "from grpc_bridge.cli import main\n"
        f"codes = [main(['list', '--plaintext', {target!r}]),\n"
        f"    main(['call', '--plaintext', {target!r}, '{TEST_SERVICE}/Echo', '-d', '{{}}']),\n"
        f"    main(['call', '--plaintext', {target!r}, '{TEST_SERVICE}/Bidi', '-d', '{{}}'])]\n"
        "print(codes, 'grpc' in sys.modules, file=sys.stderr)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        probe,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=bridge_env(),
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert err.decode().strip().splitlines()[-1] == "[0, 0, 0] False", err.decode()


def test_serving_loads_no_grpcio() -> None:
    """The bridge speaks HTTP/2 itself (upstream/h2/): grpcio is the demo's and the CLI's."""
    probe = "import sys, grpc_bridge.app, grpc_bridge.cli; print('grpc' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False", "importing the bridge loaded grpcio"
