"""``freshd affected`` and ``freshd exec``: a task over a checkout's packages, skipping
those whose closure digest already has a recorded success.

``exec`` takes the packages in dependency order, up to ``jobs`` at once; a package
starts when its local dependencies succeeded (a failed one's dependents are skipped).
A hit is replayed: its stored log printed, its outputs restored byte for byte after
their SHA-256 is checked. A miss runs the command in the package directory with
``FRESHD_PACKAGE``, ``FRESHD_PACKAGE_DIR`` and ``FRESHD_CLOSURE`` set; a success is
recorded (log and outputs), a failure never is. The store failing makes every later
lookup a miss and every later write a no-op, with one warning line.
"""

from __future__ import annotations

import glob
import os
import stat
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from freshd_client.ci import records
from freshd_client.errors import CiError, RecordError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import BinaryIO, Literal, TextIO

    from freshd_client.ci.closure import Closures
    from freshd_client.ci.graph import Graph, Node
    from freshd_client.ci.store import Store

    Status = Literal["replayed", "ran", "failed", "skipped"]

PREFIX = "freshd"


class Guarded:
    """A store whose failures are misses: the first StoreError prints one warning line,
    and from then on nothing is read from or written to it."""

    def __init__(self, store: Store | None, err: TextIO) -> None:
        self.store = store
        self.err = err
        self._lock = threading.Lock()

    def _failed(self, exc: StoreError) -> None:
        with self._lock:
            if self.store is not None:
                print(f"{PREFIX}: warning: {exc}; running without the store", file=self.err)
                self.store = None

    def lookup(
        self, task: str, node: Node, closure: str, fetch: bool
    ) -> tuple[records.Record, dict[str, bytes]] | None:
        """The recorded success of ``task`` for ``closure`` with its blobs (only checked
        to exist unless ``fetch``); None for a miss. A refused record is a miss with a
        warning line naming the package and why."""
        store = self.store
        if store is None:
            return None
        key = records.signing_key()
        try:
            raw = store.get(records.record_key(task, closure))
            if raw is None:
                return None
            record = records.decode(raw, task, closure, key)
            blobs: dict[str, bytes] = {}
            for sha in (record.log, *(o.sha256 for o in record.outputs)):
                if fetch:
                    blobs[sha] = records.fetch_blob(store, sha)
                elif not store.has(records.blob_key(sha)):
                    raise RecordError(f"blob {sha[:12]} is missing from the store")
        except StoreError as exc:
            self._failed(exc)
            return None
        except RecordError as exc:
            print(f"{PREFIX}: warning: {node.name}: stored result refused: {exc}", file=self.err)
            return None
        return record, blobs

    def save(self, record: records.Record, blobs: dict[str, bytes]) -> None:
        store = self.store
        if store is None:
            return
        try:
            records.save(store, record, blobs, records.signing_key())
        except StoreError as exc:
            self._failed(exc)


def affected(graph: Graph, closures: Closures, store: Store | None, task: str) -> list[str]:
    """The packages (in dependency order) whose closure digest has no usable recorded
    success of ``task`` in ``store``."""
    records.check_task(task)
    guard = Guarded(store, sys.stderr)
    return [
        name
        for name in graph.order
        if guard.lookup(task, graph.nodes[name], closures.closure[name], fetch=False) is None
    ]


