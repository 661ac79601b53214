"""``identity``: the stat identity and the racy rule behind every stat cache, once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from freshd_client.content.scan import _record as record_of  # the scanner's own record builder
from freshd_client.content.scan import hash_path
from freshd_client.spec import identity
from freshd_client.spec.identity import (
    RACY_WINDOW_NS,
    holds,
    is_link,
    lstat_identity,
    path_line,
    path_line_holds,
    racy,
)


def test_an_identity_is_what_a_digest_sees_of_a_stat(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    st = os.lstat(f)
    assert identity.identity(st) == [
        3,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_ino,
        st.st_dev,
        stat.S_IFREG,
    ]
    f.chmod(0o755)
    assert lstat_identity(str(f))[5] == stat.S_IFREG | stat.S_IXUSR  # type: ignore[index]
    d = tmp_path / "d"
    d.mkdir()
    assert lstat_identity(str(d))[0] == 0  # type: ignore[index]  # a directory's size: no
    assert lstat_identity(str(tmp_path / "missing")) is None
    assert lstat_identity(str(f / "below-a-file")) is None


def test_one_link_test_for_stats_and_identities(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("x")
    os.symlink("target", tmp_path / "link")
    link, target = os.lstat(tmp_path / "link"), os.lstat(tmp_path / "target")
    assert is_link(link) and is_link(identity.identity(link))
    assert not is_link(target) and not is_link(identity.identity(target)) and not is_link(None)


@pytest.mark.parametrize(
    ("mtime", "ctime", "expected"),
    [(-1, -1, False), (0, -1, True), (-1, 0, True), (RACY_WINDOW_NS, -RACY_WINDOW_NS, True)],
)
def test_the_racy_rule_counts_both_timestamps(mtime: int, ctime: int, expected: bool) -> None:
    started = 10 * RACY_WINDOW_NS
    ident = [1, started - RACY_WINDOW_NS + mtime, started - RACY_WINDOW_NS + ctime, 1, 1, 0]
    assert racy([None, ident], started) is expected


def test_the_racy_window_is_read_where_it_is_defined(monkeypatch: pytest.MonkeyPatch) -> None:
    ident = [1, 99, 99, 1, 1, 0]
    assert racy([ident], 100)
    monkeypatch.setattr(identity, "RACY_WINDOW_NS", 0)
    assert not racy([ident], 100)


def test_a_file_record_is_reused_only_when_its_ctime_is_old_too(tmp_path: Path) -> None:
    """``tar``/``cp -a`` give a file just written an old mtime: its record was reused by
    mtime alone, while a rewrite in the same clock tick keeps every field of its stat."""
    f = tmp_path / "f.py"
    f.write_text("x = 1\n")
    os.utime(f, ns=(10**18, 10**18))  # 2001: as a tar extraction leaves it
    hashed = hash_path(str(f), os.lstat(f))
    assert hashed is not None
    st, digest = hashed
    just_after = record_of("f.py", st, digest, st.st_ctime_ns + 1)
    assert not just_after.reusable_for(st)
    later = record_of("f.py", st, digest, st.st_ctime_ns + RACY_WINDOW_NS + 1)
    assert later.reusable_for(st)


def test_holds_checks_every_path_and_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    a = lstat_identity(str(tmp_path / "a"))
    assert holds([("a", a), ("gone", None)], str(tmp_path))
    assert not holds([("a", a), ("gone", a)], str(tmp_path))
    assert not holds([("a", None)], str(tmp_path))
    assert not holds([("a",)], str(tmp_path))  # type: ignore[list-item]  # malformed
    assert not holds(5, str(tmp_path))  # type: ignore[arg-type]


def test_a_path_line_reads_back(tmp_path: Path) -> None:
    name = os.fsencode(str(tmp_path)) + b"/\xff name"  # not UTF-8, with a space
    with open(name, "wb") as f:
        f.write(b"x")
    for path, ident in ((name, lstat_identity(name)), (str(tmp_path / "absent"), None)):
        tag, *fields = path_line(path, ident).split(" ")
        assert tag == "P" and path_line_holds(fields)
    tag, *fields = path_line(name, None).split(" ")
    assert not path_line_holds(fields)
    for malformed in ([name.hex()], [name.hex(), "1", "2"], [name.hex(), *"123456x"]):
        with pytest.raises(ValueError):
            path_line_holds(malformed)
