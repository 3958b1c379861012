"""The long-lived JSON-lines helper process (tests/helpers/json_lines_process.py, the
connect-node driver's) leaves nothing open when it is closed.

Its stdout and stderr pipes were left for the garbage collector: each was a
ResourceWarning when the process object went, which at the end of any pytest
run that had used connect-node made pytest exit 1 after every test passed.
"""

from __future__ import annotations

import gc
import os
import sys
import threading

from tests.helpers.json_lines_process import JsonLinesProcess

#: Answers each request line with its id and what it was sent.
ECHO = (
    "import json, sys\n"
    "for line in sys.stdin:\n"
    "    r = json.loads(line)\n"
    "    print(json.dumps({'id': r['id'], 'echo': r['x']}), flush=True)\n"
)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_a_closed_helper_process_has_no_pipe_left_open() -> None:
    before = open_fds()
    threads = set(threading.enumerate())
    helper = JsonLinesProcess([sys.executable, "-c", ECHO], dict(os.environ), "echo")
    assert (await helper.request({"x": 7}, timeout=20))["echo"] == 7
    assert open_fds() - before, "the helper's pipes were not seen open"
    helper.close()
    # Nothing was left for the collector to close (it would warn doing so).
    assert open_fds() - before == set()
    assert set(threading.enumerate()) - threads == set()
    gc.collect()
