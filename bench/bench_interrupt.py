"""Ctrl-C during ``freshd index``: how long from SIGINT to the process gone (issue 21).

On the tree of ``bench_index.py`` (cached under ``bench/.work/``), ``--runs`` cold runs of
``freshd index`` into a new index each; once its first records are in the index, SIGINT
goes to the process alone, or to its whole process group as a terminal sends it. The
figure is the time from the signal to its exit (130 expected), beside the peer: the
same run left to finish (what a user waited for before, when Ctrl-C was ignored).

Usage::

    python bench/bench_interrupt.py [--quick] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench_index import FRESHD, Params, ensure_tree, log, warm_page_cache
from freshd_client.spec import schema as sc

POLL_S = 0.002
Json = dict[str, Any]


def _has_records(db: str) -> bool:
    if not os.path.exists(os.path.join(db, "data.mdb")):
        return False
    try:
        env = sc.open_env(db, readonly=True)
    except Exception:  # not initialised yet
        return False
    try:
        with env.begin() as txn:
            try:
                packages = env.open_db(sc.DB_PACKAGES, txn=txn, create=False)
            except Exception:
                return False
            return txn.stat(packages)["entries"] > 0
    finally:
        env.close()


def one_run(root: str, db: str, group: bool | None) -> Json:
    """One cold ``freshd index``; interrupted once records show unless ``group`` is None."""
    shutil.rmtree(db, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [FRESHD, "index", root, "--db", db],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if group is None:
        _out, err = proc.communicate()
        return {"seconds": time.perf_counter() - started, "code": proc.returncode}
    while not _has_records(db) and proc.poll() is None:
        time.sleep(POLL_S)
    sent = time.perf_counter()
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate()
    return {
        "seconds": time.perf_counter() - sent,
        "after_s": sent - started,
        "code": proc.returncode,
        "stderr_lines": len(err.splitlines()),
    }


def measure(args: argparse.Namespace) -> Json:
    params = Params(args.packages, args.files_per_package, args.mean_size, 1)
    root = ensure_tree(params)
    warm_page_cache(root)
    kinds = (("full run", None), ("SIGINT to the process", False), ("SIGINT to the group", True))
    rows: dict[str, list[Json]] = {label: [] for label, _group in kinds}
    with tempfile.TemporaryDirectory(prefix="fdi") as work:
        os.chmod(work, 0o700)
        db = os.path.join(work, "db")
        for run in range(args.runs):
            for label, group in kinds:
                row = one_run(root, db, group)
                rows[label].append(row)
                log(f"  {label} {run + 1}: {row}")
    return {
        "tree": {"packages": args.packages, "files_per_package": args.files_per_package},
        "rows": {
            label: {
                "median_s": statistics.median(r["seconds"] for r in runs),
                "max_s": max(r["seconds"] for r in runs),
                "codes": sorted({r["code"] for r in runs}),
                "stderr_lines": max((r.get("stderr_lines", 0) for r in runs), default=0),
            }
            for label, runs in rows.items()
        },
    }


def render(report: Json) -> str:
    tree = report["tree"]
    lines = [
        f"freshd index, cold, {tree['packages']} packages x {tree['files_per_package']} files",
        f"{'':<26}{'median':>10}{'max':>10}  exit codes  stderr lines",
    ]
    for label, row in report["rows"].items():
        what = "to completion" if label == "full run" else "SIGINT to exit"
        lines.append(
            f"{label:<26}{row['median_s']:>9.3f}s{row['max_s']:>9.3f}s  "
            f"{','.join(map(str, row['codes'])):<10}  {row['stderr_lines']}   ({what})"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=300)
    parser.add_argument("--files-per-package", type=int, default=200)
    parser.add_argument("--mean-size", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="30 packages, 2 runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.packages, args.runs = 30, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = measure(args)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
