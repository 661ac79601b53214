"""Time, in-process, the hot paths that the stat identity and its racy rule run on.

- a warm rescan of packages (every record reused: ``FileRecord.reusable_for``),
- ``FileRecord.reusable_for`` alone, once a file,
- ``seals.take`` (the cold crawl takes one a package),
- the import of ``freshd check``'s fast path (``stamps`` and ``quick``), in a fresh
  process each time.

Each figure is the minimum of many repetitions (the least disturbed by other load), so
two versions can be compared in one run: put the other version's ``client`` and
``service`` directories first on ``PYTHONPATH``. Usage::

    python bench/bench_index.py --quick          # makes bench/.work/tree-v2-p30-...
    python bench/bench_hotpaths.py bench/.work/tree-v2-p30-f200-m10000-s1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from freshd.index import seals
from freshd_client.content.project import read_project
from freshd_client.content.scan import scan

IMPORT = """
import time; t = time.perf_counter()
import freshd_client.venvs.stamps, freshd_client.venvs.quick
print(time.perf_counter() - t)
"""


def best(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", help="a tree made by gentree (its packages/ directory)")
    parser.add_argument("--packages", type=int, default=10)
    args = parser.parse_args()
    top = os.path.join(args.tree, "packages")
    pkgs = sorted(os.path.join(top, p) for p in os.listdir(top))[: args.packages]
    previous = {p: {r.rel: r for r in scan(p).records} for p in pkgs}
    trees = {p: scan(p).tree for p in pkgs}
    stats = [(r, os.lstat(os.path.join(p, r.rel))) for p in pkgs for r in previous[p].values()]
    taken = []
    for p in pkgs:
        dirs: list[tuple[str, os.stat_result]] = []
        project = read_project(p)
        taken.append((scan(p, dirs=dirs, project=project), project, dirs))
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    figures = {
        f"warm rescan of {len(pkgs)} packages (ms)": 1e3
        * best(lambda: [scan(p, previous[p], previous_tree=trees[p]) for p in pkgs], 15),
        f"FileRecord.reusable_for x{len(stats)} (us)": 1e6
        * best(lambda: [r.reusable_for(st) for r, st in stats], 50),
        f"seals.take x{len(pkgs)} (ms)": 1e3
        * best(lambda: [seals.take(r, pr, d, time.time_ns()) for r, pr, d in taken], 30),
        "import stamps + quick, fresh process (ms)": 1e3
        * min(
            float(
                subprocess.run(
                    [sys.executable, "-c", IMPORT],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for _ in range(20)
        ),
    }
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
