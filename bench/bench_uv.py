"""Benchmark ``freshd run -- uv run`` against plain ``uv run`` (issues 6 and 20).

Generates the project of the installer tests (``tests/uv_project.py``: an app plus a
local library as a path dependency, hatchling, the real uv next to this interpreter)
twice: plainly, for the ``uv run`` rows, and with freshd's ``FRESHD_DIGEST_*`` cache
keys, synced through ``freshd run -- uv sync`` and stamped, for the freshd rows. Then
it times whole processes, median of ``--runs``:

- plain ``uv run`` when nothing was touched (uv's own freshness check passes);
- ``freshd run -- uv run`` when nothing was touched;
- ``freshd check`` alone, after a tar round trip (one-shot digests, no daemon);
- plain ``uv run`` after a tar round trip of the project into the same paths (same
  content, new inodes and ctimes): uv rebuilds and reinstalls app and lib;
- ``freshd run -- uv run`` after the same round trip: nothing is rebuilt.

The peers of a state are timed in turns (one run of each, then again), so that the
machine's load hits them alike. Each round trip is redone before each timed run and
is not timed. Whether each run
rebuilt is checked (lib's ``.dist-info``: its inode and its RECORD's mtime) and reported
beside the time.
The uv cache is private to the run and warm (hatchling is downloaded once, before
timing), so the rebuild row is the local build, not a download. Timings are a report,
never an assertion. Usage::

    python bench/bench_uv.py                # 7 runs each (~30 s)
    python bench/bench_uv.py --runs 3       # fewer
    python bench/bench_uv.py --json         # the figures as JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)

from uv_project import FRESHD, UV, Project, make_project

CODE = "import lib"
ROUND_TRIP_GOAL = 10.0  # plain / freshd run, after a content-preserving copy
UNTOUCHED_GOAL_MS = 20.0  # freshd run - plain, when nothing was touched


@dataclass(frozen=True, slots=True)
class Row:
    """One measurement: a command in a state, median and spread in milliseconds."""

    what: str
    state: str
    runs: int
    median_ms: float
    min_ms: float
    max_ms: float
    rebuilt: int  # runs after which lib's .dist-info was a new one


def timed(project: Project, argv: list[str | Path]) -> float:
    """Wall time (ms) of one ``argv`` in the app directory; it must succeed."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(a) for a in argv],
        cwd=project.app,
        env=project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}:\n{proc.stderr.decode()[-3000:]}")
    return elapsed


def installed(project: Project) -> tuple[int, int]:
    """Which install of lib is there: its ``.dist-info``'s inode and the mtime of the RECORD
    written with it (a reinstall may get the freed inode back: CI saw that once)."""
    dist_info = project.dist_info("lib")
    return dist_info.stat().st_ino, (dist_info / "RECORD").stat().st_mtime_ns


Series = tuple[Project, str, str, "list[str | Path]", bool]
"""(project, command, state, argv, whether each run follows a tar round trip)."""


def interleaved(specs: list[Series], runs: int) -> list[Row]:
    """``runs`` timed runs of each series, taken in turns (one of each, then again), so
    that a change in the machine's load hits the peers alike."""
    times: list[list[float]] = [[] for _ in specs]
    rebuilt = [0] * len(specs)
    for _ in range(runs):
        for i, (project, _what, _state, argv, round_trip) in enumerate(specs):
            if round_trip:
                project.tar_round_trip()
            before = installed(project)
            times[i].append(timed(project, argv))
            rebuilt[i] += installed(project) != before
    return [
        Row(what, state, runs, statistics.median(t), min(t), max(t), n)
        for (_p, what, state, _a, _r), t, n in zip(specs, times, rebuilt, strict=True)
    ]