class Exec:
    """One ``freshd exec`` run."""

    def __init__(
        self,
        graph: Graph,
        closures: Closures,
        store: Store | None,
        task: str,
        command: Sequence[str],
        outputs: Sequence[str] = (),
        jobs: int = 1,
        out: BinaryIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        if not command:
            raise CiError("freshd exec needs a command: freshd exec --task NAME -- CMD ...")
        if jobs < 1:
            raise CiError(f"--jobs must be at least 1, not {jobs}")
        for pattern in outputs:
            if pattern.startswith("/") or ".." in pattern.split("/"):
                raise CiError(f"--outputs {pattern!r}: a pattern relative to the package only")
        self.graph = graph
        self.closures = closures
        self.task = records.check_task(task)
        self.command = list(command)
        self.outputs = list(outputs)
        self.jobs = jobs
        self.out = out or sys.stdout.buffer
        self.err = err or sys.stderr
        self.guard = Guarded(store, self.err)
        self._print = threading.Lock()

    def run(self) -> dict[str, Status]:
        """Run the task over every package; the status of each."""
        state: dict[str, Status] = {}
        pending = list(self.graph.order)
        running: dict[Future[Status], str] = {}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            while pending or running:
                for name in list(pending):
                    deps = self.graph.nodes[name].deps
                    if any(state.get(d) in ("failed", "skipped") for d in deps):
                        pending.remove(name)
                        state[name] = "skipped"
                        bad = [d for d in deps if state.get(d) in ("failed", "skipped")]
                        self._say(f"{name}: skipped (its dependency {bad[0]} did not succeed)")
                    elif len(running) < self.jobs and all(
                        state.get(d) in ("ran", "replayed") for d in deps
                    ):
                        pending.remove(name)
                        running[pool.submit(self._one, name)] = name
                if running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        state[running.pop(future)] = future.result()
        counts = {s: sum(1 for v in state.values() if v == s) for s in ("replayed", "ran")}
        failed = sum(1 for v in state.values() if v in ("failed", "skipped"))
        self._say(
            f"task {self.task}: {counts['replayed']} replayed, {counts['ran']} ran, "
            f"{failed} failed or skipped"
        )
        return state

    def _say(self, line: str, log: bytes | None = None) -> None:
        """A status line on stderr, then the package's log (if any) on stdout."""
        with self._print:
            print(f"{PREFIX}: {line}", file=self.err, flush=True)
            if log:
                self.out.write(log)
                self.out.flush()

    def _one(self, name: str) -> Status:
        node = self.graph.nodes[name]
        closure = self.closures.closure[name]
        hit = self.guard.lookup(self.task, node, closure, fetch=True)
        if hit is not None:
            record, blobs = hit
            try:
                restore(node.path, record, blobs)
            except RecordError as exc:
                self._say(f"warning: {name}: stored result refused: {exc}")
            except OSError as exc:
                self._say(f"warning: {name}: cannot restore the stored outputs: {exc}")
            else:
                self._say(f"{name}: replayed ({self.task}, {closure[:16]})", blobs[record.log])
                return "replayed"
        code, log = self._execute(node, closure)
        if code != 0:
            self._say(f"{name}: failed (exit {code})", log)
            return "failed"
        try:
            record, blobs = self._record(node, closure, log)
        except CiError as exc:
            self._say(f"{name}: ran, not recorded: {exc}", log)
            return "ran"
        self.guard.save(record, blobs)
        self._say(f"{name}: ran ({self.task}, {closure[:16]})", log)
        return "ran"

    def _execute(self, node: Node, closure: str) -> tuple[int, bytes]:
        env = dict(os.environ)
        env.update(FRESHD_PACKAGE=node.name, FRESHD_PACKAGE_DIR=node.path, FRESHD_CLOSURE=closure)
        with tempfile.TemporaryFile() as log:
            try:
                code = subprocess.run(
                    self.command,
                    cwd=node.path,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ).returncode
            except OSError as exc:
                return 127, f"{PREFIX}: cannot run {self.command[0]}: {exc}\n".encode()
            log.seek(0)
            return code, log.read()

    def _record(
        self, node: Node, closure: str, log: bytes
    ) -> tuple[records.Record, dict[str, bytes]]:
        blobs = {records.sha256_of(log): log}
        outputs: list[records.Output] = []
        for rel, data, executable in collect(node.path, self.outputs):
            sha = records.sha256_of(data)
            blobs[sha] = data
            outputs.append(records.Output(rel, sha, executable))
        record = records.Record(self.task, closure, node.name, records.sha256_of(log), outputs)
        return record, blobs


def collect(package: str, patterns: Sequence[str]) -> list[tuple[str, bytes, bool]]:
    """The regular files the output globs select in ``package`` (a directory selects the
    files below it): (relative path, content, executable), by path. Symlinks are left
    out: their targets may lie outside the package."""
    found: dict[str, tuple[bytes, bool]] = {}
    for pattern in patterns:
        for match in glob.glob(pattern, root_dir=package, recursive=True):
            path = os.path.join(package, match)
            walked = [path]
            if os.path.isdir(path) and not os.path.islink(path):
                walked = [os.path.join(d, f) for d, _dirs, files in os.walk(path) for f in files]
            for file in walked:
                rel = os.path.relpath(file, package).replace(os.sep, "/")
                try:
                    st = os.lstat(file)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    with open(file, "rb") as f:
                        found[rel] = (f.read(), bool(st.st_mode & stat.S_IXUSR))
                except FileNotFoundError:
                    continue  # a match that is gone, or glob's "dir/" for "dir/**"
                except OSError as exc:
                    raise CiError(f"cannot read the output {rel}: {exc.strerror or exc}") from None
    return [(rel, *found[rel]) for rel in sorted(found)]


def restore(package: str, record: records.Record, blobs: dict[str, bytes]) -> None:
    """Write the record's outputs into ``package``, byte for byte; RecordError (before
    anything is written) when a path could leave the package, also through a symlink."""
    top = os.path.realpath(package)
    targets: list[tuple[str, records.Output]] = []
    for output in record.outputs:
        rel = records.safe_relative(output.path)
        parent = os.path.realpath(os.path.join(top, os.path.dirname(rel)))
        if parent != top and not parent.startswith(top + os.sep):
            raise RecordError(f"output path {rel!r} leads out of the package through a link")
        target = os.path.join(parent, os.path.basename(rel))
        if os.path.islink(target) or os.path.isdir(target):
            raise RecordError(f"output path {rel!r} is a link or a directory in the package")
        targets.append((target, output))
    for target, output in targets:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".freshd-restore-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blobs[output.sha256])
            os.chmod(tmp, 0o755 if output.executable else 0o644)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
