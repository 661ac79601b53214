"""CI agents sharing task results (issue 23): what a second agent saves, and what closure
digests cost with and without a daemon.

The generated monorepo (``gentree.py``, cached under ``bench/.work/``) has local
dependencies between its packages (each names up to three earlier ones). Two checkouts of
it at different absolute paths play two agents sharing a directory store. The task
zips each package's sources into ``dist/`` (a stand-in for a build: one Python process
per package) and declares the zip as its output.

Printed, each the median of ``--runs`` runs where it can be repeated:

- the task everywhere: a plain loop over the packages (what CI does without a cache),
  and ``freshd exec --no-cache``;
- agent A's ``freshd exec`` into an empty store (runs and uploads everything);
- agent B's ``freshd exec`` after one package changed (replays the rest), without a
  daemon and with one watching B's checkout;
- every closure digest (``freshd graph --json``): hashing, and from a daemon's index.

    python bench/bench_ci.py            # 100 packages of 100 files
    python bench/bench_ci.py --quick    # 30 packages of 40 files
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_index import WORK, Params, ensure_tree, log
from harness import Freshd

FRESHD = os.path.join(os.path.dirname(sys.executable), "freshd")
TASK = ["sh", "-c", f"mkdir -p dist && exec {sys.executable} -m zipfile -c dist/sources.zip src"]


def run(argv: list[str], env: dict[str, str], cwd: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def median(runs: int, fn: object, before: object = None) -> float:
    """The median wall time of ``fn`` over ``runs`` runs, ``before`` run untimed first."""
    times = []
    for _ in range(runs):
        if before is not None:
            before()  # type: ignore[operator]
        times.append(timed(fn))
    return statistics.median(times)


def digests(root: str, env: dict[str, str]) -> None:
    """Every closure digest of ``root`` in this process (no interpreter start, no CLI),
    with the ``FRESHD_*`` variables of ``env``."""
    from freshd_client.ci import closure, graph

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        found = closure.compute(graph.load(root), daemon="FRESHD_INDEX" in env)
        assert set(found.source.values()) == {"daemon" if "FRESHD_INDEX" in env else "hashed"}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def packages_of(root: str) -> list[str]:
    base = os.path.join(root, "packages")
    return [os.path.join(base, name) for name in sorted(os.listdir(base))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 packages of 40 files")
    parser.add_argument("--runs", type=int, default=5, help="runs per repeatable figure")
    parser.add_argument("--jobs", type=int, default=2, help="freshd exec --jobs")
    args = parser.parse_args(argv)
    params = Params(
        packages=30 if args.quick else 100,
        files_per_package=40 if args.quick else 100,
        mean_size=10_000,
        seed=1,
    )
    tree = ensure_tree(params)
    tmp = tempfile.mkdtemp(prefix="bench-ci-", dir=WORK)
    daemon = None
    try:
        a = os.path.join(tmp, "agent-a", "mono")
        b = os.path.join(tmp, "elsewhere", "agent-b", "checkout")
        shutil.copytree(tree, a, symlinks=True)
        shutil.copytree(tree, b, symlinks=True)
        store = os.path.join(tmp, "store")
        plain = {k: v for k, v in os.environ.items() if not k.startswith("FRESHD_")}
        plain.update(FRESHD_HOME=os.path.join(tmp, "home"))
        plain["FRESHD_SOCKET"] = os.path.join(tmp, "none.sock")  # no daemon answers there
        exec_args = ["--task", "zip", "--jobs", str(args.jobs)]
        exec_args += ["--outputs", "dist/*.zip", "--store", f"file://{store}", "--", *TASK]

        from freshd_client.ci import graph as ci_graph

        found = ci_graph.load(b)
        edges = sum(len(node.deps) for node in found.nodes.values())
        dependents = {name: found.dependents(name) for name in found.order}
        # the package to change: the one with most dependents, short of a third of the repo
        middle = [n for n in found.order if len(dependents[n]) < len(found.order) // 3]
        changed = max(middle, key=lambda n: (len(dependents[n]), n))
        rerun = 1 + len(dependents[changed])
        changed_dir = found.nodes[changed].path
        deps = found.nodes
        log(f"{len(deps)} packages, {edges} local dependencies; changing {changed}: {rerun} rerun")

        def loop() -> None:
            for package in packages_of(a):
                run(TASK, plain, package)

        figures: list[tuple[str, float]] = []
        figures.append(("task everywhere: a plain loop (jobs 1)", median(args.runs, loop)))
        no_cache = [FRESHD, "exec", "--no-cache", *exec_args]
        figures.append(
            (
                f"task everywhere: freshd exec --no-cache (jobs {args.jobs})",
                median(args.runs, lambda: run(no_cache, plain, a)),
            )
        )
        figures.append(
            (
                "agent A: freshd exec, empty store",
                timed(lambda: run([FRESHD, "exec", *exec_args], plain, a)),
            )
        )
        edits = iter(range(10**6))

        def edit() -> None:
            with open(os.path.join(changed_dir, "CHANGED.txt"), "w") as fh:
                fh.write(f"edit {next(edits)}\n")

        def agent_b(env: dict[str, str]) -> None:
            done = run([FRESHD, "exec", *exec_args], env, b)
            ran = sum(1 for line in done.stderr.splitlines() if ": ran (" in line)
            assert ran == rerun, (ran, rerun, done.stderr[-2000:])

        figures.append(
            (
                f"agent B: freshd exec, 1 package changed ({rerun} run), no daemon",
                median(args.runs, lambda: agent_b(plain), before=edit),
            )
        )
        graph_cmd = [FRESHD, "graph", "--json"]
        figures.append(
            (
                "all closure digests (freshd graph), hashing",
                median(args.runs, lambda: run(graph_cmd, plain, b)),
            )
        )

        sock_dir = tempfile.mkdtemp(prefix="fdci")  # AF_UNIX paths are short
        socket_path = os.path.join(sock_dir, "freshd.sock")
        db = os.path.join(tmp, "db")
        daemon = Freshd(b, db, socket_path, os.path.join(tmp, "daemon.log"), ["--workers", "2"])
        daemon.start()
        daemon.wait_ready()
        served = {**plain, "FRESHD_SOCKET": socket_path, "FRESHD_INDEX": db}
        served["FRESHD_HOME"] = sock_dir
        from_index = json.loads(run(graph_cmd, served, b).stdout)["packages"]
        hashed = json.loads(run(graph_cmd, plain, b).stdout)["packages"]
        assert {p["digests_from"] for p in from_index} == {"daemon"}, from_index[:1]
        assert [p["closure"] for p in from_index] == [p["closure"] for p in hashed]
        figures.append(
            (
                "all closure digests (freshd graph), daemon's index",
                median(args.runs, lambda: run(graph_cmd, served, b)),
            )
        )
        figures.append(
            (
                "all closure digests in-process, hashing",
                median(args.runs, lambda: digests(b, plain)),
            )
        )
        figures.append(
            (
                "all closure digests in-process, daemon's index",
                median(args.runs, lambda: digests(b, served)),
            )
        )
        figures.append(
            (
                f"agent B: freshd exec, 1 package changed ({rerun} run), daemon",
                median(args.runs, lambda: agent_b(served), before=edit),
            )
        )
        shutil.rmtree(sock_dir, ignore_errors=True)

        print(
            f"\nbench_ci: {len(deps)} packages x {params.files_per_package} files, "
            f"{edges} local dependencies, task = zip the sources (one Python process), "
            f"median of {args.runs}"
        )
        width = max(len(name) for name, _ in figures)
        for name, seconds in figures:
            print(f"  {name:<{width}}  {seconds:8.3f} s")
        base = figures[1][1]
        b_plain = figures[3][1]
        print(f"  agent B (no daemon) vs exec --no-cache: {base / b_plain:.1f}x faster")
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
