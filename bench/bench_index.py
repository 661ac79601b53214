"""Benchmark ``freshd index`` against b3sum and plain Python hashing loops.

One run generates (or reuses) a synthetic monorepo under ``bench/.work/``,
warms the page cache, and reports medians of several runs of:

- ``b3sum`` over exactly the regular files of freshd's file sets, one process
  and two processes (``xargs -P2``): the peer a user would otherwise run;
- Python reference loops: ``open().read()`` + blake3, ``os.open/os.read`` + blake3;
- the floor of any Python indexer: two processes, started as ``xargs -P2`` starts
  b3sum, that only hash the listed files, or that also walk the packages and
  ``lstat`` every entry (without rules, records or an index);
- ``freshd index`` cold (a new index directory each run), with the default
  worker count and with one worker;
- ``freshd index`` warm (nothing changed; every hash must be reused);
- floors for the warm case: a bare ``os.scandir`` + ``lstat`` walk, freshd's own
  walker in-process, and the start-up cost of the ``freshd`` command.

Timings are a report, never an assertion. Usage::

    python bench/bench_index.py            # 300 packages, 60,000 files, ~600 MB
    python bench/bench_index.py --quick    # 30 packages, 6,000 files
    python bench/bench_index.py --json     # the figures as JSON on stdout
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from blake3 import blake3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gentree
from freshd_client.content.fileset import walk
from freshd_client.content.project import read_project
from freshd_client.spec.digest import hash_open_file

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, ".work")
FRESHD = os.path.join(os.path.dirname(sys.executable), "freshd")
RACY_WAIT = 2.1  # freshd's racy-timestamp window is 2 s
WARM_GOAL_S = 0.5  # for 60k files
WARM_GOAL_FILES = 60_000
_READ_CHUNK = 1 << 20
_XARGS_BATCHES = 32  # enough batches for xargs -P2 to balance two processes


@dataclass(frozen=True, slots=True)
class Params:
    """The synthetic tree's shape; also its cache key."""

    packages: int
    files_per_package: int
    mean_size: int
    seed: int

    def key(self) -> str:
        """Directory name of the cached tree."""
        return (
            f"tree-v{gentree.GENERATOR_VERSION}-p{self.packages}-f{self.files_per_package}"
            f"-m{self.mean_size}-s{self.seed}"
        )


@dataclass(slots=True)
class FileSet:
    """freshd's file sets over the whole tree, as the peers get them."""

    packages: int = 0
    entries: int = 0  # regular files + symlinks (what freshd records)
    paths: list[str] = field(default_factory=list)  # regular files, relative to the root
    sizes: list[int] = field(default_factory=list)
    symlinks: int = 0
    links: list[str] = field(default_factory=list)  # the symlinks, relative to the root

    @property
    def bytes(self) -> int:
        """Total size of the regular files."""
        return sum(self.sizes)


@dataclass(slots=True)
class Result:
    """One benchmark row."""

    key: str
    name: str
    files: int
    bytes: int
    runs: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        """Median wall-clock seconds, None when it did not run."""
        return statistics.median(self.runs) if self.runs else None


def log(message: str) -> None:
    """Progress goes to stderr so that ``--json`` output stays clean."""
    print(message, file=sys.stderr, flush=True)


# -- the tree ------------------------------------------------------------------------------------


def ensure_tree(params: Params, hardlinks: bool = False) -> str:
    """The cached tree for ``params``, generated first if missing (with ``hardlinks``, every
    file is written under ``cache/`` and hard-linked into its package: bench_links)."""
    root = os.path.join(WORK, params.key() + ("-hardlinks" if hardlinks else ""))
    if os.path.isdir(root):
        log(f"using cached tree {root}")
        return root
    partial = root + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(WORK, exist_ok=True)
    stats = gentree.generate(
        partial,
        packages=params.packages,
        files_per_package=params.files_per_package,
        mean_size=params.mean_size,
        seed=params.seed,
        hardlinks=hardlinks,
    )
    os.rename(partial, root)  # only a complete tree gets the final name
    stats.root = root
    log(gentree.describe(stats) + (" (hard-linked from cache/)" if hardlinks else ""))
    return root


