"""Hard links at scale: the daemon's cold start on a tree whose files are all hard links
to a cache outside the watched root (a uv or pnpm cache copied in with ``cp -al``),
beside the same tree without links (issue 21).

Two trees from ``gentree.py`` with the same seed and shape (cached under
``bench/.work/``), one ``--hardlinks``. For each, interleaved, ``--runs`` cold starts of
``freshd serve`` on ``packages/`` (a new index each time) to ``ready``; then, on the last
daemon of each, the packages rescanned over a window of ``--window`` seconds after
``ready`` (``freshd_rescans_total``: the linked packages used to be rehashed every
``--rescan-seconds``) and the WARNING lines of its log.

Goal: cold start with links / without ≤ 2.0; no rescans while nothing changes; one
warning line, not one per package.

Usage::

    python bench/bench_links.py [--packages 1800] [--files-per-package 20] [--runs 3] [--json]
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
from bench_index import Params, ensure_tree, log, warm_page_cache
from harness import Api, Freshd

GOAL_RATIO = 2.0
Json = dict[str, Any]


def cold_start(root: str, work: str, label: str, rescan_s: float) -> tuple[float, Freshd]:
    """One cold start of the daemon on ``root/packages``: seconds to ``ready``, and the
    daemon, still running."""
    db = os.path.join(work, "db")
    shutil.rmtree(db, ignore_errors=True)
    log_path = os.path.join(work, f"freshd-{label}.log")
    daemon = Freshd(
        os.path.join(root, "packages"),
        db,
        os.path.join(work, "freshd.sock"),
        log_path,
        ["--rescan-seconds", str(rescan_s)],
    )
    started = daemon.start()
    try:
        ready = daemon.wait_ready()
    except BaseException:
        daemon.stop()
        raise
    return ready - started, daemon


def settle(daemon: Freshd, window: float) -> Json:
    """Packages rescanned and files hashed during ``window`` seconds of a daemon left
    alone after ``ready``, and its log's warnings."""
    api = Api(daemon.socket_path)
    try:
        before = api.metrics()
        time.sleep(window)  # a measurement window, not a wait for anything
        after = api.metrics()
    finally:
        api.close()
    with open(daemon.log_path, encoding="utf-8") as fh:
        warnings = [line.rstrip("\n") for line in fh if "WARNING" in line]
    names = ("freshd_rescans_total", "freshd_rehashed_files_total")
    out: Json = {n.removeprefix("freshd_"): after.get(n, 0) - before.get(n, 0) for n in names}
    out["linked_out_packages"] = after.get("freshd_linked_out_packages")
    out["warnings"] = len(warnings)
    out["first_warning"] = warnings[0] if warnings else None
    return out


def measure(args: argparse.Namespace) -> Json:
    params = Params(args.packages, args.files_per_package, args.mean_size, args.seed)
    trees = {"plain": ensure_tree(params, False), "hardlinks": ensure_tree(params, True)}
    for root in trees.values():
        warm_page_cache(os.path.join(root, "packages"))
    runs: dict[str, list[float]] = {k: [] for k in trees}
    after: Json = {}
    with tempfile.TemporaryDirectory(prefix="fdl") as work:  # short: AF_UNIX path limit
        os.chmod(work, 0o700)
        for run in range(args.runs):
            for label, root in trees.items():  # interleaved: load drifts hit both alike
                seconds, daemon = cold_start(root, work, label, args.rescan_seconds)
                try:
                    runs[label].append(seconds)
                    log(f"  {label} cold start {run + 1}: ready in {seconds:.3f} s")
                    if run == args.runs - 1:
                        after[label] = settle(daemon, args.window)
                finally:
                    daemon.stop()
    medians = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "tree": {
            "packages": args.packages,
            "files_per_package": args.files_per_package,
            "mean_size": args.mean_size,
        },
        "cold_start_s": runs,
        "median_s": medians,
        "ratio": medians["hardlinks"] / medians["plain"],
        "goal_ratio": GOAL_RATIO,
        "after_ready": after,
        "window_s": args.window,
        "rescan_seconds": args.rescan_seconds,
    }


def render(report: Json) -> str:
    tree = report["tree"]
    lines = [
        f"freshd serve cold start, {tree['packages']} packages x {tree['files_per_package']} "
        f"files (median of {len(report['cold_start_s']['plain'])}, interleaved)",
        f"{'tree':<34}{'ready':>10}{'rescans':>10}{'hashed':>10}{'warnings':>10}",
    ]
    for label, text in (("plain", "no links"), ("hardlinks", "every file linked from cache/")):
        after = report["after_ready"].get(label, {})
        lines.append(
            f"{text:<34}{report['median_s'][label]:>9.3f}s{after.get('rescans_total', 0):>10.0f}"
            f"{after.get('rehashed_files_total', 0):>10.0f}{after.get('warnings', 0):>10}"
        )
    lines.append(
        f"ratio linked / plain: {report['ratio']:.2f} (goal <= {report['goal_ratio']:.1f}); "
        f"rescans and hashed files over {report['window_s']:.0f} s after ready, "
        f"--rescan-seconds {report['rescan_seconds']:g}"
    )
    warning = report["after_ready"].get("hardlinks", {}).get("first_warning")
    if warning:
        lines.append(f"its warning: {warning}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=1800)
    parser.add_argument("--files-per-package", type=int, default=20)
    parser.add_argument("--mean-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=gentree.DEFAULT_SEED)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=float, default=6.0, help="seconds watched after ready")
    parser.add_argument("--rescan-seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="200 packages, 1 run, 3 s window")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.packages, args.runs, args.window = 200, 1, 3.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = measure(args)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
