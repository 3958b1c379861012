"""Summarise a py-spy ``--format raw`` profile: top frames by self and by inclusive time.

py-spy record -p PID -d 10 -r 200 -f raw -o prof.txt
python bench/profile_summary.py prof.txt [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import re

_LOCATION = re.compile(r"\s*\((?:.*/)?(?:site-packages/)?([^()]*)\)$")


def _frame(raw: str) -> str:
    # "handle (grpc_bridge/protocol/json_unary.py:52)" -> "handle (protocol/json_unary.py:52)",
    # which keeps it short.
    return _LOCATION.sub(lambda m: f" ({m.group(1)})", raw.strip())


def summarise(path: str, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = [_frame(x) for x in stack.split(";")]
            total += count
            own[frames[-1]] += count
            for name in set(f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in frames):
                inclusive[name] += count
    lines = [f"samples: {total}", "", "self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive time (function, all lines):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
