"""Generate a reproducible synthetic monorepo for the freshd benchmarks.

The tree is ``DEST/packages/pkg_NNN/`` for each package, each holding a
``pyproject.toml``, a ``README.md``, a ``.gitignore``, ``src/pkg_NNN/`` with a
few levels of subpackages, ``tests/``, executable ``scripts/``, larger
``data/`` files and a few symlinks: that is the package's file set, exactly
``files_per_package`` entries. On top come files freshd must ignore:
``__pycache__/*.pyc`` and ``*.log`` files (excluded by the package's
``.gitignore``).

With ``hardlinks``, every regular file of the file sets is written once under
``DEST/cache/`` and hard linked into its package (``os.link``), as a uv or pnpm
cache copied into packages with ``cp -al``: each has a second name outside
``DEST/packages`` (the root to watch), which no event there reports.

File sizes are skewed: most files are small ``.py`` files, about 6 % are data
files roughly twenty times larger, together averaging ``mean_size`` bytes.
Everything (names, sizes, contents, modes) is a function of the parameters
and the seed only.

Usage::

    python bench/gentree.py /tmp/mono --packages 300 --files-per-package 200
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass

GENERATOR_VERSION = 2
"""Bumped whenever the output for a given seed changes (it keys the bench cache)."""

DEFAULT_PACKAGES = 300
DEFAULT_FILES_PER_PACKAGE = 200
DEFAULT_MEAN_SIZE = 10_000
DEFAULT_SEED = 1

MIN_FILES_PER_PACKAGE = 12
_PY_SHARE_OF_MEAN = 0.45  # .py files average 45 % of the mean size ...
_DATA_SHARE = 0.06  # ... and the 6 % data files make up the rest
_PY_SIGMA = 1.0
_DATA_SIGMA = 0.8
_SCRIPTS = 3
_SYMLINKS = 2
_POOL_SIZE = 8 << 20
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_WORD_TEXT = (
    "def class return import from self value result items index path data None True False "
    "for in if else elif while with as try except raise yield lambda async await pass"
)
_WORDS = _WORD_TEXT.split()


@dataclass(slots=True)
class TreeStats:
    """What ``generate`` wrote."""

    root: str
    packages: int = 0
    files: int = 0  # file-set entries: regular files + symlinks
    regular_files: int = 0
    symlinks: int = 0
    executables: int = 0
    bytes: int = 0  # file-set bytes (regular files)
    noise_files: int = 0  # __pycache__/*.pyc and *.log, excluded by freshd
    noise_bytes: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class _Pools:
    text: bytes
    binary: bytes


def _make_pools(seed: int) -> _Pools:
    rng = random.Random(f"freshd-bench-pools:{seed}")
    lines: list[str] = []
    size = 0
    while size < _POOL_SIZE:
        indent = "    " * rng.randrange(3)
        line = indent + " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(2, 12))) + "\n"
        lines.append(line)
        size += len(line)
    return _Pools(text="".join(lines).encode(), binary=rng.randbytes(_POOL_SIZE))


def _content(rng: random.Random, pool: bytes, header: bytes, size: int) -> bytes:
    """``size`` bytes: a unique header, then slices of ``pool`` from a random offset."""
    need = size - len(header)
    if need <= 0:
        return header[:size]
    parts = [header]
    while need > 0:
        take = min(need, len(pool) // 2)
        start = rng.randrange(len(pool) - take + 1)
        parts.append(pool[start : start + take])
        need -= take
    return b"".join(parts)


def _lognormal(rng: random.Random, mean: float, sigma: float, cap: int) -> int:
    mu = math.log(mean) - sigma * sigma / 2  # so that E[X] == mean
    return max(1, min(cap, int(rng.lognormvariate(mu, sigma))))


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, _WRITE_FLAGS, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _pyproject(name: str, index: int, rng: random.Random, width: int) -> bytes:
    deps = sorted({f'"pkg-{rng.randrange(max(1, index)):0{width}d}"' for _ in range(3)})
    dependencies = ", ".join(deps) if index else ""
    return (
        f'[project]\nname = "{name.replace("_", "-")}"\nversion = "0.{index}.{rng.randrange(10)}"\n'
        f'requires-python = ">=3.10"\ndependencies = [{dependencies}]\n\n'
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    ).encode()


def _package(
    pkg_dir: str,
    name: str,
    index: int,
    width: int,
    nfiles: int,
    mean: int,
    seed: int,
    pools: _Pools,
    cache: str | None = None,
) -> TreeStats:
    """Write one package; return its counts (``root`` left empty). ``cache``: the
    directory its files are written to first, then linked from (``hardlinks``)."""
    rng = random.Random(f"freshd-bench:{seed}:{index}")
    stats = TreeStats(root="")

    def put(rel: str, data: bytes, mode: int = 0o644) -> None:
        if cache is None:
            _write(os.path.join(pkg_dir, rel), data, mode)
        else:
            first = os.path.join(cache, f"{name}-{stats.regular_files}")
            _write(first, data, mode)
            os.link(first, os.path.join(pkg_dir, rel))
        stats.files += 1
        stats.regular_files += 1
        stats.bytes += len(data)
        stats.executables += bool(mode & 0o100)

    def noise(rel: str, size: int) -> None:
        _write(os.path.join(pkg_dir, rel), _content(rng, pools.binary, rel.encode(), size))
        stats.noise_files += 1
        stats.noise_bytes += size

    def header(rel: str) -> bytes:
        return f"# {name}/{rel} (seed {seed})\n".encode()

    # Directories: src/<name> plus subpackages up to three levels deep, tests, scripts, data.
    src = f"src/{name}"
    dirs = [src]
    for i in range(max(1, nfiles // 25)):
        parent = rng.choice([d for d in dirs if d.count("/") < 4])
        dirs.append(f"{parent}/{rng.choice(('core', 'util', 'io', 'api', 'impl'))}_{i}")
    for d in (*dirs, "tests", "scripts", "data", "logs"):
        os.makedirs(os.path.join(pkg_dir, d))

    put("pyproject.toml", _pyproject(name, index, rng, width))
    put("README.md", header("README.md") + b"A generated package for the freshd benchmarks.\n")
    put(".gitignore", b"*.log\nbuild/\n.venv/\n")
    py_cap = 20 * mean
    for d in dirs:
        put(f"{d}/__init__.py", _content(rng, pools.text, header(d), rng.randrange(0, 400)))
    for i in range(_SCRIPTS):
        rel = f"scripts/run_{i}.py"
        body = b"#!/usr/bin/env python3\n" + header(rel)
        put(rel, _content(rng, pools.text, body, _lognormal(rng, 1500, 0.5, py_cap)), 0o755)
    os.symlink(f"../{src}/__init__.py", os.path.join(pkg_dir, "scripts", "entry.py"))
    os.symlink(src, os.path.join(pkg_dir, "code"))  # a directory link: recorded, not followed
    stats.files += _SYMLINKS
    stats.symlinks += _SYMLINKS

    remaining = nfiles - stats.files
    ndata = max(1, round(nfiles * _DATA_SHARE))
    npy = remaining - ndata
    py_mean = _PY_SHARE_OF_MEAN * mean
    budget = mean * nfiles - stats.bytes - py_mean * npy  # what the data files must add up to
    data_mean = max(py_mean, budget / ndata)
    for i in range(npy):
        rel = f"tests/test_{i}.py" if i % 8 == 7 else f"{rng.choice(dirs)}/mod_{i}.py"
        put(
            rel, _content(rng, pools.text, header(rel), _lognormal(rng, py_mean, _PY_SIGMA, py_cap))
        )
    for i in range(ndata):
        rel = f"data/blob_{i}.{rng.choice(('bin', 'parquet', 'npz'))}"
        size = _lognormal(rng, data_mean, _DATA_SIGMA, 64 * mean)
        put(rel, _content(rng, pools.binary, header(rel), size))

    # Noise freshd must leave out: bytecode caches and gitignored logs.
    for d in dirs[: max(1, len(dirs) // 2)]:
        os.mkdir(os.path.join(pkg_dir, d, "__pycache__"))
        for j in range(4):
            noise(f"{d}/__pycache__/mod_{j}.cpython-311.pyc", rng.randrange(200, 4000))
    noise("build.log", rng.randrange(100, 20_000))
    for j in range(2):
        noise(f"logs/run_{j}.log", rng.randrange(100, 20_000))
    return stats


def generate(
    dest: str,
    packages: int = DEFAULT_PACKAGES,
    files_per_package: int = DEFAULT_FILES_PER_PACKAGE,
    mean_size: int = DEFAULT_MEAN_SIZE,
    seed: int = DEFAULT_SEED,
    hardlinks: bool = False,
) -> TreeStats:
    """Write the monorepo under ``dest`` (which must not exist or be empty); with
    ``hardlinks``, each file-set file is a hard link to a file under ``dest/cache``."""
    if packages < 1:
        raise ValueError("packages must be at least 1")
    if files_per_package < MIN_FILES_PER_PACKAGE:
        raise ValueError(f"files_per_package must be at least {MIN_FILES_PER_PACKAGE}")
    if mean_size < 100:
        raise ValueError("mean_size must be at least 100 bytes")
    if os.path.exists(dest) and os.listdir(dest):
        raise FileExistsError(f"{dest}: exists and is not empty")
    started = time.perf_counter()
    pools = _make_pools(seed)
    width = max(3, len(str(packages - 1)))
    os.makedirs(os.path.join(dest, "packages"), exist_ok=True)
    _write(os.path.join(dest, "README.md"), b"A generated monorepo for the freshd benchmarks.\n")
    total = TreeStats(root=os.path.abspath(dest))
    cache = os.path.join(dest, "cache") if hardlinks else None
    if cache is not None:
        os.mkdir(cache)
    for index in range(packages):
        name = f"pkg_{index:0{width}d}"
        pkg_dir = os.path.join(dest, "packages", name)
        os.mkdir(pkg_dir)
        one = _package(
            pkg_dir, name, index, width, files_per_package, mean_size, seed, pools, cache
        )
        total.packages += 1
        for key in (
            "files",
            "regular_files",
            "symlinks",
            "executables",
            "bytes",
            "noise_files",
            "noise_bytes",
        ):
            setattr(total, key, getattr(total, key) + getattr(one, key))
    total.seconds = time.perf_counter() - started
    return total


def describe(stats: TreeStats) -> str:
    """A one-paragraph summary of a generated tree."""
    return (
        f"generated {stats.packages} packages under {stats.root} in {stats.seconds:.1f} s: "
        f"{stats.files} file-set entries ({stats.regular_files} regular files, "
        f"{stats.executables} executable, {stats.symlinks} symlinks), "
        f"{stats.bytes / 1e6:.1f} MB (mean {stats.bytes / max(1, stats.regular_files):.0f} B); "
        f"plus {stats.noise_files} ignored files ({stats.noise_bytes / 1e6:.1f} MB)"
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: generate a tree and print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", help="output directory (must not exist or be empty)")
    parser.add_argument("--packages", type=int, default=DEFAULT_PACKAGES)
    parser.add_argument("--files-per-package", type=int, default=DEFAULT_FILES_PER_PACKAGE)
    parser.add_argument("--mean-size", type=int, default=DEFAULT_MEAN_SIZE, help="bytes")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--hardlinks",
        action="store_true",
        help="write each file under DEST/cache and hard link it into its package",
    )
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    try:
        stats = generate(
            args.dest,
            packages=args.packages,
            files_per_package=args.files_per_package,
            mean_size=args.mean_size,
            seed=args.seed,
            hardlinks=args.hardlinks,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json

        print(json.dumps(asdict(stats), indent=2))
    else:
        print(describe(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
