"""``freshd run -- uv …``'s variables (client/freshd_client/uvkeys.py, uvcache.py), in-process.

The real uv runs in tests/test_uv.py; here the same decisions are checked directly on
small projects: which packages get which digest, what a lock or its absence says, and
that the stat cache never hands out a digest for content that changed since.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from freshd_client import identity, uvcache, uvkeys
from freshd_client.errors import FreshdError
from freshd_client.oneshot import digest_path


def package(path: Path, name: str, *, key: str | None = None, extra: str = "") -> Path:
    (path / "src" / name).mkdir(parents=True)
    (path / "src" / name / "__init__.py").write_text("VALUE = 1\n")
    keys = f'\n[tool.uv]\ncache-keys = [{{ env = "{key}" }}]\n' if key else ""
    (path / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.1.0"\n{extra}{keys}'
    )
    return path


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A locked project ``app`` (editable) with a directory dependency ``lib``."""
    root = package(tmp_path / "ws", "app", key="FRESHD_DIGEST_APP")
    package(root / "libs" / "lib", "lib", key="FRESHD_DIGEST_LIB")
    (root / "uv.lock").write_text(
        'version = 1\n\n[[package]]\nname = "app"\nversion = "0.1.0"\n'
        'source = { editable = "." }\n\n[[package]]\nname = "lib"\nversion = "0.1.0"\n'
        'source = { directory = "libs/lib" }\n'
    )
    (root / ".venv").mkdir()
    (root / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\nuv = 0.13.10\n")
    monkeypatch.chdir(root)
    return root


def values(*args: str, **env: str) -> tuple[dict[str, str], list[str]]:
    return uvkeys.digest_env(["uv", *args], None, {**env})


def test_the_lock_decides_the_scope_and_no_editable_overrides_it(workspace: Path) -> None:
    found, notes = values("run", "python")
    assert notes == []
    assert found["FRESHD_DIGEST_APP"] == digest_path(str(workspace), "meta").meta
    lib = str(workspace / "libs" / "lib")
    assert found["FRESHD_DIGEST_LIB"] == digest_path(lib, "tree").tree
    regular, _ = values("run", "--no-editable", "python")
    assert regular["FRESHD_DIGEST_APP"] == digest_path(str(workspace), "tree").tree
    assert values("run", UV_NO_EDITABLE="1")[0] == regular


def test_without_a_lock_the_declared_sources_are_filled(workspace: Path) -> None:
    (workspace / "uv.lock").unlink()
    pyproject = workspace / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text() + '\n[tool.uv.sources]\nlib = { path = "libs/lib" }\n'
    )
    found, _ = values("sync")
    assert set(found) == {"FRESHD_DIGEST_APP", "FRESHD_DIGEST_LIB"}


def test_a_project_without_keys_steps_aside_in_one_line(tmp_path: Path) -> None:
    root = package(tmp_path / "plain", "plain")
    found, notes = uvkeys.digest_env(["uv", "run", "--directory", str(root)], None, {})
    assert found == {}
    [note] = notes
    assert "uv decides by its own timestamps" in note


def test_a_shared_variable_holds_every_digest(workspace: Path) -> None:
    lib = workspace / "libs" / "lib" / "pyproject.toml"
    lib.write_text(lib.read_text().replace("FRESHD_DIGEST_LIB", "FRESHD_DIGEST_APP"))
    found, _ = values("run")
    assert list(found) == ["FRESHD_DIGEST_APP"]
    assert len(found["FRESHD_DIGEST_APP"].split()) == 2


