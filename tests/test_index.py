"""The LMDB index: single writer, concurrent readers, schema versions, map growth, racy rule."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import lmdb
import pytest

from conftest import wait_out_racy_window
from freshd.crawl.indexer import index_roots
from freshd.errors import IndexLockedError
from freshd.index.writer import Index
from freshd_client.content.oneshot import digest_path
from freshd_client.content.scan import scan
from freshd_client.errors import IndexMissingError, IndexStoreError, SchemaMismatchError
from freshd_client.spec import schema as sc
from freshd_client.spec.schema import RACY_WINDOW_NS, FileRecord


def _package(root: Path, name: str, files: int = 3) -> Path:
    pkg = root / name
    (pkg / "src" / name).mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1"\n')
    for i in range(files):
        (pkg / "src" / name / f"m{i}.py").write_text(f"X = {i}\n")
    return pkg


def _age(root: Path, seconds: float = 10.0) -> None:
    """Move every mtime into the past, then wait until every ctime (which that moved) is
    out of the racy window too."""
    past = time.time() - seconds
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), (past, past), follow_symlinks=False)
    wait_out_racy_window(root)


def test_index_matches_oneshot_oracle(tmp_path: Path) -> None:
    for name in ("alpha", "beta", "gamma"):
        _package(tmp_path / "src", name)
    with Index(str(tmp_path / "db")) as index:
        summary = index_roots(index, [str(tmp_path / "src")], workers=2)
        assert summary.packages == 3 and not summary.errors
        for record in index.packages():
            assert record.state == "clean"
            assert record.tree == digest_path(record.path, "tree").tree
            assert record.meta == digest_path(record.path, "meta").meta
            assert record.files == len(index.file_records(record.path)) == 4


def test_second_writer_is_refused_naming_the_first(tmp_path: Path) -> None:
    held = Index(str(tmp_path / "db"), owner={"socket": "/run/x.sock"})
    with held, pytest.raises(IndexLockedError, match=rf"pid {os.getpid()}.*socket /run/x\.sock"):
        Index(str(tmp_path / "db"))
    Index(str(tmp_path / "db")).close()  # released on close


def test_reader_without_index_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="no freshd index"):
        sc.open_env(str(tmp_path / "nowhere"), readonly=True)


def test_schema_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "db"
    Index(str(db)).close()
    env = lmdb.open(str(db), max_dbs=sc.MAX_DBS)
    with env.begin(write=True, db=env.open_db(sc.DB_META)) as txn:
        txn.put(sc.META_SCHEMA, b"99")
    env.close()
    with pytest.raises(SchemaMismatchError, match="schema version 99; this freshd reads version 2"):
        sc.open_env(str(db), readonly=True)
    with pytest.raises(SchemaMismatchError):
        Index(str(db))


needs_boot_id = pytest.mark.skipif(sc.boot_id() is None, reason="no boot id on this system")


def _one_package(index: Index) -> None:
    record = sc.PackageRecord("/p", "p", "/", "clean", None, None, 0, 1, 0)
    index.write(lambda txn: index.put_package(txn, record, None))


@needs_boot_id
def test_a_writer_marks_its_unflushed_commits_with_the_boot(tmp_path: Path) -> None:
    db = tmp_path / "db"
    with Index(str(db)) as index:
        _one_package(index)
        assert (db / sc.UNSYNCED_NAME).read_text().strip() == sc.boot_id()
        assert not sc.torn(str(db))  # this boot's commits: readers read them
    assert not (db / sc.UNSYNCED_NAME).exists()  # flushed at close
    with Index(str(db)) as index:
        assert [r.path for r in index.packages()] == ["/p"]


@needs_boot_id
def test_an_index_a_machine_crash_may_have_torn_is_refused_then_rebuilt(tmp_path: Path) -> None:
    db = tmp_path / "db"
    with Index(str(db)) as index:
        _one_package(index)
    (db / sc.UNSYNCED_NAME).write_text("a-boot-before-the-crash\n")
    assert sc.torn(str(db))
    with pytest.raises(IndexStoreError, match="machine stopped"):
        sc.open_env(str(db), readonly=True)
    with Index(str(db)) as index:  # rebuilt: nothing of the torn file is read
        assert index.packages() == []
        assert (db / sc.UNSYNCED_NAME).read_text().strip() == sc.boot_id()
    reader = sc.open_env(str(db), readonly=True)
    reader.close()


@needs_boot_id
def test_a_writer_killed_in_this_boot_loses_no_commit(tmp_path: Path) -> None:
    """The kernel holds a killed process's commits: the marker names this boot, and the
    next reader and writer keep the index."""
    db = tmp_path / "db"
    code = textwrap.dedent(
        """
        import os, sys
        from freshd.index.writer import Index
        from freshd_client.spec import schema as sc
        index = Index(sys.argv[1])
        record = sc.PackageRecord("/p", "p", "/", "clean", None, None, 0, 1, 0)
        index.write(lambda txn: index.put_package(txn, record, None))
        os._exit(9)  # no close, no flush
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    assert (db / sc.UNSYNCED_NAME).read_text().strip() == sc.boot_id()
    reader = sc.open_env(str(db), readonly=True)
    reader.close()
    with Index(str(db)) as index:
        assert [r.path for r in index.packages()] == ["/p"]


