"""The stat cache of ``freshd check`` (``freshd_client.venvs.verified``), against an oracle.

Every case stamps a package, lets a from-scratch check fill the cache, proves the next
check answers from it, changes something, and then requires the verdict to equal a
digest recomputed from scratch (``digest_path``): a change to anything the digest rests
on must miss the cache, and a miss must still give the exact answer.

The racy window is set to 0 here, so that files written by the test may be cached at
once; each change is then repeated until the file's ctime has moved past its cached
value (a coarse-clock tick), so an unchanged stat never hides a change in these tests.
``test_just_written_files_are_not_cached`` keeps the real window.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from freshd_client.content.oneshot import digest_path
from freshd_client.spec import identity
from freshd_client.spec.identity import RACY_WINDOW_NS
from freshd_client.venvs import quick, verified
from freshd_client.venvs.stamps import STAMP_DIR, read_stamps, stamp, verify
from test_venv import SITE, add_dist, install, no_daemon  # noqa: F401 - the autouse fixture
from test_venv import venv as venv  # the fixture, re-exported

DEADLINE_S = 5.0


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "RACY_WINDOW_NS", 0)


def oracle_state(venv: Path, name: str = "demo-pkg") -> str:
    record = (read_stamps(str(venv)) or {})[name]
    result = digest_path(record["source"], record["scope"])
    now = result.tree if record["scope"] == "tree" else result.meta
    return "fresh" if now == record["digest"] else "stale"


def answer(venv: Path) -> tuple[str, str]:
    [verdict] = verify(str(venv))[0]
    return verdict.state, verdict.by


def cached(venv: Path) -> dict[str, object]:
    return verified.load(str(venv))


def moved_past(path: Path, change: Callable[[], None]) -> None:
    """Apply ``change`` (again) until ``path``'s ctime differs from before it."""
    before = path.lstat().st_ctime_ns if path.exists() or path.is_symlink() else None
    deadline = time.monotonic() + DEADLINE_S
    while True:
        change()
        try:
            after: int | None = path.lstat().st_ctime_ns
        except FileNotFoundError:
            after = None
        if after != before:
            return
        assert time.monotonic() < deadline, f"the ctime of {path} never moved"


@pytest.fixture
def warm(venv: Path, pkg: Path, no_racy_window: None) -> Path:
    """A regular install of the demo package, stamped, its verdict in the stat cache."""
    install(venv, pkg)
    assert stamp(str(venv))[1] == []
    assert answer(venv) == ("fresh", "one-shot")
    assert "demo-pkg" in cached(venv)
    assert answer(venv) == ("fresh", "stat cache")
    return venv


def _rewrite_same_size(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[::-1] if data[::-1] != data else data.upper())


CHANGES: dict[str, tuple[str, Callable[[Path], None]]] = {
    # name: (path whose ctime must move, the change); paths relative to the package
    "same-size content": ("src/demo/core.py", lambda p: _rewrite_same_size(p)),
    "append": ("src/demo/core.py", lambda p: p.write_text(p.read_text() + "# more\n")),
    "identical rewrite": ("src/demo/core.py", lambda p: p.write_bytes(p.read_bytes())),
    "chmod +x": ("src/demo/core.py", lambda p: p.chmod(0o755)),
    "touch": ("src/demo/core.py", lambda p: os.utime(p)),
    "new file": ("src/demo", lambda p: (p / "new.py").write_text("x = 1\n")),
    "new directory": ("src/demo", lambda p: (p / "sub").mkdir(exist_ok=True)),
    "removed file": ("src/demo", lambda p: (p / "core.py").unlink(missing_ok=True)),
    "renamed file": ("src/demo", lambda p: _rename(p / "core.py", p / "kern.py")),
    "new symlink": ("src", lambda p: _symlink(p / "alias", "demo")),
    "ignored file": ("src/demo", lambda p: (p / "debug.log").write_text("log\n")),
    "new .gitignore": ("src", lambda p: (p / ".gitignore").write_text("core.py\n")),
    "pyproject exclude": (
        "pyproject.toml",
        lambda p: p.write_text(p.read_text() + '\n[tool.freshd]\nexclude = ["README.md"]\n'),
    ),
}


