"""Benchmark the ``freshd serve`` daemon beside Watchman on the same generated tree.

One run copies the generated monorepo (``gentree.py``, cached under ``bench/.work/``)
to a private working copy, since it edits files, and measures Watchman, then freshd:

1. cold start: freshd from an empty index to health ``ready`` (hashing everything),
   beside Watchman's crawl and its first ``content.sha1hex`` query over the same files;
2. warm restart to ``ready`` with nothing changed (every hash must be reused);
3. single-file edits: write → ``dirty`` and write → ``clean`` with the new digest on
   ``/v1/events``, write → a ``sync`` ``/v1/fresh`` answering fresh; beside Watchman's
   subscription and its synced ``since`` query;
4. a branch switch: thousands of files rewritten at once, the time until a ``sync``
   query answers every package ``clean``, and every digest checked against a one-shot
   recomputation (no lost update);
5. resident memory of the daemon, of its hashing processes, and of Watchman.

Watchman runs in the foreground with its socket, state and log in a temporary
directory; every process started here is stopped at the end. Without the ``watchman``
binary or ``pywatchman`` (``pip install -e '.[bench]'``) its column says n/a.
Timings are a report, never an assertion. Usage::

    python bench/bench_daemon.py            # 300 packages, 60,000 files, ~600 MB
    python bench/bench_daemon.py --quick    # 30 packages, 6,000 files
    python bench/bench_daemon.py --json     # the figures as JSON on stdout
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gentree
from bench_index import (
    FRESHD,
    WORK,
    FileSet,
    Params,
    collect_fileset,
    ensure_tree,
    log,
    tool_version,
    warm_page_cache,
)
from freshd_client import Client
from freshd_client.content.oneshot import digest_path
from harness import (
    EVENT_TIMEOUT_S,
    START_TIMEOUT_S,
    Api,
    EventLog,
    Freshd,
    Json,
    Watchman,
    memory,
    package_event,
)

EDITS, EDITS_QUICK = 50, 20
CHURN, CHURN_QUICK = 10_000, 1_000
COLD_GOAL_RATIO = 5.0  # Watchman's first content-hash query / freshd cold start
WARM_GOAL_S = 0.5
CLEAN_GOAL_MS = 20.0  # p50
SYNC_GOAL_MS = 2.0
RSS_GOAL_MIB = 150.0
T = TypeVar("T")
RACY_WAIT_S = 2.1  # freshd reuses a stored hash only for files older than it by 2 s
CHURN_TIMEOUT_S = 300.0
# freshd's file sets as Watchman sees them: the tree's other files are *.pyc and *.log.
WATCHMAN_FILESET = [
    "allof",
    ["type", "f"],
    ["not", ["anyof", ["suffix", "pyc"], ["suffix", "log"]]],
]


# -- small helpers -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def latency(seconds: list[float]) -> Json:
    """Milliseconds: count, p50, p95, max."""
    ms = [s * 1e3 for s in seconds]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "max": max(ms or [0]),
    }


def median(values: list[float]) -> float | None:
    """Median, None for no values."""
    return statistics.median(values) if values else None


def write_in_place(path: str, data: bytes) -> None:
    """Rewrite ``path`` in place (same inode, one write), as most tools do."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path: str) -> bytes:
    """The bytes of ``path``."""
    with open(path, "rb") as fh:
        return fh.read()


def pause(rng: random.Random) -> None:
    """A short irregular gap, so that one edit's events never batch with the next."""
    time.sleep(0.03 + rng.random() * 0.02)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds of one call, and its result."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


# -- the workload ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A file to edit and the package it belongs to."""

    package: str  # absolute
    path: str  # absolute
    rel: str  # relative to the root, as Watchman names it


def package_of(root: str, rel: str) -> str:
    """The package directory of a file-set path ``packages/pkg_NNN/…``."""
    return os.path.join(root, *rel.split("/")[:2])


