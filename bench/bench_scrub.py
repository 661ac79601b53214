"""The scrub's cost: the CPU of an ``lstat`` sweep of the 60,000-file tree, and of an
idle daemon with and without it.

- In-process: ``freshd index`` builds the index; ``freshd.watch.scrub.Scrub`` then sweeps it
  with a scripted clock, slice by slice as the engine's thread runs it (one step a
  second), and ``time.process_time`` takes the CPU of each whole sweep: per sweep, per
  file, and as a share of one core at each period (two sweeps a period, each within
  half of it, so that every file is compared at least once in any period; a sweep
  costs the same whatever the period, only its slices are smaller). The peer is the
  floor of any stat sweep: an ``os.lstat`` of each recorded path, nothing else.
- Daemon: ``freshd serve`` idles on the tree with the scrub at a period and with it off
  (``FRESHD_SCRUB_SECONDS``); the daemon's CPU (utime + stime of all its threads, from
  ``/proc``) is read over one period (two sweeps), from when the first sweep starts
  (half a period after ``ready``).

Reports, never assertions. Usage::

    python bench/bench_scrub.py [--quick] [--runs N] [--daemon-period S] [--no-daemon] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import gentree
from bench_index import WORK, Params, ensure_tree, freshd_index, log, wait_out_racy_window
from freshd.config import SCRUB_SECONDS
from freshd.index.writer import Index
from freshd.watch.scrub import Scrub
from harness import Freshd

PERIODS = (10.0, 30.0, 60.0, 120.0, 300.0)


def sweep_cpu(index: Index, packages: list[str], period: float) -> tuple[float, float, int, int]:
    """One whole sweep at ``period``, stepped as the engine steps it: (CPU s, wall s,
    files compared, steps)."""
    scrub = Scrub(index, period)
    scrub.step(0.0, packages)  # the first call only schedules the first sweep
    steps = 0
    cpu, wall = time.process_time(), time.perf_counter()
    while scrub.sweeps == 0:
        due = scrub.due()
        assert due is not None
        found = scrub.step(due, packages)
        steps += 1
        if found:
            raise RuntimeError(f"the tree changed under the benchmark: {found[:3]}")
    return time.process_time() - cpu, time.perf_counter() - wall, scrub.checked, steps


def lstat_floor(index: Index, packages: list[str]) -> float:
    """CPU s of an ``os.lstat`` of every recorded path, the records read beforehand."""
    paths = [
        os.path.join(p, rel) for p in packages for rel in index.file_records(p)
    ]  # not timed: the floor is the system calls
    cpu = time.process_time()
    for path in paths:
        os.lstat(path)
    return time.process_time() - cpu


def in_process(db: str, runs: int) -> dict[str, Any]:
    """The sweep's CPU, median of ``runs``."""
    with Index(db) as index:
        packages = [r.path for r in index.packages()]
        files = sum(r.files for r in index.packages())
        sweep_cpu(index, packages, 60.0)  # warm: the inode cache and LMDB's pages
        rows = {}
        for period in PERIODS:
            samples = [sweep_cpu(index, packages, period) for _ in range(runs)]
            cpu = statistics.median(s[0] for s in samples)
            rows[str(period)] = {
                "period_s": period,
                "cpu_s": cpu,
                "wall_s": statistics.median(s[1] for s in samples),
                "steps": samples[0][3],
                "checked": samples[0][2],
                "core_share": 2 * cpu / period,
            }
        floor = statistics.median(lstat_floor(index, packages) for _ in range(runs))
    return {"packages": len(packages), "files": files, "periods": rows, "lstat_floor_s": floor}


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_idle(root: str, db: str, period: float, window: float) -> dict[str, Any]:
    """The daemon's CPU over ``window`` s, beginning when its first sweep starts, half a
    ``period`` after ``ready`` (at ``period`` 0: half a ``window``)."""
    home = tempfile.mkdtemp(prefix="fdscrub")
    daemon = Freshd(root, db, os.path.join(home, "s.sock"), os.path.join(home, "log"))
    os.environ["FRESHD_SCRUB_SECONDS"] = str(period)
    try:
        daemon.start()
        daemon.wait_ready()
        first = (period or window) / 2
        time.sleep(first + 0.5)
        before, started = _cpu_s(daemon.pid), time.perf_counter()
        time.sleep(window)
        used, elapsed = _cpu_s(daemon.pid) - before, time.perf_counter() - started
    finally:
        del os.environ["FRESHD_SCRUB_SECONDS"]
        daemon.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {"period_s": period, "window_s": elapsed, "cpu_s": used, "core_share": used / elapsed}


def render(report: dict[str, Any]) -> str:
    sweep = report["sweep"]
    lines = [
        f"scrub of {sweep['files']} files in {sweep['packages']} packages "
        f"(median of {report['runs']}; lstat floor {sweep['lstat_floor_s']:.3f} s CPU)",
        "",
        "| period | CPU per sweep | µs per file | steps a sweep | share of a core |",
        "|---|---|---|---|---|",
    ]
    for row in sweep["periods"].values():
        lines.append(
            f"| {row['period_s']:.0f} s | {row['cpu_s']:.3f} s | "
            f"{row['cpu_s'] / max(1, row['checked']) * 1e6:.2f} | {row['steps']} | "
            f"{row['core_share'] * 100:.2f} % |"
        )
    for row in report["daemon"]:
        lines.append(
            f"idle daemon, scrub period {row['period_s']:g} s: {row['cpu_s']:.2f} s CPU over "
            f"{row['window_s']:.1f} s = {row['core_share'] * 100:.2f} % of a core"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 packages, 6,000 files")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--daemon-period", type=float, default=SCRUB_SECONDS, metavar="S")
    parser.add_argument("--no-daemon", action="store_true", help="the in-process part only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    packages = 30 if args.quick else gentree.DEFAULT_PACKAGES
    params = Params(packages, gentree.DEFAULT_FILES_PER_PACKAGE, gentree.DEFAULT_MEAN_SIZE, 1)
    root = ensure_tree(params)
    wait_out_racy_window(root)
    os.makedirs(WORK, exist_ok=True)
    db = tempfile.mkdtemp(prefix="scrub-db-", dir=WORK)
    try:
        log(f"indexing {root}")
        freshd_index(root, db)
        log("sweeping in-process")
        report: dict[str, Any] = {"runs": args.runs, "sweep": in_process(db, args.runs)}
        report["daemon"] = []
        if not args.no_daemon:
            for period in (args.daemon_period, 0.0):
                log(f"idle daemon, scrub period {period:g} s")
                window = args.daemon_period
                report["daemon"].append(daemon_idle(root, db, period, window))
    finally:
        shutil.rmtree(db, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
