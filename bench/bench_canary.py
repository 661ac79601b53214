"""What the liveness canary costs an idle daemon: CPU and wake-ups, canary on and off.

The daemon proves every ``--canary-seconds`` (default 1) that its watcher still delivers
events, by writing a cookie into each root and waiting for its event (issue 17). This
runs ``freshd serve`` on the generated monorepo (``gentree.py``, cached under
``bench/.work/``) twice, idle, once with the default period and once with the canary
practically off (a period of a day), and prints for each: the daemon's CPU time (its
own process, all threads) and its context switches (voluntary + involuntary, all
threads: the wake-ups) per second over the same idle window, then the difference.

    python bench/bench_canary.py              # 300 packages, 60,000 files, 30 s idle
    python bench/bench_canary.py --quick      # 30 packages, 6,000 files, 10 s idle
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import gentree
from bench_index import WORK, Params, ensure_tree, log
from harness import Freshd

SETTLE_S = 3.0  # after ready: the first sweep of rescans and cookies is done


def _threads(pid: int) -> dict[str, tuple[int, int]]:
    """Per thread: nanoseconds on a CPU (``schedstat``, exact where ``stat`` counts 10 ms
    ticks) and context switches (voluntary + involuntary: its wake-ups)."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                ns = int(fh.read().split()[0])
            switches = 0
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                for line in fh:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
        found[tid] = (ns, switches)
    return found


def _delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> tuple[float, int]:
    ns = sum(a[0] - before.get(t, (0, 0))[0] for t, a in after.items())
    switches = sum(a[1] - before.get(t, (0, 0))[1] for t, a in after.items())
    return ns / 1e9, switches


def idle(tree: str, work: str, canary: str, seconds: float) -> tuple[float, float]:
    """CPU seconds and context switches per second of an idle daemon."""
    home = tempfile.mkdtemp(prefix="fd-canary-")
    daemon = Freshd(
        tree,
        os.path.join(work, f"db-{canary}"),
        os.path.join(home, "sock"),
        os.path.join(work, f"log-{canary}"),
        args=["--canary-seconds", canary],
    )
    try:
        daemon.start()
        daemon.wait_ready()
        time.sleep(SETTLE_S)
        before, t0 = _threads(daemon.pid), time.monotonic()
        time.sleep(seconds)
        after, t1 = _threads(daemon.pid), time.monotonic()
    finally:
        daemon.stop()
        shutil.rmtree(home, ignore_errors=True)
    cpu, switches = _delta(before, after)
    return cpu / (t1 - t0), switches / (t1 - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 packages, 6,000 files")
    parser.add_argument("--seconds", type=float, help="idle window (default 30, 10 quick)")
    args = parser.parse_args(argv)
    packages = 30 if args.quick else gentree.DEFAULT_PACKAGES
    params = Params(
        packages, gentree.DEFAULT_FILES_PER_PACKAGE, gentree.DEFAULT_MEAN_SIZE, gentree.DEFAULT_SEED
    )
    tree = ensure_tree(params)
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    work = tempfile.mkdtemp(prefix="canary-run-", dir=WORK)
    try:
        rows = {}
        for label, period in (("canary 1 s (default)", "1"), ("canary off (1 day)", "86400")):
            log(f"idle {seconds:.0f} s: {label}")
            rows[label] = idle(tree, work, period, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"idle daemon, {packages} packages, one root, {seconds:.0f} s window")
    print(f"{'':24} {'CPU ms/s':>10} {'wake-ups/s':>11}")  # ms of CPU per second = 0.1 % of a core
    for label, (cpu, switches) in rows.items():
        print(f"{label:24} {cpu * 1000:10.2f} {switches:11.1f}")
    (cpu_on, sw_on), (cpu_off, sw_off) = rows.values()
    print(f"{'the canary costs':24} {(cpu_on - cpu_off) * 1000:10.2f} {sw_on - sw_off:11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
