"""A seeded random file-system churn driver and the oracle checks made against a daemon.

``Churn(seed, base)`` builds a root of a few packages beside an ``outside`` directory that
no daemon watches, then applies random operations drawn from ``seed`` alone: the same
seed replays the same operations (targets are picked from sorted listings of the real
tree, names come from a counter), so a failure reproduces from its seed. Every operation
appends a readable line to ``Churn.log``; ``Churn.failure`` wraps an assertion with the
seed and that log.

The oracle is ``freshd_client.content.oneshot.digest_path`` run from scratch on every package.
One rule of the contract is computed here too: a package holding a file whose hard-link
count exceeds the names of that inode in every package's file set has a name freshd
cannot watch (outside the roots, or excluded), so it is never ``clean``: it must answer
unknown (state ``dirty``), never a digest; so is a package whose ``pyproject.toml`` is a
symlink (its target lives outside the root here).
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import PYPROJECT
from daemon_harness import DEADLINE, Daemon, atomic_write, make_package, write
from freshd_client.content.oneshot import digest_path
from freshd_client.spec.schema import COOKIE_PREFIX

GITIGNORE_LINES = ("*.log", "*.tmp", "f1*", "d*/", "!f10.txt", "h*", "sub/")
SUFFIXES = (".py", ".txt", ".log", ".tmp")


@dataclass(frozen=True)
class Expect:
    """What the daemon must say about one package: its digests, or unknown."""

    tree: str
    meta: str
    files: int
    trusted: bool  # False: a hard link leaves the watched file sets, or the project file
    # is a symlink (its target may change with no event): never clean


class Churn:
    """Random operations over packages in ``base/root``, reproducible from ``seed``."""

    def __init__(self, seed: int, base: Path, packages: int = 4, files: int = 4) -> None:
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 (reproducible by seed, not secret)
        self.root = base / "root"
        self.outside = base / "outside"
        self.outside.mkdir(parents=True)
        self.shared = base / "shared"  # targets of symlinked project files; nothing moves them
        self.shared.mkdir()
        self.log: list[str] = []
        self._names = 0
        for i in range(packages):
            make_package(
                self.root,
                f"p{i}",
                {f"src/m{j}.py": f"x = {i * 100 + j}\n" for j in range(files)}
                | {"README.md": f"# p{i}\n", "data/table.txt": "1 2 3\n" * (i + 1)},
            )
        self.ops: list[tuple[Callable[[], str | None], int]] = [
            (self.write_new, 6),
            (self.append, 4),
            (self.truncate, 2),
            (self.rewrite_identical, 2),
            (self.rewrite_same_tick, 4),
            (self.atomic_save, 3),
            (self.delete, 4),
            (self.make_dir, 2),
            (self.remove_dir, 1),
            (self.move_file, 3),
            (self.move_dir, 2),
            (self.move_out, 2),
            (self.move_in, 2),
            (self.symlink, 2),
            (self.chmod, 2),
            (self.touch, 2),
            (self.gitignore, 2),
            (self.remove_pyproject, 1),
            (self.create_pyproject, 1),
            (self.edit_pyproject, 2),
            (self.hard_link, 2),
            (self.write_linked, 3),
            # Issue 17's classes: each once made a daemon answer fresh for changed content.
            (self.excluded_name_file, 2),
            (self.link_pyproject, 1),
            (self.edit_shared, 1),
            (self.swap_for_link, 1),
        ]

    # -- what there is ------------------------------------------------------------

    def _walk(self, top: Path) -> tuple[list[Path], list[Path]]:
        files, dirs = [], []
        for dirpath, dirnames, names in os.walk(top):
            dirnames.sort()
            base = Path(dirpath)
            dirs.extend(base / d for d in dirnames if not (base / d).is_symlink())
            files.extend(base / n for n in sorted(names) if not n.startswith(COOKIE_PREFIX))
            files.extend(base / d for d in dirnames if (base / d).is_symlink())
        return files, dirs

    def files(self, *, regular: bool = False, where: Path | None = None) -> list[Path]:
        """Files and symlinks (``regular``: regular files but project files, which only
        ``edit_pyproject`` rewrites, with valid TOML)."""
        found = self._walk(where or self.root)[0]
        if not regular:
            return found
        return [f for f in found if f.name != "pyproject.toml" and stat.S_ISREG(f.lstat().st_mode)]

    def dirs(self) -> list[Path]:
        return [self.root, *self._walk(self.root)[1]]

    def packages(self) -> list[Path]:
        """Package directories under the root (our trees hold no VCS, venv or cache dirs)."""
        return sorted(d for d in self._walk(self.root)[1] if (d / "pyproject.toml").exists())

    def _name(self, prefix: str, suffix: str = "") -> str:
        self._names += 1
        return f"{prefix}{self._names}{suffix}"

    def _content(self) -> bytes:
        return f"v = {self.rng.randrange(10**6)!r}\n".encode() * self.rng.randint(1, 3)

    def _pick(self, items: list[Path]) -> Path | None:
        return self.rng.choice(items) if items else None

    def _rel(self, path: Path) -> str:
        base = self.root.parent
        return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)

    # -- operations: each returns its log line, or None when it found nothing to act on --

    def write_new(self) -> str | None:
        target = self.rng.choice(self.dirs()) / self._name("f", self.rng.choice(SUFFIXES))
        write(target, self._content())
        return f"write new {self._rel(target)}"

    def append(self) -> str | None:
        target = self._pick(self.files(regular=True))
        if target is None:
            return None
        with open(target, "ab") as f:
            f.write(self._content())
        return f"append {self._rel(target)}"

    def truncate(self) -> str | None:
        target = self._pick(self.files(regular=True))
        if target is None:
            return None
        size = self.rng.randrange(target.stat().st_size + 1)
        os.truncate(target, size)
        return f"truncate {self._rel(target)} to {size}"

    def rewrite_identical(self) -> str | None:
        target = self._pick(self.files(regular=True))
        if target is None:
            return None
        write(target, target.read_bytes())
        return f"rewrite identical {self._rel(target)}"

    def rewrite_same_tick(self) -> str | None:
        """Other bytes, same size, written in place, the mtime put back (same tick)."""
        target = self._pick([f for f in self.files(regular=True) if f.stat().st_size])
        if target is None:
            return None
        st = target.stat()
        data = bytearray(target.read_bytes())
        at = self.rng.randrange(len(data))
        data[at] = (data[at] + 1 + self.rng.randrange(254)) % 256
        write(target, bytes(data))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        return f"same size, same mtime {self._rel(target)} byte {at}"

    def atomic_save(self) -> str | None:
        target = self._pick(self.files(regular=True))
        if target is None:
            return None
        atomic_write(target, self._content())
        return f"atomic save {self._rel(target)}"

    def delete(self) -> str | None:
        target = self._pick([f for f in self.files() if f.name != "pyproject.toml"])
        if target is None:
            return None
        target.unlink()
        return f"delete {self._rel(target)}"

    def make_dir(self) -> str | None:
        parent = self.rng.choice(self.dirs())
        target = parent / self._name("d") / self.rng.choice(["", "sub"])
        write(target / self._name("f", ".py"), self._content())
        return f"mkdir+file {self._rel(target)}"

    def _subdirs(self) -> list[Path]:
        """Directories that are not packages themselves."""
        return [d for d in self.dirs()[1:] if not (d / "pyproject.toml").exists()]

    def remove_dir(self) -> str | None:
        target = self._pick(self._subdirs())
        if target is None:
            return None
        shutil.rmtree(target)
        return f"rmtree {self._rel(target)}"

    def move_file(self) -> str | None:
        source = self._pick([f for f in self.files() if f.name != "pyproject.toml"])
        if source is None:
            return None
        target = self.rng.choice(self.dirs()) / self._name("f", source.suffix)
        os.rename(source, target)
        return f"move {self._rel(source)} -> {self._rel(target)}"

    def move_dir(self) -> str | None:
        """A directory (maybe a whole package) moved elsewhere in the root."""
        source = self._pick(self.dirs()[1:])
        if source is None:
            return None
        parents = [d for d in self.dirs() if d != source and not d.is_relative_to(source)]
        target = self.rng.choice(parents) / self._name("d")
        os.rename(source, target)
        return f"move dir {self._rel(source)} -> {self._rel(target)}"

    def move_out(self) -> str | None:
        source = self._pick([f for f in self.files() if f.name != "pyproject.toml"])
        if self.rng.random() < 0.3:
            source = self._pick(self._subdirs()) or source
        if source is None:
            return None
        target = self.outside / self._name("o", source.suffix)
        os.rename(source, target)
        return f"move out {self._rel(source)} -> {self._rel(target)}"

    def move_in(self) -> str | None:
        entries = sorted(self.outside.iterdir())
        source = self._pick(entries)
        if source is None:
            return None
        target = self.rng.choice(self.dirs()) / self._name("i", source.suffix)
        os.rename(source, target)
        return f"move in {self._rel(source)} -> {self._rel(target)}"

    def symlink(self) -> str | None:
        parent = self.rng.choice(self.dirs())
        link = parent / self._name("l")
        candidates = [os.path.relpath(f, parent) for f in self.files()[:50]]
        target = self.rng.choice([*candidates, "missing.py", "..", "/etc/hostname"])
        link.symlink_to(target)
        return f"symlink {self._rel(link)} -> {target}"

    def chmod(self) -> str | None:
        target = self._pick(self.files(regular=True))
        if target is None:
            return None
        mode = target.stat().st_mode ^ 0o111
        target.chmod(stat.S_IMODE(mode))
        return f"chmod {oct(stat.S_IMODE(mode))} {self._rel(target)}"

    def touch(self) -> str | None:
        target = self._pick(self.files(regular=True))
        if target is None:
            return None
        os.utime(target)
        return f"touch {self._rel(target)}"

    def gitignore(self) -> str | None:
        directory = self.rng.choice(self.dirs()[1:] or self.dirs())
        path = directory / ".gitignore"
        if path.exists() and self.rng.random() < 0.4:
            path.unlink()
            return f"delete {self._rel(path)}"
        lines = self.rng.sample(GITIGNORE_LINES, self.rng.randint(1, 3))
        atomic_write(path, "".join(f"{line}\n" for line in lines))
        return f"gitignore {self._rel(path)}: {' '.join(lines)}"

    def remove_pyproject(self) -> str | None:
        package = self._pick(self.packages())
        if package is None or len(self.packages()) <= 2:
            return None
        (package / "pyproject.toml").unlink()
        return f"delete {self._rel(package / 'pyproject.toml')}"

    def edit_pyproject(self) -> str | None:
        package = self._pick(self.packages())
        if package is None:
            return None
        version = self.rng.randrange(100)
        text = PYPROJECT.replace("Demo_Pkg", package.name).replace("0.1.0", f"0.{version}")
        writer = self.rng.choice([write, atomic_write])
        writer(package / "pyproject.toml", text)
        return (
            f"edit {self._rel(package / 'pyproject.toml')} version 0.{version} ({writer.__name__})"
        )

    def create_pyproject(self) -> str | None:
        directory = self._pick(self._subdirs())
        if directory is None:
            return None
        write(directory / "pyproject.toml", PYPROJECT.replace("Demo_Pkg", self._name("n")))
        return f"create {self._rel(directory / 'pyproject.toml')}"

    def hard_link(self) -> str | None:
        """A second name for a file: in another package, or outside the root."""
        # Regular files outside too: a second name for a project file (one moved out
        # inside a directory) let later edits through that name write invalid TOML.
        source = self._pick(self.files(regular=True) + self.files(regular=True, where=self.outside))
        if source is None or not stat.S_ISREG(source.lstat().st_mode):
            return None
        # A name made outside the roots for a file inside: link() notifies only the
        # directory it is made in, so no daemon can know it (see docs/reliability.md);
        # the package learns of it when it is next scanned. Not generated here.
        inside = source.is_relative_to(self.root)
        where = self.rng.choice(self.dirs() if inside else [*self.dirs(), self.outside])
        target = where / self._name("h", source.suffix)
        os.link(source, target)
        return f"hard link {self._rel(source)} -> {self._rel(target)}"

    def write_linked(self) -> str | None:
        """Write in place through one name of a hard-linked file (often the other one)."""
        names = self.files(regular=True) + self.files(regular=True, where=self.outside)
        target = self._pick([f for f in names if f.stat().st_nlink > 1])
        if target is None:
            return self.hard_link()
        write(target, self._content())
        return f"write linked {self._rel(target)} (nlink {target.stat().st_nlink})"

    def excluded_name_file(self) -> str | None:
        """A file named like a directory the file set leaves out (``build``, ``x.egg-info``),
        written or appended to: it is in the file set, and its events count."""
        name = self.rng.choice(["build", "dist", "x.egg-info", "node_modules", "__pycache__"])
        target = self.rng.choice(self.dirs()) / name
        if target.is_dir() or target.is_symlink():
            return None
        with open(target, "ab") as f:
            f.write(self._content())
        return f"append to the file {self._rel(target)}"

    def link_pyproject(self) -> str | None:
        """A package's ``pyproject.toml`` replaced (atomically) by a symlink to a copy
        outside the root: its later edits reach no watch."""
        package = self._pick([p for p in self.packages() if not self._linked_project(p)])
        if package is None:
            return None
        shared = self.shared / self._name("shared", ".toml")
        shared.write_bytes((package / "pyproject.toml").read_bytes())
        link = package / self._name("tmp", ".toml")
        link.symlink_to(shared)
        os.rename(link, package / "pyproject.toml")
        return f"pyproject {self._rel(package)} -> {self._rel(shared)}"

    def edit_shared(self) -> str | None:
        """Edit the target, outside the root, of a symlinked ``pyproject.toml``: another
        version, or rules that change the file set."""
        package = self._pick([p for p in self.packages() if self._linked_project(p)])
        if package is None:
            return None
        target = (package / "pyproject.toml").resolve()
        text = PYPROJECT.replace("Demo_Pkg", package.name)
        if self.rng.random() < 0.5:
            text += '[tool.freshd]\nexclude = ["*.txt"]\n'
        write(target, text.replace("0.1.0", f"0.{self.rng.randrange(100)}"))
        return f"edit shared {self._rel(target)} of {self._rel(package)}"

    @staticmethod
    def _linked_project(package: Path) -> bool:
        return (package / "pyproject.toml").is_symlink()

    def swap_for_link(self) -> str | None:
        """``mv D D.old && ln -s E D``: a directory above packages swapped for a link to
        another directory of the root; the packages' paths lead elsewhere now."""
        packages = self.packages()
        above = [d for d in self.dirs()[1:] if any(p.is_relative_to(d) for p in packages)]
        source = self._pick(above)
        if source is None:
            return None
        others = [d for d in self.dirs() if not d.is_relative_to(source)]
        target = self.rng.choice(others)
        moved = source.with_name(self._name("old"))
        os.rename(source, moved)
        source.symlink_to(os.path.relpath(target, source.parent))
        return f"swap {self._rel(source)} for a link to {self._rel(target)}"

    def step(self) -> str:
        """One random operation that found something to act on; its log line."""
        ops, weights = zip(*self.ops, strict=True)
        while True:
            line = self.rng.choices(ops, weights)[0]()
            if line is not None:
                return line

    # -- the oracle ---------------------------------------------------------------

    def expected(self) -> dict[str, Expect]:
        """Every package's digests recomputed from scratch, and whether it can be trusted."""
        scans = {}
        for package in self.packages():
            tree = digest_path(str(package), "tree")
            meta = digest_path(str(package), "meta")
            assert tree.tree is not None and meta.meta is not None
            scans[str(package)] = (tree, meta.meta)
        names: Counter[tuple[int, int]] = Counter()
        for tree, _meta in scans.values():
            names.update((r.dev, r.ino) for r in tree.records)
        expect = {}
        for path, (tree, meta) in scans.items():
            unwatched = self._linked_project(Path(path)) or any(
                os.lstat(os.path.join(path, r.rel)).st_nlink > names[r.dev, r.ino]
                for r in tree.records
            )
            assert tree.tree is not None
            expect[path] = Expect(tree.tree, meta, len(tree.records), trusted=not unwatched)
        return expect

    @contextmanager
    def failure(self, what: str) -> Iterator[None]:
        """Re-raise an assertion with the seed and every operation so far."""
        try:
            yield
        except AssertionError as exc:
            steps = "\n".join(f"  {n}: {line}" for n, line in enumerate(self.log))
            raise AssertionError(
                f"{what} failed (seed {self.seed}; rerun: pytest -m soak tests/ "
                f"--soak-seed={self.seed}): {exc}\noperations ({len(self.log)}):\n{steps}"
            ) from None


