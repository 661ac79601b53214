"""Load on the daemon's Unix socket: queries per second and latency, idle and under churn.

A generated tree (``--packages`` packages, ``--files`` one-line modules in all) is
served by ``freshd serve``. Two phases, each a bounded number of requests:

1. idle: ``--clients`` processes each send ``--requests`` fast ``POST /v1/fresh``
   queries (one package, its current tree digest) on a keep-alive connection;
2. churn: the same load while this process rewrites every one of the ``--files``
   files (in place, new content), round after round until the clients finish, so
   the watcher and the hasher work during the whole phase.

It reports sustained queries/s and p50/p99/max latency of each phase and their ratio
(churn / idle), the files rewritten and the rehashes the daemon did meanwhile, and
checks that after the churn a ``sync`` query answers every package fresh with the
digests recomputed from scratch (no lost update). Numbers are a report, never an
assertion. Usage::

    python bench/bench_load.py                 # 20 packages, 10,000 files, 4 x 5,000 queries
    python bench/bench_load.py --quick         # 4 packages, 400 files, 2 x 300 queries
    python bench/bench_load.py --json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_index import log
from freshd_client.content.oneshot import digest_path
from harness import Api, Freshd, memory

Json = dict[str, Any]


def make_tree(root: str, packages: int, files: int) -> list[str]:
    """``packages`` packages holding ``files`` modules in all, 100 per directory."""
    paths = []
    per = max(1, files // packages)
    for p in range(packages):
        pkg = os.path.join(root, f"pkg{p}")
        for i in range(per):
            directory = os.path.join(pkg, "src", f"pkg{p}", f"d{i // 100}")
            if i % 100 == 0:
                os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, f"m{i}.py"), "w") as fh:
                fh.write(f"value = {i}\n")
        with open(os.path.join(pkg, "pyproject.toml"), "w") as fh:
            fh.write(f'[project]\nname = "pkg{p}"\nversion = "0"\n')
        paths.append(pkg)
    return paths


def _client(socket_path: str, targets: list[tuple[str, str]], requests: int, seed: int) -> Json:
    """One client process: ``requests`` fast queries; latencies in seconds."""
    rng = random.Random(seed)
    api = Api(socket_path, timeout=60)
    latencies = []
    errors = 0
    try:
        for _ in range(requests):
            path, digest = rng.choice(targets)
            body = {"items": [{"path": path, "digest": digest}]}
            started = time.perf_counter()
            status, _answer = api.call("POST", "/v1/fresh", body)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
    finally:
        api.close()
    return {"latencies": latencies, "errors": errors}


def run_clients(
    socket_path: str, targets: list[tuple[str, str]], clients: int, requests: int
) -> Json:
    """``clients`` processes at once; the phase's throughput and latency percentiles."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(clients) as pool:
        started = time.perf_counter()
        results = pool.starmap(
            _client, [(socket_path, targets, requests, seed) for seed in range(clients)]
        )
        wall = time.perf_counter() - started
    latencies = sorted(x for r in results for x in r["latencies"])
    n = len(latencies)
    return {
        "queries": n,
        "errors": sum(r["errors"] for r in results),
        "seconds": wall,
        "qps": n / wall,
        "p50_ms": 1000 * latencies[n // 2],
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))],
        "max_ms": 1000 * latencies[-1],
        "mean_ms": 1000 * statistics.fmean(latencies),
    }


def churn(files: list[str], stop: threading.Event) -> Json:
    """Rewrite every file in place, round after round, until ``stop``."""
    rounds = written = 0
    while not stop.is_set():
        rounds += 1
        for n, path in enumerate(files):
            with open(path, "w") as fh:
                fh.write(f"value = {n}  # round {rounds}\n")
            written += 1
            if stop.is_set():
                break
    return {"rounds": rounds, "files_written": written}