def collect_fileset(root: str) -> FileSet:
    """Walk every package with freshd's own walker and list its regular files."""
    result = FileSet()
    packages_dir = os.path.join(root, "packages")
    for name in sorted(os.listdir(packages_dir)):
        pkg = os.path.join(packages_dir, name)
        walked = walk(pkg, read_project(pkg))
        result.packages += 1
        for item in walked.files:
            result.entries += 1
            if os.path.islink(os.path.join(pkg, item.rel)):
                result.symlinks += 1  # b3sum would follow it; freshd hashes the target string
                result.links.append(f"packages/{name}/{item.rel}")
                continue
            result.paths.append(f"packages/{name}/{item.rel}")
            result.sizes.append(item.st.st_size)
    return result


def warm_page_cache(root: str) -> int:
    """Read every regular file under ``root`` once; return the bytes read."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                while chunk := os.read(fd, _READ_CHUNK):
                    total += len(chunk)
            finally:
                os.close(fd)
    return total


def wait_out_racy_window(root: str) -> None:
    """Sleep until the newest mtime in the tree is more than freshd's racy window old."""
    newest = 0
    for dirpath, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime_ns)
    wait = newest / 1e9 + RACY_WAIT - time.time()
    if wait > 0:
        log(f"waiting {wait:.1f} s so that the tree's mtimes leave the racy window")
        time.sleep(wait)


# -- measurements --------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def repeat(result: Result, runs: int, fn: Callable[[], object]) -> Result:
    """Run ``fn`` ``runs`` times into ``result``; a failure becomes the row's note."""
    for _ in range(runs):
        try:
            result.runs.append(timed(fn))
        except (OSError, RuntimeError, subprocess.CalledProcessError, ValueError) as exc:
            result.note = f"failed: {exc}"
            result.runs.clear()
            break
    median = result.median
    shown = f"{median:.3f} s" if median is not None else result.note
    log(f"  {result.name}: {shown}")
    return result