def _rename(a: Path, b: Path) -> None:
    if a.exists():
        a.rename(b)


def _symlink(link: Path, target: str) -> None:
    if not link.is_symlink():
        link.symlink_to(target)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_misses_the_cache_and_the_answer_is_exact(
    warm: Path, pkg: Path, change: str
) -> None:
    rel, apply = CHANGES[change]
    target = pkg / rel
    moved_past(target, lambda: apply(target))
    state, by = answer(warm)
    assert by == "one-shot", f"{change}: answered from a stale cache entry"
    assert state == oracle_state(warm), change


def test_a_gitignore_that_excludes_itself_is_part_of_the_cache(
    venv: Path, pkg: Path, no_racy_window: None
) -> None:
    """Rewritten in place, such a file changes the file set while no directory and no
    member of the set changes."""
    rules = pkg / "src" / ".gitignore"
    rules.write_text(".gitignore\nnotes.txt\n")
    (pkg / "src" / "notes.txt").write_text("notes\n")
    install(venv, pkg)
    assert stamp(str(venv))[1] == []
    assert answer(venv) == ("fresh", "one-shot")
    assert answer(venv) == ("fresh", "stat cache")
    moved_past(rules, lambda: rules.write_text(".gitignore\n"))  # notes.txt joins the set
    assert answer(venv) == ("stale", "one-shot") and oracle_state(venv) == "stale"


def test_the_cache_is_refilled_after_a_miss(warm: Path, pkg: Path) -> None:
    core = pkg / "src/demo/core.py"
    original = core.read_bytes()
    moved_past(core, lambda: core.write_bytes(b"changed = True\n"))
    assert answer(warm) == ("stale", "one-shot")
    assert "demo-pkg" not in cached(warm)  # a stale verdict removes the entry
    moved_past(core, lambda: core.write_bytes(original))
    assert answer(warm) == ("fresh", "one-shot")
    assert answer(warm) == ("fresh", "stat cache")


def test_a_reinstall_does_not_use_the_old_entry(warm: Path) -> None:
    record = warm / "lib/python3.11/site-packages/demo_pkg-0.1.0.dist-info/RECORD"
    record.write_text(record.read_text() + "demo/extra.py,sha256=x,1\n")
    [verdict] = verify(str(warm))[0]
    assert verdict.state == "unknown"
    assert verdict.by == ""


def test_a_moved_source_does_not_use_the_old_entry(warm: Path, pkg: Path, tmp_path: Path) -> None:
    """The entry names its source: the same digest elsewhere is not the same package."""
    entries = cached(warm)
    entry = dict(entries["demo-pkg"])  # type: ignore[call-overload]
    entry["source"] = str(tmp_path / "elsewhere")
    assert not verified.still_fresh(entry, str(pkg), entry["digest"], entry["install"])


def test_just_written_files_are_not_cached(venv: Path, pkg: Path) -> None:
    """With the real racy window, a package written a moment ago is hashed every time:
    a write in the same clock tick as the hash would not change the stat."""
    install(venv, pkg)
    assert stamp(str(venv))[1] == []
    assert answer(venv) == ("fresh", "one-shot")
    newest = max(max(p.lstat().st_mtime_ns, p.lstat().st_ctime_ns) for p in pkg.rglob("*"))
    if time.time_ns() - newest < RACY_WINDOW_NS:
        assert "demo-pkg" not in cached(venv)
        assert answer(venv)[1] == "one-shot"


def test_editable_installs_cache_their_build_inputs(
    venv: Path, pkg: Path, no_racy_window: None
) -> None:
    install(venv, pkg, editable=True)
    assert stamp(str(venv))[1] == []
    assert answer(venv) == ("fresh", "one-shot")
    assert answer(venv) == ("fresh", "stat cache")
    core = pkg / "src/demo/core.py"
    moved_past(core, lambda: core.write_text("def answer():\n    return 43\n"))
    assert answer(venv) == ("fresh", "stat cache")  # a source edit is live in an editable
    pyproject = pkg / "pyproject.toml"
    moved_past(pyproject, lambda: pyproject.write_text(pyproject.read_text() + "# v2\n"))
    assert answer(venv) == ("stale", "one-shot")
    assert oracle_state(venv) == "stale"


