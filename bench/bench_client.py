"""Benchmark the thin client against the alternatives a user has today.

Starts a real ``freshd serve`` on generated trees (packages of 20, 200 and 2,000
files, plus a 300-package monorepo), then reports median and p99 of:

- ``Client.is_fresh`` on the direct transport (LMDB in-process) and over HTTP;
- the alternatives: rehashing the package (``freshd_client.content.scan.scan``, what a
  content check costs without freshd) and a uv-style check that stats the cache-key
  files (``pyproject.toml``, ``setup.py``, ``setup.cfg``, ``src/``) for their ctime;
- ``check_many`` over the 300 packages, both transports;
- ``sync`` consistency (a cookie round trip through the daemon), both transports;
- whole processes: ``freshd status`` and a client process that imports
  ``freshd_client`` and checks the 300 packages, beside ``python -S -c pass``.

Timings are a report, never an assertion. Usage::

    python bench/bench_client.py            # full run (~1 min)
    python bench/bench_client.py --quick    # fewer repetitions
    python bench/bench_client.py --json     # the figures as JSON on stdout
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gentree
from freshd_client import Client, DaemonError
from freshd_client.content.scan import package_dir, scan
from freshd_client.transport.http import HttpTransport

FRESHD = os.path.join(os.path.dirname(sys.executable), "freshd")
SIZES = (20, 200, 2000)
MONO_PACKAGES = 300
READY_TIMEOUT_S = 300.0
UV_CACHE_KEYS = ("pyproject.toml", "setup.py", "setup.cfg")
CHECK_PROCESS = """
import sys
from freshd_client import Client
index, sock, transport, listing = sys.argv[1:]
items = [tuple(line.split("\\t")) for line in open(listing).read().splitlines()]
with Client(index_dir=index, socket_path=sock, transport=transport) as c:
    answers = c.check_many(items)
sys.exit(0 if all(answers) else 2)
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One measurement: median and p99 in microseconds."""

    what: str
    size: str
    runs: int
    median_us: float
    p99_us: float
    goal: str = ""


def sample(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p99 (µs) of ``runs`` calls, after a warm-up; GC paused while timing."""
    for _ in range(min(runs, 50)):
        fn()
    times = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(runs):
            start = clock()
            fn()
            times.append(clock() - start)
    finally:
        gc.enable()
    times.sort()
    return statistics.median(times) / 1000, times[
        min(len(times) - 1, int(len(times) * 0.99))
    ] / 1000


def measure(what: str, size: str, fn: Callable[[], object], runs: int, goal: str = "") -> Row:
    median, p99 = sample(fn, runs)
    return Row(what, size, runs, median, p99, goal)


def uv_style_check(path: str) -> int:
    """What uv compares: the newest ctime of the cache-key files, and whether src/ exists."""
    newest = 0
    for name in (*UV_CACHE_KEYS, "src"):
        with contextlib.suppress(FileNotFoundError):
            newest = max(newest, os.stat(os.path.join(path, name)).st_ctime_ns)
    return newest