def test_an_unreadable_package_gets_a_value_no_install_recorded(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Root reads any file, so the scanner's error is scripted.)"""

    def unreadable(*_args: object, **_kwargs: object) -> None:
        raise FreshdError("src/lib/__init__.py: Permission denied")

    monkeypatch.setattr("freshd_client.scan.scan", unreadable)
    first, notes = values("run")
    second, _ = values("run")
    assert first["FRESHD_DIGEST_LIB"].startswith("unverified:")
    assert first["FRESHD_DIGEST_LIB"] != second["FRESHD_DIGEST_LIB"]
    assert any("Permission denied; uv rebuilds it" in n for n in notes)


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written just now count as settled (the tests cannot wait 2 s each)."""
    monkeypatch.setattr(identity, "RACY_WINDOW_NS", 0)


@pytest.mark.usefixtures("no_racy_window")
def test_the_cache_answers_while_nothing_changed_and_misses_any_change(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = values("run")
    assert (workspace / ".venv" / ".freshd" / uvcache.CACHE_FILE).is_file()

    def no_scan(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("hashed although nothing changed")

    with monkeypatch.context() as m:
        m.setattr("freshd_client.scan.scan", no_scan)
        assert values("run")[0] == first

    lib = workspace / "libs" / "lib"
    (lib / "src" / "lib" / "__init__.py").write_text("VALUE = 2\n")
    edited, _ = values("run")
    assert edited["FRESHD_DIGEST_LIB"] == digest_path(str(lib), "tree").tree
    assert edited["FRESHD_DIGEST_LIB"] != first["FRESHD_DIGEST_LIB"]

    (lib / "src" / "lib" / "new.py").write_text("")
    added, _ = values("run")
    assert added["FRESHD_DIGEST_LIB"] == digest_path(str(lib), "tree").tree
    assert added["FRESHD_DIGEST_LIB"] != edited["FRESHD_DIGEST_LIB"]

    pyproject = lib / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("FRESHD_DIGEST_LIB", "FRESHD_DIGEST_X"))
    renamed, _ = values("run")
    assert "FRESHD_DIGEST_X" in renamed and "FRESHD_DIGEST_LIB" not in renamed


@pytest.mark.usefixtures("no_racy_window")
def test_a_changed_lock_is_read_again(workspace: Path) -> None:
    assert "FRESHD_DIGEST_LIB" in values("run")[0]
    lock = workspace / "uv.lock"
    lock.write_text(lock.read_text().replace('source = { directory = "libs/lib" }', ""))
    assert "FRESHD_DIGEST_LIB" not in values("run")[0]


def test_a_cache_file_that_is_garbage_is_an_empty_cache(workspace: Path) -> None:
    first, _ = values("run")
    cache = workspace / ".venv" / ".freshd" / uvcache.CACHE_FILE
    cache.write_bytes(b"\x00not json")
    assert values("run")[0] == first


def test_a_copied_lock_with_the_same_bytes_is_not_parsed_again(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = values("run")
    lock = workspace / "uv.lock"
    raw = lock.read_bytes()
    lock.unlink()
    lock.write_bytes(raw)  # a new inode and ctime, as after a COPY

    def no_parse(*_args: object) -> None:
        raise AssertionError("parsed a lock whose bytes the cache knows")

    monkeypatch.setattr(uvkeys, "_toml", no_parse)
    assert values("run")[0] == first


@pytest.mark.usefixtures("no_racy_window")
def test_an_untouched_start_answers_from_the_plain_text_verdict(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = values("run")
    assert (workspace / ".venv" / ".freshd" / uvcache.VERDICT_FILE).is_file()

    def no_json(*_args: object) -> None:
        raise AssertionError("read the JSON cache although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(uvcache.DigestCache, "_load", no_json)
        assert values("run")[0] == first
    assert values("run", "--no-editable")[0] != first  # another context: computed
    (workspace / "libs" / "lib" / "src" / "lib" / "__init__.py").write_text("VALUE = 3\n")
    assert values("run")[0] != first


def test_before_a_lock_the_workspace_members_are_those_discovery_finds(tmp_path: Path) -> None:
    """One expansion of ``[tool.uv.workspace]``: ``freshd run`` globbed the members itself,
    taking the root's own ``[`` as a pattern and ignoring ``exclude``."""
    from conftest import make_tree
    from freshd_client.discovery import discover

    workspace = (
        '[project]\nname = "ws"\n[tool.uv.workspace]\n'
        'members = ["libs/*"]\nexclude = ["libs/skip"]\n'
    )
    root = make_tree(
        tmp_path / "ws[1]",
        {
            "pyproject.toml": workspace,
            "libs/a/pyproject.toml": '[project]\nname = "a"\n',
            "libs/skip/pyproject.toml": '[project]\nname = "skip"\n',
        },
    )
    found = uvkeys.local_packages(str(root), str(root / ".venv"), uvcache.DigestCache(None))
    assert found == {str(root): True, str(root / "libs" / "a"): True}
    members = {p.path for p in discover(str(root)).packages if p.workspace == str(root)}
    assert members == {p for p in found if p != str(root)}