# -- checks against a daemon ----------------------------------------------------------


def _items(expect: dict[str, Expect]) -> list[tuple[str, str]]:
    return [(p, d) for p, e in expect.items() for d in (e.tree, e.meta)]


def check_sync(
    daemon: Daemon, root: Path, now: dict[str, Expect], before: dict[str, Expect]
) -> None:
    """A ``sync`` answer and the package list equal the oracle exactly; digests the
    content no longer has are never fresh."""
    old = [
        (p, d)
        for p, e in before.items()
        for d in (e.tree, e.meta)
        if p not in now or d not in (now[p].tree, now[p].meta)
    ]
    items = _items(now) + old
    answer = daemon.fresh(items, sync=True)
    assert answer["synced"] is True, answer
    for (path, digest), result in zip(items, answer["results"], strict=True):
        if (path, digest) in old and path not in now and os.path.realpath(path) != path:
            # The path leads through a link to another package now: answered for that one.
            assert result["fresh"] is not True, f"old digest {digest} of {path}: {result}"
        elif (path, digest) in old:
            want: bool | None = False if path in now and now[path].trusted else None
            assert result["fresh"] is want, f"old digest {digest} of {path}: {result}"
        elif now[path].trusted:
            assert result["fresh"] is True, f"sync differs from the oracle for {path}: {result}"
        else:
            assert (result["fresh"], result["state"]) == (None, "dirty"), (
                f"{path} has a hard link freshd cannot watch, yet: {result}"
            )
    prefix = f"{root}/"
    listed = {p: i for p, i in daemon.packages().items() if p.startswith(prefix)}
    assert sorted(listed) == sorted(now), f"listed {sorted(listed)} != {sorted(now)}"
    for path, want_ in now.items():
        got = listed[path]
        if want_.trusted:
            seen = (got["state"], got["tree"], got["meta"], got["files"], got["error"])
            assert seen == ("clean", want_.tree, want_.meta, want_.files, None), f"{path}: {got}"
        else:
            assert got["state"] == "dirty", f"{path} (unwatchable hard link): {got}"