def test_without_a_boot_id_every_commit_is_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sc, "_BOOT", [None])
    db = tmp_path / "db"
    db.mkdir()
    (db / sc.UNSYNCED_NAME).write_text("some-boot\n")  # cannot be told from this one
    with Index(str(db)) as index:
        assert not index._unsynced
        assert not (db / sc.UNSYNCED_NAME).exists()
        _one_package(index)
    with Index(str(db)) as index:
        assert [r.path for r in index.packages()] == ["/p"]


def test_map_grows_when_full(tmp_path: Path) -> None:
    with Index(str(tmp_path / "db"), map_size=64 * 1024) as index:
        start = index.env.info()["map_size"]
        records = [
            FileRecord(f"f{i:05d}.py" + "x" * 200, i, i, i, i, 1, b"f", bytes(32), i)
            for i in range(3000)
        ]
        record = sc.PackageRecord("/p", "p", "/", "clean", None, None, len(records), 1, 0)
        index.write(lambda txn: index.put_package(txn, record, sc.encode_files("/p", records)))
        assert index.env.info()["map_size"] > start
        assert len(index.file_records("/p")) == 3000


def test_long_paths_get_hashed_keys(tmp_path: Path) -> None:
    long_rel = "/".join(["d" * 100] * 6) + "/file.py"
    long_pkg = "/" + "p" * 600
    assert len(sc.path_key(long_pkg)) == 33
    with Index(str(tmp_path / "db")) as index:
        rec = FileRecord(long_rel, 1, 2, 3, 4, 5, b"f", bytes(32), 6)
        package = sc.PackageRecord(long_pkg, None, "/", "clean", None, None, 1, 1, 0)
        index.write(lambda txn: index.put_package(txn, package, sc.encode_files(long_pkg, [rec])))
        assert index.file_records(long_pkg) == {long_rel: rec}
        assert index.package(long_pkg) == package


def test_racily_clean_file_is_rehashed(tmp_path: Path) -> None:
    pkg = _package(tmp_path, "racy", files=1)
    target = pkg / "src" / "racy" / "m0.py"
    st = os.lstat(target)
    wrong = bytes(range(32))  # a digest the content does not have

    def stored(hashed_at: int) -> dict[str, FileRecord]:
        rec = FileRecord(
            "src/racy/m0.py",
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_ino,
            st.st_dev,
            b"f",
            wrong,
            hashed_at,
        )
        return {rec.rel: rec}

    # Hashed in the same tick as the last modification: the stat match proves nothing.
    racy = scan(str(pkg), stored(st.st_mtime_ns + 1))
    assert racy.hashed == 2 and racy.reused == 0
    assert racy.tree == digest_path(str(pkg)).tree
    # Hashed well after the modification: the fast path trusts the stored digest
    # (a wrong one here, which proves the file was not read).
    trusted = scan(str(pkg), stored(st.st_mtime_ns + RACY_WINDOW_NS + 1))
    assert trusted.reused == 1
    assert trusted.tree != digest_path(str(pkg)).tree


def test_any_stat_difference_defeats_the_fast_path(tmp_path: Path) -> None:
    pkg = _package(tmp_path, "stats", files=1)
    st = os.lstat(pkg / "src" / "stats" / "m0.py")
    base = FileRecord(
        "src/stats/m0.py",
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_ino,
        st.st_dev,
        b"f",
        bytes(32),
        st.st_mtime_ns + 10 * RACY_WINDOW_NS,
    )
    assert base.reusable_for(st)
    for field in ("size", "mtime_ns", "ctime_ns", "ino", "dev"):
        changed = base._replace(**{field: getattr(base, field) + 1})
        assert not changed.reusable_for(st), field
    assert not base._replace(kind=b"x").reusable_for(st)