def settled(project: Project, deadline_s: float = 30.0) -> None:
    """Wait until ``freshd check`` answers from its stat cache and its whole-venv verdict
    (``VENV/.freshd/verdict.txt``): "untouched" means files older than the racy window
    (2 s), the stamps included, as in a tree nobody is editing this second."""
    from freshd_client.venvs import quick

    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        proc = project.freshd("check", "--venv", project.venv, "--json")
        cached = all(p["by"] == "stat cache" for p in json.loads(proc.stdout)["packages"])
        if cached and quick.load(str(project.venv)) is not None:
            return
        time.sleep(0.25)
    raise SystemExit(f"freshd check never answered from its caches in {deadline_s:g} s")


def run(runs: int) -> tuple[list[Row], dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="fdbench-uv"))
    try:
        cache = work / "uv-cache"
        bare = make_project(work / "plain", cache, editable=False, keys=False)
        keyed = make_project(work / "keyed", cache, editable=False)
        for project in (bare, keyed):
            project.sync()
            # Bytecode as users have it: this sandbox sets PYTHONDONTWRITEBYTECODE, which
            # would recompile every module of every freshd process.
            project.env.pop("PYTHONDONTWRITEBYTECODE", None)
        keyed.stamp()
        plain: list[str | Path] = [UV, "run", "python", "-c", CODE]
        freshd_run: list[str | Path] = [FRESHD, "run", "--", *plain]
        check: list[str | Path] = [FRESHD, "check", "--venv", keyed.venv]
        for project, argv in ((bare, plain), (keyed, freshd_run), (keyed, check)):
            timed(project, argv)  # warm-up: page cache, bytecode
        settled(keyed)
        still, trip = "untouched", "after tar round trip"
        rows = interleaved(
            [
                (bare, "uv run", still, plain, False),
                (keyed, "freshd run -- uv run", still, freshd_run, False),
            ],
            runs,
        )
        rows += interleaved(
            [
                (keyed, "freshd check", trip, check, True),
                (bare, "uv run", trip, plain, True),
                (keyed, "freshd run -- uv run", trip, freshd_run, True),
            ],
            runs,
        )
        version = subprocess.run([UV, "--version"], capture_output=True, text=True, check=True)
        info = {
            "python": platform.python_version(),
            "uv": version.stdout.split()[1],
            "cpus": os.cpu_count(),
            "runs": runs,
        }
        return rows, info
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ratios(rows: list[Row]) -> dict[str, float]:
    """The issue's goals: the round-trip speed-up and the untouched overhead."""
    by = {(r.what, r.state): r.median_ms for r in rows}
    trip, still = "after tar round trip", "untouched"
    return {
        "round_trip_speedup": by["uv run", trip] / by["freshd run -- uv run", trip],
        "untouched_overhead_ms": by["freshd run -- uv run", still] - by["uv run", still],
    }


def print_table(rows: list[Row], info: dict[str, object]) -> None:
    print(f"freshd run vs uv run — uv {info['uv']}, Python {info['python']}, {info['cpus']} CPUs")
    header = ("command", "state", "median", "min", "max", "runs", "rebuilt")
    table = [header] + [
        (
            r.what,
            r.state,
            f"{r.median_ms:.1f} ms",
            f"{r.min_ms:.1f} ms",
            f"{r.max_ms:.1f} ms",
            str(r.runs),
            str(r.rebuilt),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    goals = ratios(rows)
    print()
    print(
        f"after a tar round trip: plain / freshd run = {goals['round_trip_speedup']:.1f}x "
        f"(goal ≥ {ROUND_TRIP_GOAL:.0f}x)"
    )
    print(
        f"untouched: freshd run - plain = {goals['untouched_overhead_ms']:+.1f} ms "
        f"(goal ≤ {UNTOUCHED_GOAL_MS:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per row (default 7)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows, info = run(max(1, args.runs))
    if args.json:
        report = {"info": info, "rows": [asdict(r) for r in rows], "goals": ratios(rows)}
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(rows, info)


if __name__ == "__main__":
    main()