def pick_targets(root: str, fs: FileSet, count: int) -> list[Target]:
    """One ``.py`` file under ``src/`` in each of ``count`` packages spread over the tree."""
    by_package: dict[str, list[str]] = {}
    for rel in fs.paths:
        if rel.endswith(".py") and "/src/" in rel:
            by_package.setdefault(package_of(root, rel), []).append(rel)
    packages = sorted(by_package)
    count = min(count, len(packages))
    chosen = [packages[i * len(packages) // count] for i in range(count)]
    return [Target(p, os.path.join(root, min(by_package[p])), min(by_package[p])) for p in chosen]


# -- Watchman ------------------------------------------------------------------------------


def run_watchman(wm: Watchman, root: str, targets: list[Target], runs: int, seed: int) -> Json:
    """Crawl, content hashes, edit latencies and RSS of Watchman on ``root``."""
    out: Json = {"version": tool_version([wm.binary, "--version"])}
    crawl, first, later = [], [], []
    query = {"expression": WATCHMAN_FILESET, "fields": ["name", "content.sha1hex"]}
    with wm.client(timeout=START_TIMEOUT_S) as client:
        for run in range(runs):
            if run:
                client.query("watch-del", root)  # a new root: an empty content-hash cache
            started = time.perf_counter()
            client.query("watch", root)
            client.query("clock", root, {"sync_timeout": int(START_TIMEOUT_S * 1000)})
            crawl.append(time.perf_counter() - started)
            seconds, answer = timed(lambda: client.query("query", root, query))
            first.append(seconds)
            later.append(timed(lambda: client.query("query", root, query))[0])
            out["files"] = len(answer["files"])
            out["hashed"] = sum(isinstance(f["content.sha1hex"], str) for f in answer["files"])
            log(
                f"  Watchman run {run + 1}: crawl {crawl[-1]:.3f} s, first content.sha1hex "
                f"query {first[-1]:.3f} s, later {later[-1]:.3f} s ({out['files']} files)"
            )
        out.update(crawl_s=crawl, first_hash_s=first, later_hash_s=later)
        out["memory_after_hash"] = memory(wm.pid)
        out["since_ms"], out["since_misses"] = _watchman_since(client, root, targets, seed)
        cookie = {"sync_timeout": 10_000}  # `clock` with a cookie: Watchman's sync alone
        trips = [timed(lambda: client.query("clock", root, cookie))[0] for _ in targets]
        out["sync_no_edit_ms"] = latency(trips)
    out["subscription_ms"], out["subscription_misses"] = _watchman_subscription(
        wm, root, targets, seed
    )
    out["memory_after_edits"] = memory(wm.pid)
    return out


def _watchman_since(client: Any, root: str, targets: list[Target], seed: int) -> tuple[Json, int]:
    """Write, then a synced ``since`` query that must list the file with its new SHA-1."""
    rng = random.Random(seed)
    times, misses = [], 0
    spec = {"expression": ["type", "f"], "fields": ["name", "content.sha1hex"]}
    for k, target in enumerate(targets):
        data = read(target.path) + f"# watchman since edit {k}\n".encode()
        want = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        clock = client.query("clock", root)["clock"]
        started = time.perf_counter()
        write_in_place(target.path, data)
        answer = client.query("query", root, {"since": clock, **spec})
        elapsed = time.perf_counter() - started
        if {f["name"]: f["content.sha1hex"] for f in answer["files"]}.get(target.rel) == want:
            times.append(elapsed)
        else:
            misses += 1
        pause(rng)
    return latency(times), misses


def _watchman_subscription(
    wm: Watchman, root: str, targets: list[Target], seed: int
) -> tuple[Json, int]:
    """Write, then wait for the subscription PDU naming the file (Watchman settles 20 ms)."""
    import pywatchman

    rng = random.Random(seed + 1)
    times, misses = [], 0
    with wm.client(timeout=EVENT_TIMEOUT_S) as sub:
        clock = sub.query("clock", root)["clock"]
        spec = {"since": clock, "expression": ["type", "f"], "fields": ["name"]}
        sub.query("subscribe", root, "bench", spec)
        for k, target in enumerate(targets):
            data = read(target.path) + f"# watchman subscription edit {k}\n".encode()
            started = time.perf_counter()
            write_in_place(target.path, data)
            try:
                while True:
                    pdu = sub.receive()
                    if pdu.get("subscription") == "bench" and target.rel in pdu.get("files", ()):
                        times.append(time.perf_counter() - started)
                        break
            except pywatchman.SocketTimeout:
                misses += 1
            sub.getSubscription("bench")  # drop what receive() accumulated
            pause(rng)
        sub.query("unsubscribe", root, "bench")
    return latency(times), misses


# -- freshd ------------------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """Where the daemons of one benchmark run live."""

    root: str
    db: str
    socket_path: str
    logs: str
    started: int = 0

    def start(self, label: str) -> tuple[Freshd, float, float]:
        """Start a daemon and wait for ``ready``: the daemon, seconds to its first health
        answer (start-up before any indexing) and seconds to ``ready``."""
        self.started += 1
        log_path = os.path.join(self.logs, f"freshd-{self.started:02d}-{label}.log")
        daemon = Freshd(self.root, self.db, self.socket_path, log_path)
        spawned = daemon.start()
        try:
            ready = daemon.wait_ready()
        except BaseException:
            daemon.stop()
            raise
        return daemon, daemon.first_answer - spawned, ready - spawned


@dataclass(slots=True)
class Starts:
    """Figures of repeated starts to ``ready``."""

    runs_s: list[float] = field(default_factory=list)
    first_answer_s: list[float] = field(default_factory=list)
    own: list[Json | None] = field(default_factory=list)  # the daemons' "ready:" log lines
    exit_codes: list[int | None] = field(default_factory=list)
    memory: Json = field(default_factory=dict)  # at the last start's ready

    def stop(self, daemon: Freshd) -> None:
        """Stop ``daemon``, keeping its exit code and its own figures."""
        self.exit_codes.append(daemon.stop())
        self.own.append(daemon.summary())


def measure_starts(session: Session, runs: int, *, cold: bool) -> tuple[Starts, Freshd]:
    """``runs`` starts to ``ready`` (cold: from a new index); the last daemon keeps running."""
    label = "cold" if cold else "warm"
    out = Starts()
    daemon: Freshd | None = None
    try:
        for run in range(runs):
            if daemon is not None:
                out.stop(daemon)
            if cold:
                shutil.rmtree(session.db, ignore_errors=True)
            daemon, answered, ready = session.start(label)
            out.runs_s.append(ready)
            out.first_answer_s.append(answered)
            out.memory = memory(daemon.pid)
            log(f"  freshd {label} start {run + 1}: ready in {ready:.3f} s")
    except BaseException:
        if daemon is not None:
            daemon.stop()
        raise
    assert daemon is not None
    return out, daemon


def run_freshd(session: Session, fs: FileSet, targets: list[Target], churn: int, args: Any) -> Json:
    """Cold and warm starts, edits, the branch switch and RSS of the daemon."""
    cold, daemon = measure_starts(session, args.runs, cold=True)
    cold.stop(daemon)
    warm, daemon = measure_starts(session, args.runs, cold=False)
    out: Json = {}
    try:
        api = Api(session.socket_path)
        events = EventLog(session.socket_path)
        try:
            out["edit"] = freshd_edits(api, events, targets, args.seed, session.db)
            out["churn"] = freshd_churn(api, events, session.root, fs, churn, args.seed)
            out["memory_after_churn"] = memory(daemon.pid)
        finally:
            events.close()
            api.close()
    finally:
        warm.stop(daemon)
    return {"cold": asdict(cold), "warm": asdict(warm), **out}


def freshd_edits(
    api: Api, events: EventLog, targets: list[Target], seed: int, index_dir: str
) -> Json:
    """Single-file edits: write → dirty and → clean events, write → sync query fresh
    (over HTTP, and through the direct transport that reads the index in-process)."""
    rng = random.Random(seed)
    original = {t.path: read(t.path) for t in targets}
    edited = {t.path: original[t.path] + b"# freshd edit\n" for t in targets}
    before = {t.package: digest_path(t.package).tree for t in targets}
    after: dict[str, str | None] = {}
    dirty, clean, wrong, missing = [], [], 0, 0
    for target in targets:
        pkg = target.package
        mark = events.mark()
        started = time.perf_counter()
        write_in_place(target.path, edited[target.path])
        seen_dirty = events.wait(package_event(pkg, "dirty"), mark, EVENT_TIMEOUT_S)
        seen_clean = events.wait(package_event(pkg, "clean", before[pkg]), mark, EVENT_TIMEOUT_S)
        after[pkg] = digest_path(pkg).tree  # the oracle, untimed
        if seen_dirty is not None:
            dirty.append(seen_dirty.at - started)
        if seen_clean is None:
            missing += 1
        else:
            clean.append(seen_clean.at - started)
            wrong += seen_clean.data.get("tree") != after[pkg]
        pause(rng)

    def back_and_forth(ask: Callable[[str, str], object]) -> tuple[list[float], list[object]]:
        """Write each target's two contents in turn (their digests are known now), timing
        the write and ``ask(package, digest)``: None when it answered fresh, else what it
        answered instead."""
        took, wrong = [], []
        for target in targets:
            pkg = target.package
            for data, digest in (
                (original[target.path], before[pkg]),
                (edited[target.path], after[pkg]),
            ):
                started = time.perf_counter()
                write_in_place(target.path, data)
                problem = ask(pkg, digest)
                took.append(time.perf_counter() - started)
                if problem is not None:
                    wrong.append(problem)
            pause(rng)
        return took, wrong

    def over_http(pkg: str, digest: str) -> object:
        answer = api.fresh([{"path": pkg, "digest": digest}], sync=True)
        result = answer["results"][0]
        fresh = answer["synced"] and result["fresh"] is True
        return None if fresh else {"synced": answer["synced"], **result}

    synced, answers = back_and_forth(over_http)
    # The same through freshd_client's direct transport: it writes the cookie itself and
    # polls the index for the daemon's acknowledgement, then reads the record.
    with Client(index_dir=index_dir, transport="direct") as client:

        def direct_ask(pkg: str, digest: str) -> object:
            fresh = client.is_fresh(pkg, digest, consistency="sync")
            return None if fresh is True else f"is_fresh answered {fresh}"

        direct, direct_wrong = back_and_forth(direct_ask)

    idle, fast = [], []
    for target in targets:
        items = [{"path": target.package, "digest": after[target.package]}]
        for sync, into in ((True, idle), (False, fast)):  # nothing changed
            started = time.perf_counter()
            api.fresh(items, sync=sync)
            into.append(time.perf_counter() - started)
        pause(rng)
    return {
        "edits": len(targets),
        "dirty_ms": latency(dirty),
        "clean_ms": latency(clean),
        "clean_wrong_digest": wrong,
        "clean_missing": missing,
        "sync_ms": latency(synced),
        "sync_not_fresh": len(answers),
        "sync_not_fresh_answers": answers[:5],
        "direct_sync_ms": latency(direct),
        "direct_sync_not_fresh": len(direct_wrong),
        "sync_no_edit_ms": latency(idle),
        "fast_query_ms": latency(fast),
    }


def freshd_churn(api: Api, events: EventLog, root: str, fs: FileSet, count: int, seed: int) -> Json:
    """A branch switch: ``count`` files rewritten at once, then a sync query and the oracle."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(fs.paths, min(count, len(fs.paths))))  # git writes in path order
    writes = [(path, b"# other branch\n" + read(path)) for path in (f"{root}/{r}" for r in chosen)]
    packages = sorted({package_of(root, rel) for rel in fs.paths})
    touched = {package_of(root, rel) for rel in chosen}
    listing = api.packages()
    stale = [{"path": p, "digest": listing[p]["tree"]} for p in packages]
    metrics_before = api.metrics()
    mark = events.mark()

    started = time.perf_counter()
    for path, data in writes:
        write_in_place(path, data)
    written = time.perf_counter()
    rounds = 0
    while time.perf_counter() - started < CHURN_TIMEOUT_S:
        rounds += 1
        answer = api.fresh(stale, sync=True, timeout_ms=60_000)
        if answer["synced"] and all(r["state"] == "clean" for r in answer["results"]):
            break
    synced = time.perf_counter()

    events.quiet(0.2, EVENT_TIMEOUT_S)  # the stream may trail the sync answer
    last_clean = {
        e.data["path"]: e.at
        for e in events.since(mark)
        if e.kind == "package" and e.data.get("state") == "clean"
    }
    metrics_after = api.metrics()
    listing = api.packages()
    oracle_s, oracle = timed(lambda: {p: digest_path(p).tree for p in packages})
    correct = sum(
        listing.get(p, {}).get("state") == "clean" and listing[p]["tree"] == oracle[p]
        for p in packages
    )
    answer = api.fresh([{"path": p, "digest": oracle[p]} for p in packages], sync=True)
    verdicts = [r["fresh"] for r in answer["results"]]

    def delta(name: str) -> float:
        return metrics_after.get(name, 0.0) - metrics_before.get(name, 0.0)

    return {
        "files": len(writes),
        "packages_touched": len(touched),
        "packages": len(packages),
        "write_s": written - started,
        "sync_after_writes_s": synced - written,
        "sync_from_start_s": synced - started,
        "sync_rounds": rounds,
        "last_clean_event_s": max(last_clean.values(), default=started) - started,
        "touched_without_clean_event": len(touched - last_clean.keys()),
        "sse_events": len(events.since(mark)),
        "sse_stream_closed": events.closed,
        "correct": correct,
        "incorrect": len(packages) - correct,
        "fresh_true": verdicts.count(True),
        "fresh_false": verdicts.count(False),
        "fresh_unknown": verdicts.count(None),
        "oneshot_oracle_s": oracle_s,
        **{k: delta(f"freshd_{k}_total") for k in ("events", "overflows", "rescans")},
        "rehashed_files": delta("freshd_rehashed_files_total"),
    }


# -- report ------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _ms(summary: Json | None) -> str:
    if not summary or summary.get("p50") is None:
        return "n/a"
    return f"{summary['p50']:.2f} / {summary['p95']:.2f} ms"


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MiB"


def goals(fd: Json, wm: Json | None) -> Json:
    """The figures the issue sets goals for."""
    cold = median(fd["cold"]["runs_s"])
    first = median(wm["first_hash_s"]) if wm else None
    return {
        "watchman_first_hash_over_freshd_cold": first / cold if first and cold else None,
        "cold_s": cold,
        "warm_s": median(fd["warm"]["runs_s"]),
        "clean_p50_ms": fd["edit"]["clean_ms"]["p50"],
        "sync_p50_ms": fd["edit"]["sync_ms"]["p50"],
        "churn_incorrect": fd["churn"]["incorrect"],
        "rss_after_cold_mib": fd["cold"]["memory"]["rss_mib"],
        "rss_after_churn_mib": fd["memory_after_churn"]["rss_mib"],
    }


@dataclass(slots=True)
class Table:
    """Rows of measurement, freshd, Watchman, goal."""

    lines: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        """A heading."""
        self.lines.append(title)

    def row(self, label: str, ours: str = "", theirs: str = "", goal: str = "") -> None:
        """One measurement."""
        self.lines.append(f"  {label:<48} {ours:>18} {theirs:>18}  {goal}".rstrip())


def render(fd: Json, wm: Json | None, figures: Json, header: str) -> str:
    """The side-by-side table."""
    w = wm or {}
    cold, warm, edit, churn = fd["cold"], fd["warm"], fd["edit"], fd["churn"]
    ratio = figures["watchman_first_hash_over_freshd_cold"]
    t = Table([header, "", f"{'measurement':<50} {'freshd':>18} {'Watchman':>18}  goal", "-" * 100])
    t.section("1. cold start")
    t.row("freshd spawn → health ready, hashing all", _s(figures["cold_s"]))
    t.row("  of which: spawn → first health answer", _s(median(cold["first_answer_s"])))
    t.row("  daemon's own crawl + hash timer", _s(median([o["seconds"] for o in cold["own"] if o])))
    t.row("Watchman crawl (watch → synced clock)", "", _s(median(w.get("crawl_s", []))))
    t.row("Watchman first content.sha1hex query", "", _s(median(w.get("first_hash_s", []))))
    t.row("Watchman later content.sha1hex query", "", _s(median(w.get("later_hash_s", []))))
    shown = "n/a" if ratio is None else f"{ratio:.2f}x"
    t.row("Watchman first hash query / freshd cold", shown, "", f">= {COLD_GOAL_RATIO:.0f}x")
    t.section("2. warm restart, nothing changed")
    t.row("freshd spawn → health ready", _s(figures["warm_s"]), "", f"< {WARM_GOAL_S} s")
    t.row("  of which: spawn → first health answer", _s(median(warm["first_answer_s"])))
    t.row("  daemon's own crawl timer", _s(median([o["seconds"] for o in warm["own"] if o])))
    t.section(f"3. single-file edit ({edit['edits']} edits), p50 / p95")
    t.row("write → dirty event", _ms(edit["dirty_ms"]))
    goal = f"p50 <= {CLEAN_GOAL_MS:.0f} ms"
    t.row("write → clean event with the new digest", _ms(edit["clean_ms"]), "", goal)
    t.row("write → subscription PDU naming the file", "", _ms(w.get("subscription_ms")))
    goal = f"<= {SYNC_GOAL_MS:.0f} ms"
    t.row("write → sync query answers fresh", _ms(edit["sync_ms"]), "", goal)
    t.row("  the same, direct transport (in-process)", _ms(edit["direct_sync_ms"]), "", goal)
    t.row("write → synced since query, new sha1", "", _ms(w.get("since_ms")))
    t.row(
        "sync query, nothing changed (cookie trip)",
        _ms(edit["sync_no_edit_ms"]),
        _ms(w.get("sync_no_edit_ms")),
    )
    t.row("fast /v1/fresh round trip (client floor)", _ms(edit["fast_query_ms"]))
    t.section(f"4. branch switch: {churn['files']} files in {churn['packages_touched']} packages")
    t.row("writing the files", _s(churn["write_s"]))
    t.row("end of writes → sync answer, all clean", _s(churn["sync_after_writes_s"]))
    t.row("start of writes → last clean event", _s(churn["last_clean_event_s"]))
    t.row(
        "digests equal to one-shot: correct/incorrect",
        f"{churn['correct']}/{churn['incorrect']}",
        "",
        "all correct",
    )
    t.row(
        "sync query with one-shot digests: fresh",
        f"{churn['fresh_true']}/{churn['packages']}",
        "",
        "all fresh",
    )
    t.row("one-shot digest_path of every package", _s(churn["oneshot_oracle_s"]))
    t.section("5. resident memory, VmRSS (peak VmHWM)")
    goal = f"< {RSS_GOAL_MIB:.0f} MiB"
    for label, mem, theirs in (
        ("after the cold index", cold["memory"], w.get("memory_after_hash")),
        ("after the edits and the churn", fd["memory_after_churn"], w.get("memory_after_edits")),
    ):
        ours = f"{_mib(mem['rss_mib'])} ({_mib(mem['hwm_mib'])})"
        peer = f"{_mib(theirs['rss_mib'])} ({_mib(theirs['hwm_mib'])})" if theirs else "n/a"
        t.row(f"{label}: daemon", ours, peer, goal)
        kids = f"{_mib(mem['children_rss_mib'])}, {_mib(mem['children_pss_mib'])}"
        t.row(f"  + its {mem['children']} pool processes: RSS, PSS", kids)
    return "\n".join(t.lines)


def notes(fd: Json, wm: Json | None) -> list[str]:
    """What the table does not show: correctness counters and exit codes."""
    edit, churn = fd["edit"], fd["churn"]
    out = [
        f"warm restarts hashed {[o['hashed'] for o in fd['warm']['own'] if o]} files (0 expected)"
    ]
    if edit["clean_missing"] or edit["clean_wrong_digest"]:
        out.append(
            f"edits: {edit['clean_missing']} clean events missing, "
            f"{edit['clean_wrong_digest']} with a digest other than the one-shot one"
        )
    if edit["sync_not_fresh"]:
        out.append(
            f"sync queries not answering fresh: {edit['sync_not_fresh']} of "
            f"{edit['sync_ms']['n']}, e.g. {edit['sync_not_fresh_answers'][:2]}"
        )
    if edit["direct_sync_not_fresh"]:
        out.append(
            f"direct sync queries not answering fresh: {edit['direct_sync_not_fresh']} of "
            f"{edit['direct_sync_ms']['n']}"
        )
    out.append(
        f"branch switch: {churn['events']:.0f} events, {churn['overflows']:.0f} overflows, "
        f"{churn['rescans']:.0f} package rescans, {churn['rehashed_files']:.0f} files rehashed, "
        f"{churn['sync_rounds']} sync round(s)"
    )
    codes = fd["cold"]["exit_codes"] + fd["warm"]["exit_codes"]
    if any(code != 0 for code in codes):
        out.append(f"freshd exit codes: {codes}")
    if wm is not None:
        out.append(
            f"Watchman {wm['version']}: {wm['files']} files, {wm['hashed']} hashed; misses: "
            f"since {wm['since_misses']}, subscription {wm['subscription_misses']}"
        )
    return out


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 packages, 6,000 files")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--runs", type=int, default=3, help="starts per measurement (median)")
    parser.add_argument("--edits", type=int, help=f"single-file edits (default {EDITS})")
    parser.add_argument("--churn", type=int, help=f"files of the branch switch (default {CHURN})")
    parser.add_argument("--no-watchman", action="store_true", help="measure freshd only")
    parser.add_argument("--packages", type=int, help="default 300 (30 with --quick)")
    parser.add_argument("--files-per-package", type=int, default=gentree.DEFAULT_FILES_PER_PACKAGE)
    parser.add_argument("--mean-size", type=int, default=gentree.DEFAULT_MEAN_SIZE, help="bytes")
    parser.add_argument("--seed", type=int, default=gentree.DEFAULT_SEED)
    return parser.parse_args(argv)


def find_watchman(no_watchman: bool) -> tuple[str | None, str | None]:
    """The watchman binary, or why Watchman is not measured."""
    if no_watchman:
        return None, "Watchman not measured (--no-watchman)"
    binary = shutil.which("watchman")
    if binary is None:
        return None, "watchman not found: `apt-get install watchman` to compare with it"
    try:
        import pywatchman  # noqa: F401
    except ImportError:
        return None, "pywatchman not installed: `pip install -e '.[bench]'` to compare with it"
    return binary, None


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that the ``finally`` blocks stop every process."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def measure(args: argparse.Namespace, tree: str, work: str, home: str, binary: str | None) -> Json:
    """Copy ``tree`` into ``work`` and measure Watchman (when ``binary``), then freshd."""
    root = os.path.realpath(os.path.join(work, "tree"))
    started = time.perf_counter()
    subprocess.run(["cp", "-a", "--reflink=auto", tree, root], check=True)  # keeps mtimes
    os.sync()  # no write-back of the copy during the measurements
    log(f"copied the tree to {root} in {time.perf_counter() - started:.1f} s")
    # The copy keeps mtimes, not ctimes: until its ctimes are older than freshd's racy
    # window, a warm restart would rightly rehash them.
    trusted_at = time.monotonic() + RACY_WAIT_S
    fs = collect_fileset(root)
    log(f"warmed the page cache: read {warm_page_cache(root) / 1e6:.1f} MB")
    targets = pick_targets(root, fs, args.edits or (EDITS_QUICK if args.quick else EDITS))
    wm_figures = None
    if binary is not None:
        wm = Watchman(binary, os.path.join(home, "watchman"))
        log(f"Watchman ({args.runs} runs):")
        try:
            wm.start()
            wm_figures = run_watchman(wm, root, targets, args.runs, args.seed)
        finally:
            wm.stop()
        trusted_at = time.monotonic() + RACY_WAIT_S  # Watchman's edits, likewise
    wait = trusted_at - time.monotonic()
    if wait > 0:
        log(f"waiting {wait:.1f} s: the tree's last changes must be older than the racy window")
        time.sleep(wait)
    session = Session(root, os.path.join(work, "index"), os.path.join(home, "freshd.sock"), work)
    log(f"freshd ({args.runs} runs):")
    churn = args.churn or (CHURN_QUICK if args.quick else CHURN)
    fd_figures = run_freshd(session, fs, targets, churn, args)
    fileset = {"packages": fs.packages, "entries": fs.entries, "bytes": fs.bytes}
    return {"fileset": fileset, "freshd": fd_figures, "watchman": wm_figures}


def main(argv: list[str] | None = None) -> int:
    """Generate or reuse the tree, measure Watchman and freshd on a copy, print the report."""
    args = parse_args(argv)
    args.runs = max(1, args.runs)
    packages = args.packages or (30 if args.quick else gentree.DEFAULT_PACKAGES)
    params = Params(packages, args.files_per_package, args.mean_size, args.seed)
    if not os.access(FRESHD, os.X_OK):
        log(f"error: {FRESHD} not found; run `make install` first")
        return 1
    binary, skipped = find_watchman(args.no_watchman)
    if skipped:
        log(skipped)
    fresh_tree = not os.path.isdir(os.path.join(WORK, params.key()))
    tree = ensure_tree(params)
    if fresh_tree:
        time.sleep(RACY_WAIT_S)  # just written: its mtimes would make the warm restarts rehash
    work = tempfile.mkdtemp(prefix="daemon-run-", dir=WORK)
    home = tempfile.mkdtemp(prefix="freshd-bench-")  # short paths for the Unix sockets
    with sigterm_unwinds():
        try:
            result = measure(args, tree, work, home, binary)
        finally:
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)

    fd, wm = result["freshd"], result["watchman"]
    figures = goals(fd, wm)
    env = {
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "freshd": tool_version([FRESHD, "--version"]),
        "watchman": wm["version"] if wm else None,
    }
    remarks = [*([skipped] if skipped else []), *notes(fd, wm)]
    if args.json:
        out = {"params": asdict(params), **result, "environment": env, "goals": figures}
        print(json.dumps({**out, "notes": remarks}, indent=2))
        return 0
    fs = result["fileset"]
    header = (
        f"freshd daemon benchmark: {fs['packages']} packages, {fs['entries']} file-set entries, "
        f"{fs['bytes'] / 1e6:.1f} MB; page cache warm; starts: median of {args.runs}\n"
        f"{env['cpus']} CPUs, Python {env['python']}, {env['freshd']}, "
        f"Watchman {env['watchman'] or 'n/a'}"
    )
    print(render(fd, wm, figures, header))
    print("\nnotes:\n" + "\n".join(f"  {r}" for r in remarks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