def rehashed(api: Api) -> float:
    """The daemon's ``freshd_rehashed_files_total``."""
    _status, text = api.call("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith("freshd_rehashed_files_total "):
            return float(line.split()[1])
    return 0.0


def run(args: argparse.Namespace) -> Json:
    work = tempfile.mkdtemp(prefix="freshd-load-")
    root = os.path.join(work, "root")
    daemon = Freshd(
        root,
        os.path.join(work, "db"),
        os.path.join(work, "freshd.sock"),
        os.path.join(work, "freshd.log"),
    )
    try:
        log(f"generating {args.packages} packages, {args.files} files in {root}")
        packages = make_tree(root, args.packages, args.files)
        modules = sorted(
            os.path.join(d, f)
            for p in packages
            for d, _dirs, fs in os.walk(p)
            for f in fs
            if f.endswith(".py")
        )
        daemon.start()
        daemon.wait_ready()
        api = Api(daemon.socket_path)
        listed = api.json("GET", "/v1/packages")["packages"]
        targets = [(info["path"], info["tree"]) for info in listed]

        log(f"idle: {args.clients} clients x {args.requests} queries")
        idle = run_clients(daemon.socket_path, targets, args.clients, args.requests)

        log(f"churn: the same load while {len(modules)} files are rewritten")
        before = rehashed(api)
        stop = threading.Event()
        churned: Json = {}
        writer = threading.Thread(target=lambda: churned.update(churn(modules, stop)))
        writer.start()
        try:
            loaded = run_clients(daemon.socket_path, targets, args.clients, args.requests)
        finally:
            stop.set()
            writer.join()
        # Every package is exact after the churn (a sync query waits for the last write).
        expected = [(p, digest_path(p, "tree").tree) for p in packages]
        answer = api.json(
            "POST",
            "/v1/fresh",
            {
                "items": [{"path": p, "digest": d} for p, d in expected],
                "sync": True,
                "timeout_ms": 60_000,
            },
        )
        exact = sum(r["fresh"] is True for r in answer["results"])
        loaded.update(churned, rehashed_files=rehashed(api) - before)
        report = {
            "params": vars(args),
            "packages": len(packages),
            "files": len(modules),
            "idle": idle,
            "churn": loaded,
            "ratio_p50": loaded["p50_ms"] / idle["p50_ms"],
            "ratio_p99": loaded["p99_ms"] / idle["p99_ms"],
            "qps_ratio": loaded["qps"] / idle["qps"],
            "exact_after_churn": exact,
            "synced": answer["synced"],
            "daemon_memory": memory(daemon.pid),
        }
        api.close()
        return report
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def print_report(r: Json) -> None:
    idle, loaded = r["idle"], r["churn"]
    print(
        f"freshd load: {r['packages']} packages, {r['files']} files, "
        f"{r['params']['clients']} client processes x {r['params']['requests']} queries"
    )
    print(f"{'phase':<8}{'queries/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for name, phase in (("idle", idle), ("churn", loaded)):
        print(
            f"{name:<8}{phase['qps']:>11.0f}{phase['p50_ms']:>9.2f}{phase['p99_ms']:>9.2f}"
            f"{phase['max_ms']:>9.1f}{phase['errors']:>8}"
        )
    print(
        f"churn / idle: p50 x{r['ratio_p50']:.2f}, p99 x{r['ratio_p99']:.2f}, "
        f"queries/s x{r['qps_ratio']:.2f}"
    )
    print(
        f"during the churn: {loaded['files_written']} files written "
        f"({loaded['rounds']} rounds), {loaded['rehashed_files']:.0f} rehashed by the daemon"
    )
    print(
        f"after the churn: {r['exact_after_churn']}/{r['packages']} packages fresh by a "
        f"sync query with one-shot digests (synced={r['synced']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=20)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--requests", type=int, default=5_000, help="queries per client and phase")
    parser.add_argument("--quick", action="store_true", help="a small run (smoke test)")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args()
    if args.quick:
        args.packages, args.files, args.clients, args.requests = 4, 400, 2, 300
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