def test_editable_cache_notices_src_and_a_new_setup_py(
    venv: Path, pkg: Path, no_racy_window: None
) -> None:
    install(venv, pkg, editable=True)
    assert stamp(str(venv))[1] == []
    verify(str(venv))[0]
    assert answer(venv) == ("fresh", "stat cache")
    (pkg / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    assert answer(venv) == ("stale", "one-shot")
    (pkg / "setup.py").unlink()
    verify(str(venv))[0]
    assert answer(venv) == ("fresh", "stat cache")
    shutil.rmtree(pkg / "src")
    assert answer(venv) == ("stale", "one-shot")
    assert oracle_state(venv) == "stale"


def test_git_cache_keys_are_never_cached(venv: Path, pkg: Path, no_racy_window: None) -> None:
    pyproject = pkg / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text() + '\n[tool.uv]\ncache-keys = [{ file = "pyproject.toml" }, '
        "{ git = { commit = true } }]\n"
    )
    install(venv, pkg, editable=True)
    assert stamp(str(venv))[1] == []
    assert answer(venv) == ("fresh", "one-shot")
    assert cached(venv) == {}
    assert answer(venv) == ("fresh", "one-shot")


@pytest.mark.parametrize("garbage", ["{", "[]", '{"format": 1, "packages": []}', '{"format": 9}'])
def test_a_garbled_cache_is_ignored_and_replaced(warm: Path, garbage: str) -> None:
    quick.forget(str(warm))  # the per-package cache is what is tested here
    path = warm / STAMP_DIR / verified.VERIFIED_FILE
    path.write_text(garbage)
    assert answer(warm) == ("fresh", "one-shot")
    assert json.loads(path.read_text())["format"] == verified.FORMAT
    assert answer(warm) == ("fresh", "stat cache")


def test_a_garbled_entry_is_a_miss(warm: Path) -> None:
    path = warm / STAMP_DIR / verified.VERIFIED_FILE
    data = json.loads(path.read_text())
    data["packages"]["demo-pkg"]["paths"] = [["src", "not an identity"], 7]
    path.write_text(json.dumps(data))
    quick.forget(str(warm))
    assert answer(warm) == ("fresh", "one-shot")


