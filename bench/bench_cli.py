"""Start-up of the ``freshd`` command, verb by verb, beside a bare interpreter and,
optionally, another build of freshd (issue 22: one argparse parser instead of a second,
hand-written one for the common forms).

Starts a real ``freshd serve`` on a small generated tree, then times whole processes,
interleaved (one run of each command, then again, so that the machine's load hits them
alike), median and min of ``--runs``:

- ``python -S -c pass``, ``python -c pass`` and ``python -c 'import argparse'`` (the
  floors; the last is the start-up issue 22 lets ``status``/``ls`` grow by);
- ``freshd status``, ``freshd ls`` (against the daemon), ``freshd run -- true`` (no
  venv: the command runs unchanged), ``freshd digest PKG`` and ``freshd --version``;
- the same commands of ``--baseline FRESHD`` (e.g. a checkout of main with its own
  venv), when given, and the difference.

Timings are a report, never an assertion. Usage::

    python bench/bench_cli.py                                   # this build only
    python bench/bench_cli.py --baseline /tmp/main/.venv/bin/freshd --runs 40
    python bench/bench_cli.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

FRESHD = os.path.join(os.path.dirname(sys.executable), "freshd")
READY_TIMEOUT_S = 120.0


def timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Wall time and CPU time (user + system, ms) of one process; it must succeed. The CPU
    time is the steadier figure on a shared machine: waiting for a core is not in it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return elapsed, cpu


def start_daemon(work: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    root = os.path.join(work, "root")
    pkg = os.path.join(root, "pkg")
    os.makedirs(os.path.join(pkg, "src", "pkg"))
    with open(os.path.join(pkg, "pyproject.toml"), "w") as f:
        f.write('[project]\nname = "pkg"\nversion = "1"\n')
    for i in range(20):
        with open(os.path.join(pkg, "src", "pkg", f"m{i}.py"), "w") as f:
            f.write(f"x = {i}\n" * 50)
    sock = os.path.join(work, "run", "freshd.sock")
    daemon = subprocess.Popen(
        [FRESHD, "serve", root, "--db", os.path.join(work, "db"), "--socket", sock, "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        proc = subprocess.run(
            [FRESHD, "status", "--json", "--socket", sock], env=env, capture_output=True
        )
        if proc.returncode == 0 and json.loads(proc.stdout)["status"] == "ready":
            return daemon, sock
        time.sleep(0.1)
    daemon.kill()
    raise SystemExit("the daemon did not get ready")


def run(runs: int, baseline: str | None) -> tuple[list[dict[str, object]], dict[str, object]]:
    work = tempfile.mkdtemp(prefix="fdbench-cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHD_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode as users have it
    env["FRESHD_HOME"] = os.path.join(work, "home")
    daemon, sock = start_daemon(work, env)
    try:
        pkg = os.path.join(work, "root", "pkg")
        forms = {
            "status": ["status", "--socket", sock],
            "ls": ["ls", "--socket", sock],
            "run -- true": ["run", "--", "true"],
            "digest PKG": ["digest", pkg],
            "--version": ["--version"],
        }
        specs: list[tuple[str, str, list[str]]] = [
            ("python -S -c pass", "floor", [sys.executable, "-S", "-c", "pass"]),
            ("python -c pass", "floor", [sys.executable, "-c", "pass"]),
            # what one argparse parser costs before it parses anything (issue 22's trade)
            ("python -c 'import argparse'", "floor", [sys.executable, "-c", "import argparse"]),
        ]
        for what, argv in forms.items():
            specs.append((f"freshd {what}", "this build", [FRESHD, *argv]))
            if baseline:
                specs.append((f"freshd {what}", "baseline", [baseline, *argv]))
        for _what, _build, argv in specs:  # warm-up: page cache, bytecode
            timed(argv, env, work)
        times: list[list[float]] = [[] for _ in specs]
        cpu: list[list[float]] = [[] for _ in specs]
        for i in range(runs):
            order = list(range(len(specs)))
            if i % 2:
                order.reverse()
            for j in order:
                wall, used = timed(specs[j][2], env, work)
                times[j].append(wall)
                cpu[j].append(used)
        rows: list[dict[str, object]] = [
            {
                "what": what,
                "build": build,
                "runs": runs,
                "median_ms": statistics.median(t),
                "min_ms": min(t),
                "cpu_median_ms": statistics.median(c),
            }
            for (what, build, _argv), t, c in zip(specs, times, cpu, strict=True)
        ]
        info = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "baseline": baseline}
        return rows, info
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def print_table(rows: list[dict[str, object]], info: dict[str, object]) -> None:
    print(f"freshd start-up — Python {info['python']}, {info['cpus']} CPUs")
    if info["baseline"]:
        print(f"baseline: {info['baseline']}")

    def ms(row: dict[str, object], key: str) -> float:
        return float(str(row[key]))

    base = {r["what"]: r for r in rows if r["build"] == "baseline"}
    table = [("command", "build", "median", "min", "CPU median", "vs baseline: median/min/CPU")]
    for r in rows:
        old = base.get(r["what"])
        delta = (
            " / ".join(
                f"{ms(r, k) - ms(old, k):+.1f}" for k in ("median_ms", "min_ms", "cpu_median_ms")
            )
            + " ms"
            if old is not None and r["build"] == "this build"
            else ""
        )
        table.append(
            (
                str(r["what"]),
                str(r["build"]),
                f"{ms(r, 'median_ms'):.1f} ms",
                f"{ms(r, 'min_ms'):.1f} ms",
                f"{ms(r, 'cpu_median_ms'):.1f} ms",
                delta,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per row (default 30)")
    parser.add_argument("--baseline", metavar="FRESHD", help="another freshd to time alike")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows, info = run(max(1, args.runs), args.baseline)
    if args.json:
        json.dump({"info": info, "rows": rows}, sys.stdout, indent=2)
        print()
    else:
        print_table(rows, info)


if __name__ == "__main__":
    main()