def check_fast(
    daemon: Daemon, now: dict[str, Expect], before: dict[str, Expect], *, single: bool
) -> int:
    """Poll ``fast`` answers until they equal the oracle; once an answer shows a changed
    package dirty, gone or with another digest, its old digest must never be fresh again.

    A dirty answer counts only after a ``single`` operation: after several, it may be the
    mark of an earlier one, whose rescan may rightly still read the old content (``fast``
    lags by one event-processing delay). Returns how many answers showed a change before
    the new digest (the probe's reach)."""
    changed = {
        p: (e.tree, e.meta)
        for p, e in before.items()
        if p not in now or (e.tree, e.meta) != (now[p].tree, now[p].meta)
    }
    items = _items(now) + [(p, d) for p, ds in changed.items() for d in ds]
    seen: set[str] = set()
    caught = 0
    deadline = time.monotonic() + DEADLINE
    while True:
        results = daemon.fresh(items, sync=False)["results"]
        answers: dict[tuple[str, str], dict[str, Any]] = {
            (p, d): r for (p, d), r in zip(items, results, strict=True)
        }
        for path, digests in changed.items():
            for digest in digests:
                result = answers[path, digest]
                gone = path not in now or digest not in (now[path].tree, now[path].meta)
                if path in seen and gone:
                    assert result["fresh"] is not True, (
                        f"fast said fresh for {path}'s old digest {digest} after the change "
                        f"was seen: {result}"
                    )
                dirty = result["state"] != "clean"
                if (dirty and single) or result["digest"] not in (None, digest):
                    if path not in seen and dirty:
                        caught += 1
                    seen.add(path)
        behind = [
            answers[p, d]
            for p, e in now.items()
            for d in (e.tree, e.meta)
            if (answers[p, d]["fresh"], answers[p, d]["state"])
            != ((True, "clean") if e.trusted else (None, "dirty"))
        ] + [
            answers[p, d]
            for p, ds in changed.items()
            # A path that leads through a link to another package now is answered for that
            # package (its old digests are never fresh: checked above).
            if p not in now and os.path.realpath(p) == p
            for d in ds
            if answers[p, d]["state"] != "unknown"
        ]
        if not behind:
            return caught
        assert time.monotonic() < deadline, f"fast answers never reached the oracle: {behind}"
        time.sleep(0.005)


def soak_seeds(first: int | None, minutes: float) -> Iterator[int]:
    """The seeds of a soak run: ``first`` (else one from the clock, printed by the
    caller's report), then ``first + 1``, … while ``minutes`` last; always at least one."""
    seed = first if first is not None else time.time_ns() % 1_000_000_007
    until = time.monotonic() + minutes * 60
    yield seed
    while time.monotonic() < until:
        seed += 1
        yield seed