def process_env(work: str) -> dict[str, str]:
    """Child environment with bytecode cached (outside the tree), as an installed freshd has."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    return env


def process_row(what: str, argv: list[str], env: dict[str, str], runs: int, goal: str) -> Row:
    def run() -> None:
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)

    return measure(what, "process", run, runs, goal)


def build_tree(work: str) -> tuple[str, dict[int, str], list[str]]:
    """One root: a package per size, and a monorepo of MONO_PACKAGES small packages."""
    root = os.path.join(work, "root")
    os.makedirs(root)
    single = {}
    for size in SIZES:
        dest = os.path.join(root, f"size{size}")
        gentree.generate(dest, packages=1, files_per_package=size)
        single[size] = os.path.join(dest, "packages", "pkg_000")
    mono = os.path.join(root, "mono")
    gentree.generate(mono, packages=MONO_PACKAGES, files_per_package=20, mean_size=2000)
    packages = sorted(os.path.join(mono, "packages", n) for n in os.listdir(f"{mono}/packages"))
    return root, single, packages


def start_daemon(work: str, root: str) -> tuple[subprocess.Popen[bytes], str, str]:
    index, sock = os.path.join(work, "index"), os.path.join(work, "s.sock")
    env = {**process_env(work), "FRESHD_HOME": os.path.join(work, "home")}
    proc = subprocess.Popen(
        [FRESHD, "serve", root, "--db", index, "--socket", sock],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    with HttpTransport(sock) as http:
        while True:
            if proc.poll() is not None:
                raise SystemExit("freshd serve exited; run it by hand to see why")
            try:
                if http.health()["status"] == "ready":
                    return proc, index, sock
            except DaemonError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("the daemon did not become ready in time")
            time.sleep(0.05)


def tree_of(client: Client, path: str) -> str:
    info = client.lookup(path)
    assert info is not None and info["state"] == "clean", (path, info)
    return str(info["tree"])


def package_rows(
    direct: Client, http: Client, label: str, path: str, n: Callable[[int], int]
) -> list[Row]:
    """is_fresh on both transports beside rehashing and a uv-style stat, for one package."""
    digest = tree_of(direct, path)
    assert direct.is_fresh(path, digest) is True and http.is_fresh(path, digest) is True
    rehash_runs = n(30 if "2000" not in label else 10)
    return [
        measure(
            "is_fresh direct",
            label,
            lambda: direct.is_fresh(path, digest),
            n(50_000),
            "p50 ≤ 5 µs, p99 ≤ 20 µs",
        ),
        measure(
            "is_fresh http", label, lambda: http.is_fresh(path, digest), n(2_000), "p50 ≤ 300 µs"
        ),
        measure(
            "rehash (blake3 scan)",
            label,
            lambda: scan(package_dir(path), scopes=("tree",)),
            rehash_runs,
        ),
        measure("uv-style stat of cache keys", label, lambda: uv_style_check(path), n(50_000)),
    ]


def run(quick: bool) -> tuple[list[Row], dict[str, object]]:
    scale = 0.2 if quick else 1.0

    def n(runs: int) -> int:
        return max(5, int(runs * scale))

    work = tempfile.mkdtemp(prefix="fdbench")  # short: AF_UNIX paths are limited
    proc = None
    try:
        root, single, mono = build_tree(work)
        proc, index, sock = start_daemon(work, root)
        rows: list[Row] = []
        with Client(index, sock, "direct") as direct, Client(index, sock, "http") as http:
            for size, path in single.items():
                rows += package_rows(direct, http, f"{size} files", path, n)
            items = [(p, tree_of(direct, p)) for p in mono]
            assert all(direct.check_many(items))
            label = f"{MONO_PACKAGES} packages"
            rows += [
                measure(
                    "check_many direct", label, lambda: direct.check_many(items), n(2_000), "≤ 1 ms"
                ),
                measure("check_many http", label, lambda: http.check_many(items), n(200)),
                measure(
                    "rehash all (blake3 scan)",
                    label,
                    lambda: [scan(package_dir(p), scopes=("tree",)) for p in mono],
                    n(5),
                ),
                measure(
                    "uv-style stat, all", label, lambda: [uv_style_check(p) for p in mono], n(1_000)
                ),
            ]
            path, digest = single[200], tree_of(direct, single[200])
            rows += [
                measure(
                    "is_fresh sync direct",
                    "200 files",
                    lambda: direct.is_fresh(path, digest, consistency="sync"),
                    n(500),
                    "≤ 2 ms",
                ),
                measure(
                    "is_fresh sync http",
                    "200 files",
                    lambda: http.is_fresh(path, digest, consistency="sync"),
                    n(500),
                    "≤ 2 ms",
                ),
            ]
        listing = os.path.join(work, "items.tsv")
        with open(listing, "w") as fh:
            fh.writelines(f"{p}\t{d}\n" for p, d in items)
        env = process_env(work)
        py = sys.executable
        for argv in (
            [FRESHD, "status", "--socket", sock],
            [py, "-c", CHECK_PROCESS, index, sock, "direct", listing],
        ):
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)  # cache bytecode
        runs = n(40)
        rows += [
            process_row("python -S -c pass", [py, "-S", "-c", "pass"], env, runs, "the floor"),
            process_row("python -c pass", [py, "-c", "pass"], env, runs, ""),
            process_row(
                "freshd status", [FRESHD, "status", "--socket", sock], env, runs, "≤ floor + 10 ms"
            ),
            process_row(
                f"client process: check_many({MONO_PACKAGES}) direct",
                [py, "-c", CHECK_PROCESS, index, sock, "direct", listing],
                env,
                runs,
                "≤ floor + 10 ms",
            ),
            process_row(
                f"client process: check_many({MONO_PACKAGES}) http",
                [py, "-c", CHECK_PROCESS, index, sock, "http", listing],
                env,
                runs,
                "",
            ),
        ]
        info = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "quick": quick,
        }
        return rows, info
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def fmt(us: float) -> str:
    if us >= 10_000:
        return f"{us / 1000:.0f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.1f} µs" if us < 100 else f"{us:.0f} µs"


def print_table(rows: list[Row], info: dict[str, object]) -> None:
    print(f"freshd client benchmark — Python {info['python']}, {info['cpus']} CPUs")
    header = ("measurement", "size", "median", "p99", "runs", "goal")
    table = [header] + [
        (r.what, r.size, fmt(r.median_us), fmt(r.p99_us), str(r.runs), r.goal) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows, info = run(args.quick)
    if args.json:
        json.dump({"info": info, "rows": [asdict(r) for r in rows]}, sys.stdout, indent=2)
        print()
    else:
        print_table(rows, info)


if __name__ == "__main__":
    main()