def test_an_unwritable_cache_costs_speed_not_answers(
    venv: Path, pkg: Path, no_racy_window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(venv, pkg)
    assert stamp(str(venv))[1] == []

    def no_space(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(verified.os, "replace", no_space)
    assert answer(venv) == ("fresh", "one-shot")
    assert answer(venv) == ("fresh", "one-shot")
    assert not list((venv / STAMP_DIR).glob("*.tmp*"))


# -- the whole-venv verdict (freshd_client.venvs.quick) ------------------------------------------


def test_an_untouched_venv_is_answered_from_the_verdict_file(warm: Path) -> None:
    assert quick.load(str(warm)) == [("demo-pkg", str(warm.parent / "demo"), False)]
    (warm / STAMP_DIR / verified.VERIFIED_FILE).unlink()  # the verdict alone answers
    assert answer(warm) == ("fresh", "stat cache")


def oracle_verdicts(venv: Path) -> tuple[list[tuple[str, str]], str | None]:
    """The check from scratch: both caches removed first."""
    for name in (verified.VERIFIED_FILE, quick.VERDICT_FILE):
        (venv / STAMP_DIR / name).unlink(missing_ok=True)
    verdicts, moved = verify(str(venv))
    return [(v.name, v.state) for v in verdicts], moved


def _dist_info(venv: Path) -> Path:
    return venv / SITE / "demo_pkg-0.1.0.dist-info"


VENV_CHANGES: dict[str, tuple[str, Callable[[Path], object]]] = {
    # name: (path, relative to the venv, whose ctime must move; the change)
    "stamped again": (f"{STAMP_DIR}/stamps.json", lambda v: stamp(str(v))),
    "uv.lock appears": ("../uv.lock", lambda v: (v.parent / "uv.lock").write_text("version = 1\n")),
    "another local install": (
        SITE,
        lambda v: add_dist(v, "other", "1.0", {"url": v.parent.as_uri(), "dir_info": {}}),
    ),
    "a registry install": (SITE, lambda v: add_dist(v, "idna", "3.7", None)),
    "direct_url.json rewritten": (
        f"{SITE}/demo_pkg-0.1.0.dist-info/direct_url.json",
        lambda v: (_dist_info(v) / "direct_url.json").write_text(
            json.dumps({"url": (v.parent / "demo").as_uri(), "dir_info": {"editable": True}})
        ),
    ),
    "RECORD rewritten": (
        f"{SITE}/demo_pkg-0.1.0.dist-info/RECORD",
        lambda v: (_dist_info(v) / "RECORD").write_text(
            (_dist_info(v) / "RECORD").read_text() + "demo/x.py,sha256=x,1\n"
        ),
    ),
    "METADATA renames it": (
        f"{SITE}/demo_pkg-0.1.0.dist-info/METADATA",
        lambda v: (_dist_info(v) / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: renamed\nVersion: 0.1.0\n\n"
        ),
    ),
    "a file added to the dist-info": (
        f"{SITE}/demo_pkg-0.1.0.dist-info",
        lambda v: (_dist_info(v) / "REQUESTED").write_text(""),
    ),
    "a second site-packages": (
        "lib",
        lambda v: (v / "lib" / "python3.12" / "site-packages").mkdir(parents=True, exist_ok=True),
    ),
}


@pytest.mark.parametrize("change", sorted(VENV_CHANGES))
def test_a_change_to_the_venv_misses_the_verdict_and_the_answer_is_exact(
    warm: Path, change: str
) -> None:
    """What the check reads besides the packages (stamps, install records, the lock,
    the site-packages listing) is part of what the verdict rests on."""
    assert quick.load(str(warm)) is not None
    rel, apply = VENV_CHANGES[change]
    target = (warm / rel).resolve()
    moved_past(target, lambda: apply(warm))
    assert quick.load(str(warm)) is None, f"{change}: the old verdict would still answer"
    verdicts, moved = verify(str(warm))
    assert ([(v.name, v.state) for v in verdicts], moved) == oracle_verdicts(warm), change


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_package_change_misses_the_verdict(warm: Path, pkg: Path, change: str) -> None:
    assert quick.load(str(warm)) is not None
    rel, apply = CHANGES[change]
    target = pkg / rel
    moved_past(target, lambda: apply(target))
    assert quick.load(str(warm)) is None, change


@pytest.mark.parametrize(
    "garbage",
    ["", "freshd-verdict 1\n", "freshd-verdict 9\nV 61 62 0\n", "freshd-verdict 2\nP zz -\n"],
)
def test_a_garbled_verdict_file_is_a_miss(warm: Path, garbage: str) -> None:
    (warm / STAMP_DIR / quick.VERDICT_FILE).write_text(garbage)
    assert quick.load(str(warm)) is None
    assert answer(warm) == ("fresh", "stat cache")  # the per-package cache answers
    assert quick.load(str(warm)) is not None  # and the verdict is written again


def test_no_verdict_is_kept_for_a_stale_or_unknown_venv(warm: Path, pkg: Path) -> None:
    core = pkg / "src/demo/core.py"
    moved_past(core, lambda: core.write_text("changed = 1\n"))
    assert answer(warm) == ("stale", "one-shot")
    assert not (warm / STAMP_DIR / quick.VERDICT_FILE).exists()


def test_just_verified_files_keep_no_verdict(venv: Path, pkg: Path) -> None:
    """With the real racy window, nothing written a moment ago is vouched for."""
    install(venv, pkg)
    assert stamp(str(venv))[1] == []
    verify(str(venv))[0]
    stamps_file = venv / STAMP_DIR / "stamps.json"
    if time.time_ns() - stamps_file.lstat().st_ctime_ns < RACY_WINDOW_NS:
        assert quick.load(str(venv)) is None
