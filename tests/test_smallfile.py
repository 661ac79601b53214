"""``smallfile.write_atomic``: the one way freshd replaces a file (stamps and caches)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from freshd_client.content.smallfile import write_atomic


@pytest.mark.parametrize("durable", [False, True])
def test_a_file_is_replaced_whole_and_no_temporary_stays(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "f.json"
    target.write_bytes(b"old")
    write_atomic(str(target), b"new", durable=durable)
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_bytes(b"old")
    (tmp_path / "f.json.d").mkdir()
    with pytest.raises(OSError):
        write_atomic(str(tmp_path / "f.json.d"), b"new")  # a directory is not replaced
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["f.json", "f.json.d"]


def test_an_interrupted_write_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(str(tmp_path / "f"), b"new", durable=True)
    assert os.listdir(tmp_path) == []


def test_a_private_file_is_private_from_its_first_byte(tmp_path: Path) -> None:
    target = tmp_path / "marker"
    write_atomic(str(target), b"boot\n", durable=True, mode=0o600)
    assert (target.read_bytes(), target.stat().st_mode & 0o777) == (b"boot\n", 0o600)