def test_warm_reindex_reuses_and_detects_edits(tmp_path: Path) -> None:
    root = tmp_path / "src"
    pkg = _package(root, "warm", files=5)
    _age(root)
    with Index(str(tmp_path / "db")) as index:
        index_roots(index, [str(root)], workers=1)
        generation = index.package(str(pkg)).generation  # type: ignore[union-attr]
        again = index_roots(index, [str(root)], workers=1)
        assert (again.hashed, again.reused) == (0, 6)
        assert index.package(str(pkg)).generation == generation  # type: ignore[union-attr]
        (pkg / "src" / "warm" / "m3.py").write_text("X = 'changed'\n")
        edited = index_roots(index, [str(root)], workers=1)
        assert (edited.hashed, edited.reused) == (1, 5)
        record = index.package(str(pkg))
        assert record is not None and record.generation > generation
        assert record.tree == digest_path(str(pkg)).tree


def test_removed_package_is_forgotten(tmp_path: Path) -> None:
    root = tmp_path / "src"
    keep, gone = _package(root, "keep"), _package(root, "gone")
    with Index(str(tmp_path / "db")) as index:
        index_roots(index, [str(root)], workers=1)
        (gone / "pyproject.toml").unlink()
        summary = index_roots(index, [str(root)], workers=1)
        assert summary.removed == 1
        assert [r.path for r in index.packages()] == [str(keep)]
        assert index.file_records(str(gone)) == {}


READER = textwrap.dedent(
    """
    import sys, time
    from freshd_client.spec import schema as sc
    env = sc.open_env(sys.argv[1], readonly=True)
    pkgs, files = env.open_db(sc.DB_PACKAGES, create=False), env.open_db(sc.DB_FILES, create=False)
    snapshots = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with env.begin() as txn:
            done = txn.get(b"done", db=env.open_db(sc.DB_META, create=False))
            for _k, raw in txn.cursor(db=pkgs):
                rec = sc.decode_package(raw)
                prefix = sc.files_prefix(rec.path)
                cur = txn.cursor(db=files)
                n = 0
                if cur.set_range(prefix):
                    for key, _v in cur:
                        if key[:16] != prefix:
                            break
                        n += 1
                assert n == rec.files, (rec.path, n, rec.files)
        snapshots += 1
        if done:
            break
    print(snapshots)
    """
)


def test_concurrent_reader_sees_consistent_snapshots(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    with Index(db) as index:
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, db], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for generation in range(1, 201):
            n = generation % 17 + 1
            files = [FileRecord(f"f{i}", i, 0, 0, i, 1, b"f", bytes(32), 0) for i in range(n)]
            record = sc.PackageRecord(
                f"/pkg/{generation % 5}", None, "/pkg", "clean", None, None, n, generation, 0
            )
            index.write(
                lambda txn, r=record, f=files: index.put_package(txn, r, sc.encode_files(r.path, f))
            )
        index.write(lambda txn: txn.put(b"done", b"1", db=index.dbs[sc.DB_META]))
        out, err = reader.communicate(timeout=90)
    assert reader.returncode == 0, err.decode()
    assert int(out) >= 1


def test_rescans_carrying_the_encoded_entries_equal_full_scans(tmp_path: Path) -> None:
    """The daemon's edit path re-encodes only the changed entries of the tree digest
    (``ScanResult.encoded``): after each of 60 random edits, removals, mode changes and
    symlink retargets, the digest equals a from-scratch scan (the oracle)."""
    import random

    from freshd_client.content.scan import rescan_files

    rng = random.Random(20261124)  # noqa: S311 (reproducible by seed, not secret)
    pkg = _package(tmp_path, "enc", files=12)
    src = pkg / "src" / "enc"
    for name in ("é.py", "Z.py", "a b.py", "sub/deep.py"):  # orders by bytes, not by str
        (src / name).parent.mkdir(exist_ok=True)
        (src / name).write_text(name)
    os.symlink("m0.py", src / "link")
    first = scan(str(pkg))
    records = {r.rel: r for r in first.records}
    encoded = None
    for step in range(60):
        rel = rng.choice(sorted(set(records) - {"pyproject.toml"}))  # a rule file: walked
        target = pkg / rel
        action = rng.choice(["write", "write", "chmod", "remove"])
        if action == "remove" and len(records) > 4:
            target.unlink()
        elif target.is_symlink():
            target.unlink()
            os.symlink(f"m{rng.randrange(12)}.py", target)
        elif action == "chmod":
            os.chmod(target, target.stat().st_mode ^ 0o100)
        else:
            target.write_text(f"step {step}\n")
        result = rescan_files(str(pkg), records, {rel}, encoded)
        assert result is not None and result.error is None, (step, rel, action)
        assert result.tree == digest_path(str(pkg), "tree").tree, (step, rel, action)
        records = {r.rel: r for r in result.records}
        encoded = result.encoded
        assert encoded is not None and list(encoded) == sorted(records, key=os.fsencode)