def b3sum_runner(
    root: str, list_file: str, count: int, procs: int, *, mmap: bool = False
) -> Callable[[], object]:
    """b3sum over the NUL-separated list, through xargs with ``procs`` processes."""
    per_batch = max(1, -(-count // _XARGS_BATCHES))
    cmd = ["xargs", "-0", "-a", list_file, "-n", str(per_batch), "-P", str(procs), "b3sum"]
    cmd += ["--num-threads", "1"] if mmap else ["--no-mmap", "--num-threads", "1"]

    def run() -> None:
        subprocess.run(cmd, cwd=root, stdout=subprocess.DEVNULL, check=True)

    return run


def check_b3sum(root: str, list_file: str, count: int) -> str:
    """Run b3sum once untimed and check it printed one line per file."""
    cmd = ["xargs", "-0", "-a", list_file, "b3sum", "--no-mmap", "--num-threads", "1"]
    out = subprocess.run(cmd, cwd=root, capture_output=True, check=True).stdout
    lines = out.count(b"\n")
    return "" if lines == count else f"b3sum printed {lines} lines for {count} files"


def python_read_loop(paths: list[str]) -> None:
    """``open().read()`` + blake3, one file at a time."""
    for path in paths:
        with open(path, "rb") as fh:
            blake3(fh.read()).digest()


def os_read_loop(paths: list[str], sizes: list[int]) -> None:
    """``os.open``/``os.read`` with a size hint + blake3 (freshd's own read pattern)."""
    flags = os.O_RDONLY | os.O_CLOEXEC
    for path, size in zip(paths, sizes, strict=True):
        fd = os.open(path, flags)
        try:
            hash_open_file(fd, size)
        finally:
            os.close(fd)


_FLOOR_CODE = r"""
import os, stat, sys
from blake3 import blake3
from freshd_client.spec.digest import hash_open_file

mode, listing = sys.argv[1], sys.argv[2]
with open(listing, "rb") as fh:
    items = fh.read().split(b"\0")[:-1]
flags = os.O_RDONLY | os.O_CLOEXEC


def hash_file(path, size):
    fd = os.open(path, flags)
    try:
        hash_open_file(fd, size)
    finally:
        os.close(fd)


if mode == "hash":  # "size:path" entries: just the reads and hashes
    for item in items:
        size, _, path = item.partition(b":")
        hash_file(path, int(size))
else:  # package directories, then b"" and the file set's paths: walk, lstat, hash
    cut = items.index(b"")
    wanted = set(items[cut + 1 :])
    stack = items[:cut]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                st = entry.stat(follow_symlinks=False)
                if entry.path in wanted:
                    if stat.S_ISLNK(st.st_mode):
                        blake3(os.readlink(entry.path)).digest()
                    else:
                        hash_file(entry.path, st.st_size)
"""


def python_floor_runner(
    root: str, fs: FileSet, *, walk: bool, procs: int = 2
) -> Callable[[], object]:
    """The least a Python implementation can do, in ``procs`` processes started the way
    ``xargs -P2`` starts b3sum: only hash the listed files (``walk=False``), or also walk
    the packages and lstat every entry, as an indexer must, without rules or an index."""
    lists = []
    for n in range(procs):
        name = os.path.join(WORK, f"floor-{'walk' if walk else 'hash'}-{n}.list")
        if walk:
            dirs = sorted({os.path.join(root, *p.split("/")[:2]) for p in fs.paths})[n::procs]
            mine = [os.fsencode(d) for d in dirs]
            wanted = [os.fsencode(os.path.join(root, p)) for p in [*fs.paths, *fs.links]]
            data = b"\0".join([*mine, b"", *wanted]) + b"\0"
        else:
            pairs = list(zip(fs.paths, fs.sizes, strict=True))[n::procs]
            data = b"".join(b"%d:%s\0" % (z, os.fsencode(os.path.join(root, p))) for p, z in pairs)
        with open(name, "wb") as fh:
            fh.write(data)
        lists.append(name)
    cmd = [sys.executable, "-c", _FLOOR_CODE, "walk" if walk else "hash"]

    def run() -> None:
        running = [subprocess.Popen([*cmd, name]) for name in lists]
        if any(proc.wait() != 0 for proc in running):
            raise RuntimeError("a floor process failed")

    return run


def scandir_walk(root: str) -> int:
    """Bare ``os.scandir`` + ``lstat`` of every entry: the floor of a warm re-index."""
    count = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    entry.stat(follow_symlinks=False)
                    count += 1
    return count


def freshd_walk(root: str) -> int:
    """freshd's walker (file-set rules, .gitignore matching) over every package."""
    packages_dir = os.path.join(root, "packages")
    count = 0
    for name in os.listdir(packages_dir):
        pkg = os.path.join(packages_dir, name)
        count += len(walk(pkg, read_project(pkg)).files)
    return count


def freshd_index(root: str, db: str, workers: int | None = None) -> dict[str, object]:
    """Run ``freshd index ROOT --db DB --json`` and return its summary."""
    cmd = [FRESHD, "index", root, "--db", db, "--json"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise RuntimeError(f"freshd index exited {proc.returncode}: {message[:3]}")
    summary: dict[str, object] = json.loads(proc.stdout)
    return summary


def measure_cold(
    result: Result, root: str, runs: int, expected: int, workers: int | None
) -> Result:
    """``freshd index`` into a brand-new index directory each run."""
    summaries: list[dict[str, object]] = []

    def run() -> None:
        db = tempfile.mkdtemp(prefix="db-cold-", dir=WORK)
        try:
            summaries.append(freshd_index(root, db, workers))
        finally:
            shutil.rmtree(db, ignore_errors=True)

    repeat(result, runs, run)
    notes = [
        f"run {i}: files={s['files']} hashed={s['hashed']} (expected {expected})"
        for i, s in enumerate(summaries, 1)
        if s["files"] != expected or s["hashed"] != expected
    ]
    if summaries:
        internal = statistics.median(float(str(s["seconds"])) for s in summaries)
        notes.insert(0, f"freshd's own timer: {internal:.3f} s")
    result.note = "; ".join(filter(None, [result.note, *notes]))
    return result


def measure_warm(
    result: Result, root: str, runs: int, expected: int, workers: int | None
) -> Result:
    """``freshd index`` again on an up-to-date index: every hash must be reused."""
    db = tempfile.mkdtemp(prefix="db-warm-", dir=WORK)
    summaries: list[dict[str, object]] = []
    try:
        freshd_index(root, db, workers)  # the untimed first (cold) pass
        repeat(result, runs, lambda: summaries.append(freshd_index(root, db, workers)))
    except RuntimeError as exc:
        result.note = f"failed: {exc}"
    finally:
        shutil.rmtree(db, ignore_errors=True)
    notes = [
        f"NOT WARM run {i}: hashed={s['hashed']} reused={s['reused']} files={s['files']}"
        for i, s in enumerate(summaries, 1)
        if s["hashed"] != 0 or s["files"] != expected
    ]
    if summaries:
        internal = statistics.median(float(str(s["seconds"])) for s in summaries)
        notes.insert(0, f"hashed=0 checked; freshd's own timer: {internal:.3f} s")
    result.note = "; ".join(filter(None, [result.note, *notes]))
    return result


# -- report --------------------------------------------------------------------------------------


def ratio(a: Result | None, b: Result | None) -> float | None:
    """median(a) / median(b), None when either did not run."""
    if a is None or b is None or a.median is None or b.median is None or b.median == 0:
        return None
    return a.median / b.median


def render(results: list[Result], ratios: dict[str, float | None], header: str) -> str:
    """The human-readable table."""
    lines = [header, ""]
    lines.append(f"{'measurement':<38} {'median s':>9} {'files':>7} {'files/s':>10} {'MB/s':>8}")
    lines.append("-" * 76)
    notes: list[str] = []
    for r in results:
        m = r.median
        if m is None:
            lines.append(f"{r.name:<38} {'-':>9} {r.files:>7} {'-':>10} {'-':>8}")
        else:
            rate = f"{r.files / m:>10,.0f}" if m and r.files else f"{'-':>10}"
            mbs = f"{r.bytes / 1e6 / m:>8.0f}" if r.bytes and m else f"{'':>8}"
            lines.append(f"{r.name:<38} {m:>9.3f} {r.files:>7} {rate} {mbs}")
        if r.note:
            notes.append(f"  {r.name}: {r.note}")
    lines.append("")
    labels = {
        "cold_vs_b3sum_p2": "freshd cold / b3sum -P2          (goal <= 1.0)",
        "floor_vs_b3sum_p2": "python walk + hash (2 processes) / b3sum -P2",
        "cold_vs_floor": "freshd cold / python walk + hash (2 processes)",
        "cold_vs_b3sum_single": "freshd cold / b3sum single",
        "cold_1w_vs_b3sum_single": "freshd cold --workers 1 / b3sum single",
        "warm_s": f"freshd warm, seconds             (goal < {WARM_GOAL_S} s at 60k files)",
        "warm_goal_scaled_s": "  goal scaled to this tree's file count",
        "warm_vs_scandir": "freshd warm / scandir+lstat floor",
    }
    for key, label in labels.items():
        value = ratios.get(key)
        lines.append(f"{label:<62} {'n/a' if value is None else f'{value:.2f}':>8}")
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def tool_version(cmd: list[str]) -> str | None:
    """First line of ``cmd``'s output, None if it cannot run."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 packages, 6,000 files")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--packages", type=int, help="default 300 (30 with --quick)")
    parser.add_argument("--files-per-package", type=int, default=gentree.DEFAULT_FILES_PER_PACKAGE)
    parser.add_argument("--mean-size", type=int, default=gentree.DEFAULT_MEAN_SIZE, help="bytes")
    parser.add_argument("--seed", type=int, default=gentree.DEFAULT_SEED)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate or reuse the tree, measure everything, print the report."""
    args = parse_args(argv)
    packages = args.packages or (30 if args.quick else gentree.DEFAULT_PACKAGES)
    params = Params(packages, args.files_per_package, args.mean_size, args.seed)
    runs = max(1, args.runs)
    if not os.access(FRESHD, os.X_OK):
        log(f"error: {FRESHD} not found; run `make install` first")
        return 1

    root = ensure_tree(params)
    fs = collect_fileset(root)
    os.makedirs(WORK, exist_ok=True)
    list_file = os.path.join(WORK, params.key() + ".files0")
    with open(list_file, "wb") as fh:
        fh.write(b"".join(os.fsencode(p) + b"\0" for p in fs.paths))
    abs_paths = [os.path.join(root, p) for p in fs.paths]
    nreg, nbytes = len(fs.paths), fs.bytes
    log(
        f"file set: {fs.packages} packages, {fs.entries} entries "
        f"({nreg} regular files, {fs.symlinks} symlinks), {nbytes / 1e6:.1f} MB"
    )
    log(f"warmed the page cache: read {warm_page_cache(root) / 1e6:.1f} MB")
    wait_out_racy_window(root)

    results: dict[str, Result] = {}

    def add(key: str, name: str, files: int, size: int) -> Result:
        results[key] = Result(key, name, files, size)
        return results[key]

    notes: list[str] = []
    b3sum = shutil.which("b3sum")
    log(f"measuring ({runs} runs each):")
    if b3sum is None:
        message = "b3sum not found: `apt-get install b3sum` (Debian/Ubuntu) to compare with it"
        log(message)
        notes.append(message)
    else:
        problem = check_b3sum(root, list_file, nreg)
        for key, name, procs, mmap in (
            ("b3sum_single", "b3sum (1 process, --no-mmap)", 1, False),
            ("b3sum_p2", "b3sum (xargs -P2, --no-mmap)", 2, False),
            ("b3sum_mmap", "b3sum (1 process, default mmap)", 1, True),
        ):
            runner = b3sum_runner(root, list_file, nreg, procs, mmap=mmap)
            repeat(add(key, name, nreg, nbytes), runs, runner)
            results[key].note = problem
    repeat(
        add("py_open_read", "python open().read() + blake3", nreg, nbytes),
        runs,
        lambda: python_read_loop(abs_paths),
    )
    repeat(
        add("py_os_read", "python os.open/os.read + blake3", nreg, nbytes),
        runs,
        lambda: os_read_loop(abs_paths, fs.sizes),
    )
    repeat(
        add("py_p2_hash", "python os.read + blake3, 2 processes", nreg, nbytes),
        runs,
        python_floor_runner(root, fs, walk=False),
    )
    repeat(
        add("py_p2_walk", "python walk + lstat + hash, 2 processes", fs.entries, nbytes),
        runs,
        python_floor_runner(root, fs, walk=True),
    )
    measure_cold(add("cold", "freshd index cold", fs.entries, nbytes), root, runs, fs.entries, None)
    measure_cold(
        add("cold_1w", "freshd index cold --workers 1", fs.entries, nbytes),
        root,
        runs,
        fs.entries,
        1,
    )
    measure_warm(add("warm", "freshd index warm", fs.entries, 0), root, runs, fs.entries, None)
    measure_warm(
        add("warm_1w", "freshd index warm --workers 1", fs.entries, 0),
        root,
        runs,
        fs.entries,
        1,
    )
    repeat(
        add("scandir", "os.scandir + lstat walk (warm floor)", fs.entries, 0),
        runs,
        lambda: scandir_walk(root),
    )
    repeat(
        add("freshd_walk", "freshd walk() in-process, no hashing", fs.entries, 0),
        runs,
        lambda: freshd_walk(root),
    )
    repeat(
        add("startup", "freshd --version (process start-up)", 0, 0),
        runs,
        lambda: subprocess.run([FRESHD, "--version"], capture_output=True, check=True),
    )

    get = results.get
    warm = get("warm")
    ratios: dict[str, float | None] = {
        "cold_vs_b3sum_p2": ratio(get("cold"), get("b3sum_p2")),
        "floor_vs_b3sum_p2": ratio(get("py_p2_walk"), get("b3sum_p2")),
        "cold_vs_floor": ratio(get("cold"), get("py_p2_walk")),
        "cold_vs_b3sum_single": ratio(get("cold"), get("b3sum_single")),
        "cold_1w_vs_b3sum_single": ratio(get("cold_1w"), get("b3sum_single")),
        "warm_s": warm.median if warm else None,
        "warm_goal_scaled_s": WARM_GOAL_S * fs.entries / WARM_GOAL_FILES,
        "warm_vs_scandir": ratio(warm, get("scandir")),
    }
    env = {
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "platform": platform.platform(),
        "b3sum": tool_version([b3sum, "--version"]) if b3sum else None,
        "freshd": tool_version([FRESHD, "--version"]),
    }
    if args.json:
        rows = [
            {
                **asdict(r),
                "median_s": r.median,
                "files_per_s": r.files / r.median if r.median else None,
            }
            for r in results.values()
        ]
        out = {
            "params": asdict(params),
            "tree": root,
            "fileset": {
                "packages": fs.packages,
                "entries": fs.entries,
                "regular_files": nreg,
                "symlinks": fs.symlinks,
                "bytes": nbytes,
            },
            "environment": env,
            "results": rows,
            "ratios": ratios,
            "notes": notes,
        }
        print(json.dumps(out, indent=2))
    else:
        header = (
            f"freshd index benchmark: {fs.packages} packages, {fs.entries} file-set entries "
            f"({nreg} regular files, {fs.symlinks} symlinks), {nbytes / 1e6:.1f} MB; "
            f"page cache warm; median of {runs}\n"
            f"{env['cpus']} CPUs, Python {env['python']}, {env['b3sum'] or 'no b3sum'}, "
            f"{env['freshd']}; tree: {root}"
        )
        print(render(list(results.values()), ratios, header))
        for note in notes:
            print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
