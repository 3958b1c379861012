"""bench/'s modules for tests: they import each other by bare name, as ``bench/run.py`` runs them.

bench/ is appended to ``sys.path`` (not put first), so a bench module never
shadows an installed one (bench/profile.py against the standard library's).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    module = importlib.import_module(name)
    assert Path(module.__file__ or "").parent == BENCH, f"{name} is not bench/{name}.py"
    return module