def test_rescanning_named_files_equals_a_full_scan(tmp_path: Path) -> None:
    from freshd_client.content.scan import rescan_files

    pkg = _package(tmp_path, "quick", files=4)
    first = scan(str(pkg))
    known = {r.rel: r for r in first.records}
    src = pkg / "src" / "quick"
    (src / "m0.py").write_text("X = 'edited'\n")  # same inode, new content
    (src / "m1.py").unlink()
    os.chmod(src / "m2.py", 0o700)  # the executable bit is content
    changed = {"src/quick/m0.py", "src/quick/m1.py", "src/quick/m2.py", "src/quick/tmp~"}
    quick = rescan_files(str(pkg), known, changed)  # tmp~ came and went: ignored
    assert quick is not None and quick.error is None
    oracle = digest_path(str(pkg), "tree")
    assert quick.tree == oracle.tree
    assert quick.meta == digest_path(str(pkg), "meta").meta
    assert {r.rel for r in quick.records} == {r.rel for r in oracle.records}
    assert quick.hashed == 2
    # A path new to the file set needs the rules, and the rules need a walk.
    (src / "new.py").write_text("N = 1\n")
    assert rescan_files(str(pkg), known, {"src/quick/new.py"}) is None
    (src / "m3.py").unlink()
    (src / "m3.py").mkdir()
    assert rescan_files(str(pkg), known, {"src/quick/m3.py"}) is None
    # A file that defines the rules (even written through a hard link's other name).
    for rule in ("pyproject.toml", ".gitignore", "src/.gitignore"):
        assert rescan_files(str(pkg), known, {rule}) is None, rule


def test_rescanning_from_kept_records_equals_rescanning_from_stored_ones(tmp_path: Path) -> None:
    """The engine keeps a package's records between targeted rehashes (``known``); they
    stand in for the stored ones only while the stored tree digest is still theirs."""
    from freshd.crawl.indexer import Outcome, rescan_job, store

    root = tmp_path / "root"
    pkg = _package(root, "kept", files=4)
    src = pkg / "src" / "kept"
    path = str(pkg)

    def targeted(index: Index, rel: str, known: dict[str, Any] | None) -> Outcome:
        outcome = rescan_job(index, path, {rel}, known)
        assert outcome is not None and outcome.error is None
        return outcome

    def same(a: Outcome, b: Outcome) -> bool:  # the pairs hold the time of each hash
        return (a.tree, a.meta, a.files, [k for k, _v in a.pairs or []]) == (
            b.tree,
            b.meta,
            b.files,
            [k for k, _v in b.pairs or []],
        )

    with Index(str(tmp_path / "index")) as index:
        by_path = {p.path: p for p in index_roots(index, [str(root)], workers=1).found}
        known: dict[str, Any] = {}
        (src / "m0.py").write_text("X = 'a'\n")
        first = targeted(index, "src/kept/m0.py", known)
        assert known[path][0] == first.tree
        index.write(lambda txn: store(index, txn, by_path, [first]))
        (src / "m1.py").write_text("X = 'b'\n")
        from_stored = targeted(index, "src/kept/m1.py", None)
        from_kept = targeted(index, "src/kept/m1.py", known)
        assert same(from_kept, from_stored)
        assert from_kept.tree == digest_path(path, "tree").tree
        # A whole rescan stores a file the kept records do not have: they are not used.
        (src / "new.py").write_text("N = 1\n")
        index_roots(index, [str(root)], workers=1)
        (src / "m2.py").write_text("X = 'c'\n")
        after = targeted(index, "src/kept/m2.py", known)
        assert same(after, targeted(index, "src/kept/m2.py", None))
        assert after.tree == digest_path(path, "tree").tree
        assert after.meta == digest_path(path, "meta").meta


def test_a_worker_whose_daemon_is_already_gone_exits() -> None:
    """A daemon killed while a hashing worker starts has already left the worker to init:
    the worker must still notice, not wait for init to die."""
    code = (
        "import time\n"
        "from freshd.crawl.indexer import _die_with_parent\n"
        "_die_with_parent(2**22 + 7)  # no process has this pid: the parent is gone\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
    )
    assert (proc.returncode, proc.stderr) == (1, b"")
