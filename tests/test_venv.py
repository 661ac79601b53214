"""Local installs of a venv (``freshd_client.venvs.venv``) and their stamps (``…venvs.stamps``).

Most venvs here are fakes written by the test (``pyvenv.cfg``, a site-packages, a
``.dist-info`` with METADATA, RECORD and a PEP 610 ``direct_url.json``), so each case
states exactly what an installer left; one module-scoped venv is made by
``python -m venv`` and the real pip. The CLI verbs run in-process through
``freshd.cli.main``; no daemon runs (``FRESHD_HOME``/``FRESHD_SOCKET`` point at nothing),
so every answer is computed one-shot. The real uv is in tests/test_uv.py.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from freshd.cli import main
from freshd_client.venvs import stamps
from freshd_client.venvs.stamps import exit_code, read_stamps, stamp, verify
from freshd_client.venvs.venv import (
    VenvError,
    file_url_path,
    local_installs,
    read_install,
    venv_dir,
)

SITE = "lib/python3.11/site-packages"
TREE_DIGEST = re.compile(r"b3t2:[0-9a-f]{64}")
META_DIGEST = re.compile(r"b3m2:[0-9a-f]{64}")
CTIME_DEADLINE_S = 5.0


@pytest.fixture(autouse=True)
def no_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No daemon, no index: every freshness answer is computed one-shot."""
    monkeypatch.setenv("FRESHD_HOME", str(tmp_path / "no-home"))
    monkeypatch.setenv("FRESHD_SOCKET", str(tmp_path / "no-home" / "freshd.sock"))
    monkeypatch.delenv("FRESHD_INDEX", raising=False)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)


# -- fake venvs --------------------------------------------------------------------------


def fake_venv(path: Path) -> Path:
    """An empty venv: pyvenv.cfg and a site-packages."""
    (path / SITE).mkdir(parents=True)
    (path / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7\n")
    return path


def add_dist(
    venv: Path,
    name: str,
    version: str,
    direct_url: object,
    *,
    metadata: str | None = None,
    record: list[str] | None = None,
) -> Path:
    """A .dist-info for ``name``: METADATA, RECORD, then ``direct_url.json`` (a str is
    written as is, None writes none), last, as installers write it."""
    dist_info = venv / SITE / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    if metadata is None:
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA description.\n"
    (dist_info / "METADATA").write_text(metadata)
    write_record(dist_info, record or [f"{name.replace('-', '_')}/__init__.py,sha256=aaa,10"])
    if direct_url is not None:
        text = direct_url if isinstance(direct_url, str) else json.dumps(direct_url)
        (dist_info / "direct_url.json").write_text(text)
    return dist_info


def write_record(dist_info: Path, lines: list[str], installer: str = "uv") -> None:
    """RECORD: ``lines`` plus the installer's bookkeeping files of this dist-info."""
    own = dist_info.name
    bookkeeping = [
        f"{own}/METADATA,sha256=mmm,40",
        f"{own}/INSTALLER,sha256={installer},{len(installer)}",
        f"{own}/direct_url.json,sha256={installer}dd,60",
        f"{own}/RECORD,,",
    ]
    (dist_info / "RECORD").write_text("\n".join([*lines, *bookkeeping]) + "\n")


def installed_line(source: Path, installed_path: str, from_rel: str) -> str:
    """A RECORD line for ``installed_path``, a true copy of ``source/from_rel``."""
    data = (source / from_rel).read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{installed_path},sha256={digest},{len(data)}"


def install(venv: Path, source: Path, *, editable: bool = False) -> Path:
    """Record ``source`` (the conftest demo package) as installed in ``venv``, its
    RECORD listing a true copy of ``src/demo/__init__.py``."""
    url = {"url": source.as_uri(), "dir_info": {"editable": True} if editable else {}}
    line = installed_line(source, "demo/__init__.py", "src/demo/__init__.py")
    return add_dist(venv, "demo-pkg", "0.1.0", url, record=[line])


def edit_after(path: Path, content: str, reference: Path) -> None:
    """Rewrite ``path`` until its ctime is later than ``reference``'s (file timestamps
    tick with the kernel's coarse clock, so one write may land in the same tick)."""
    deadline = time.monotonic() + CTIME_DEADLINE_S
    while True:
        path.write_text(content)
        if path.stat().st_ctime_ns > reference.stat().st_ctime_ns:
            return
        assert time.monotonic() < deadline, "the ctime never moved past the reference"


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    return fake_venv(tmp_path / "venv")


@pytest.fixture
def installed(venv: Path, pkg: Path) -> Path:
    """``venv`` with the demo package installed (regular) from ``pkg``."""
    install(venv, pkg)
    return venv


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """``freshd ARGV`` in-process: exit code, stdout, stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def only_error_line(err: str) -> str:
    """The single ``Error: …`` line of ``err`` (one line, no traceback)."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: "), err
    return lines[0]


# -- finding local installs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file:///srv/lib", "/srv/lib"),
        ("file:///srv/my%20lib/caf%C3%A9", "/srv/my lib/café"),
        ("file://localhost/srv/lib", "/srv/lib"),
        ("file:///srv/app/../lib/", "/srv/lib"),
        ("file:///srv/%FF", "/srv/" + b"\xff".decode("utf-8", "surrogateescape")),
        ("file://buildhost/srv/lib", None),
        ("file:relative/lib", None),
        ("https://example.com/lib", None),
        ("git+https://github.com/o/lib", None),
    ],
)
def test_file_url_path(url: str, path: str | None) -> None:
    assert file_url_path(url) == path


def test_local_installs_finds_directory_installs_only(venv: Path, tmp_path: Path) -> None:
    src = tmp_path / "my src"
    add_dist(venv, "regular", "1.0", {"url": src.as_uri() + "/regular", "dir_info": {}})
    add_dist(venv, "edit-me", "2.0", {"url": src.as_uri() + "/e", "dir_info": {"editable": True}})
    add_dist(
        venv, "not-edit", "3.0", {"url": "file://localhost/x/n", "dir_info": {"editable": False}}
    )
    add_dist(
        venv,
        "from-git",
        "1.0",
        {"url": "https://github.com/o/r", "vcs_info": {"vcs": "git", "commit_id": "ab" * 20}},
    )
    add_dist(
        venv,
        "from-wheel",
        "1.0",
        {"url": (tmp_path / "w-1.0-py3-none-any.whl").as_uri(), "archive_info": {}},
    )
    add_dist(venv, "from-index", "1.0", None)
    found = {i.name: i for i in local_installs(str(venv))}
    assert sorted(found) == ["edit-me", "not-edit", "regular"]
    assert found["regular"].source == str(src / "regular")
    assert (found["regular"].editable, found["regular"].scope) == (False, "tree")
    assert (found["edit-me"].editable, found["edit-me"].scope) == (True, "meta")
    assert (found["not-edit"].source, found["not-edit"].editable) == ("/x/n", False)
    assert found["edit-me"].dist_info == str(venv / SITE / "edit_me-2.0.dist-info")


def test_editable_must_be_true_not_truthy(venv: Path) -> None:
    dist = add_dist(venv, "odd", "1.0", {"url": "file:///x", "dir_info": {"editable": "yes"}})
    install = read_install(str(dist))
    assert install is not None and install.editable is False


def test_name_and_version_come_from_metadata(venv: Path) -> None:
    metadata = "Metadata-Version: 2.1\nName: Foo_Bar.baz\nVersion: 1.0.post1\n\nName: not-me\n"
    dist = add_dist(venv, "foo-bar-baz", "1.0.post1", {"url": "file:///x", "dir_info": {}})
    (dist / "METADATA").write_text(metadata)
    install = read_install(str(dist))
    assert install is not None
    assert (install.name, install.version) == ("foo-bar-baz", "1.0.post1")


def test_name_and_version_from_the_directory_without_metadata(venv: Path) -> None:
    dist = add_dist(venv, "Some.Thing", "4.2", {"url": "file:///x", "dir_info": {}})
    (dist / "METADATA").unlink()
    install = read_install(str(dist))
    assert install is not None
    assert (install.name, install.version) == ("some-thing", "4.2")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "", '"a string"'])
def test_malformed_direct_url_is_a_one_line_error_naming_the_file(
    venv: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    dist = add_dist(venv, "broken", "1.0", text)
    with pytest.raises(VenvError) as info:
        local_installs(str(venv))
    message = str(info.value)
    assert "\n" not in message
    assert str(dist / "direct_url.json") in message

    code, _out, err = cli(capsys, "check", "--venv", venv)
    assert code == 2
    assert str(dist / "direct_url.json") in only_error_line(err)


def test_venv_dir_needs_pyvenv_cfg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain"
    (plain / SITE).mkdir(parents=True)
    with pytest.raises(VenvError, match=r"no pyvenv\.cfg"):
        venv_dir(str(plain))
    with pytest.raises(VenvError, match="no such virtual environment"):
        venv_dir(str(tmp_path / "missing"))

    code, _out, err = cli(capsys, "check", "--venv", plain)
    assert code == 2
    assert "no pyvenv.cfg" in only_error_line(err)
    code, _out, err = cli(capsys, "stamp", "--venv", plain)
    assert code == 1
    assert "no pyvenv.cfg" in only_error_line(err)


def test_venv_dir_defaults_to_virtual_env(venv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))
    assert venv_dir(None) == str(venv)
    monkeypatch.delenv("VIRTUAL_ENV")
    monkeypatch.chdir(venv.parent)
    venv.rename(venv.parent / ".venv")
    assert venv_dir(None) == str(venv.parent / ".venv")


# -- a venv made by python -m venv and the real pip --------------------------------------

PIP_PYPROJECT = """\
[project]
name = "{name}"
version = "0.2.0"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""


@pytest.fixture(scope="module")
def pip_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """``python -m venv`` with ``pip install ./plain_lib -e ./edit_lib`` (hatchling, PyPI)."""
    base = tmp_path_factory.mktemp("pip")
    sources = []
    for name in ("plain_lib", "edit_lib"):
        package = base / name / "src" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("VALUE = 1\n")
        (base / name / "pyproject.toml").write_text(PIP_PYPROJECT.format(name=name))
        sources.append(base / name)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, sources[0], "-e", sources[1]], check=True, timeout=300)
    yield venv, sources[0], sources[1]


def test_pip_made_venv_installs_are_found(pip_venv: tuple[Path, Path, Path]) -> None:
    venv, plain, editable = pip_venv
    found = {i.name: i for i in local_installs(venv_dir(str(venv)))}
    assert sorted(found) == ["edit-lib", "plain-lib"]
    assert (found["plain-lib"].source, found["plain-lib"].scope) == (str(plain), "tree")
    assert (found["edit-lib"].source, found["edit-lib"].scope) == (str(editable), "meta")
    assert found["plain-lib"].version == "0.2.0"


def test_pip_made_venv_stamps_and_checks(
    pip_venv: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    venv, plain, _editable = pip_venv
    # --force: the run tests below reinstall plain_lib, so its files may predate the stamp
    assert cli(capsys, "stamp", "--venv", venv, "--force")[0] == 0
    assert cli(capsys, "check", "--venv", venv)[0] == 0
    init = plain / "src" / "plain_lib" / "__init__.py"
    original = init.read_text()
    init.write_text("VALUE = 2\n")
    try:
        code, out, _err = cli(capsys, "check", "--venv", venv)
    finally:
        init.write_text(original)
    assert code == 1
    assert "changed src/plain_lib/__init__.py (content)" in out


def pip_run(venv: Path, plain: Path, value: str) -> subprocess.CompletedProcess[str]:
    """Stamp, edit plain_lib to ``VALUE = value``, then ``freshd run`` a print of it."""
    freshd = Path(sys.executable).parent / "freshd"
    subprocess.run([freshd, "stamp", "--venv", venv, "--force"], check=True, capture_output=True)
    (plain / "src" / "plain_lib" / "__init__.py").write_text(f"VALUE = {value!r}\n")
    code = "import plain_lib; print(plain_lib.VALUE)"
    argv = [freshd, "run", "--venv", venv, "--", venv / "bin" / "python", "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def test_freshd_run_reinstalls_a_stale_pip_install(
    pip_venv: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    venv, plain, _editable = pip_venv
    ran = pip_run(venv, plain, "reinstalled")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == "reinstalled"
    assert "plain-lib changed (changed src/plain_lib/__init__.py (content))" in ran.stderr
    assert cli(capsys, "check", "--venv", venv)[0] == 0


def test_freshd_run_keeps_the_installers_output_off_the_commands_stdout(
    pip_venv: tuple[Path, Path, Path],
) -> None:
    """The command's stdout is its own (``freshd run -- app export > out.json``): pip's
    progress lines of the reinstall belong on stderr."""
    venv, plain, _editable = pip_venv
    ran = pip_run(venv, plain, "quiet")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "quiet\n"


# -- stamps ------------------------------------------------------------------------------


def test_stamp_then_check_is_fresh(installed: Path, pkg: Path) -> None:
    written, problems = stamp(str(installed))
    assert problems == []
    assert [(r["name"], r["scope"], r["source"]) for r in written] == [
        ("demo-pkg", "tree", str(pkg))
    ]
    verdicts = verify(str(installed))[0]
    assert [(v.name, v.state, v.by) for v in verdicts] == [("demo-pkg", "fresh", "one-shot")]
    assert exit_code(verdicts) == 0


def test_an_edit_is_stale_and_names_the_file(
    installed: Path, pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamp(str(installed))
    (pkg / "src" / "demo" / "core.py").write_text("def answer():\n    return 43\n")
    [verdict] = verify(str(installed))[0]
    assert verdict.state == "stale"
    assert verdict.changes == ["changed src/demo/core.py (content)"]

    code, out, _err = cli(capsys, "check", "--venv", installed)
    assert code == 1
    assert out.startswith("stale   demo-pkg")
    assert "changed src/demo/core.py (content)" in out


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: (p / "src/demo/extra.py").write_text("X = 1\n"), "added src/demo/extra.py"),
        (lambda p: (p / "README.md").unlink(), "removed README.md"),
        (lambda p: (p / "src/demo/core.py").chmod(0o755), "changed src/demo/core.py (mode)"),
    ],
    ids=["added", "removed", "mode"],
)
def test_other_changes_are_named(
    installed: Path, pkg: Path, change: Callable[[Path], object], expected: str
) -> None:
    stamp(str(installed))
    change(pkg)
    [verdict] = verify(str(installed))[0]
    assert (verdict.state, verdict.changes) == ("stale", [expected])


@pytest.mark.parametrize(
    "junk",
    [
        "src/demo/__pycache__/core.cpython-311.pyc",
        "src/demo/stale.pyc",
        "__pycache__/x.py",
        "debug.log",  # the package's .gitignore says *.log
        "build/lib/demo/core.py",
    ],
)
def test_bytecode_caches_and_ignored_files_stay_fresh(
    installed: Path, pkg: Path, junk: str
) -> None:
    stamp(str(installed))
    path = pkg / junk
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00not source")
    [verdict] = verify(str(installed))[0]
    assert verdict.state == "fresh"


def test_editable_install_tracks_build_inputs_only(venv: Path, pkg: Path) -> None:
    install(venv, pkg, editable=True)
    [record], _ = stamp(str(venv))
    assert record["scope"] == "meta" and META_DIGEST.fullmatch(record["digest"])
    (pkg / "src" / "demo" / "core.py").write_text("def answer():\n    return 43\n")
    assert [v.state for v in verify(str(venv))[0]] == ["fresh"]
    (pkg / "pyproject.toml").write_text('[project]\nname = "Demo_Pkg"\nversion = "0.2.0"\n')
    [verdict] = verify(str(venv))[0]
    assert verdict.state == "stale"
    assert verdict.changes == ["changed pyproject.toml (content)"]


def test_a_file_changed_after_the_install_is_not_stamped_without_force(
    installed: Path, pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    direct_url = installed / SITE / "demo_pkg-0.1.0.dist-info" / "direct_url.json"
    edit_after(pkg / "src" / "demo" / "core.py", "def answer():\n    return 43\n", direct_url)

    code, out, err = cli(capsys, "stamp", "--venv", installed)
    assert code == 1
    assert out == ""
    [line] = err.splitlines()
    assert "demo-pkg" in line and "src/demo/core.py changed after it was installed" in line
    assert read_stamps(str(installed)) == {}
    assert cli(capsys, "check", "--venv", installed)[0] == 2  # not stamped: unknown

    code, out, err = cli(capsys, "stamp", "--venv", installed, "--force")
    assert (code, err) == (0, "")
    assert out.startswith("stamped demo-pkg  tree  b3t2:")
    assert cli(capsys, "check", "--venv", installed)[0] == 0


def test_a_reinstall_with_other_files_is_unknown(installed: Path, pkg: Path) -> None:
    stamp(str(installed))
    dist_info = installed / SITE / "demo_pkg-0.1.0.dist-info"
    line = installed_line(pkg, "demo/__init__.py", "src/demo/__init__.py")
    write_record(dist_info, [line, "demo/new.py,sha256=b,2"])
    [verdict] = verify(str(installed))[0]
    assert verdict.state == "unknown"
    assert "reinstalled since it was stamped" in verdict.reason
    assert exit_code([verdict]) == 2


def test_the_same_build_installed_again_stays_fresh(installed: Path, pkg: Path) -> None:
    """Another installer run writes other bookkeeping (INSTALLER, its hashes): the
    identity of the install leaves it out."""
    stamp(str(installed))
    dist_info = installed / SITE / "demo_pkg-0.1.0.dist-info"
    line = installed_line(pkg, "demo/__init__.py", "src/demo/__init__.py")
    write_record(dist_info, [line], installer="pip")
    (dist_info / "INSTALLER").write_text("pip\n")
    assert [v.state for v in verify(str(installed))[0]] == ["fresh"]


def test_an_unstamped_install_is_unknown(installed: Path, tmp_path: Path) -> None:
    stamp(str(installed))
    other = tmp_path / "other"
    (other / "src").mkdir(parents=True)
    (other / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "1"\n')
    add_dist(installed, "other", "1", {"url": other.as_uri(), "dir_info": {}})
    states = {v.name: (v.state, v.reason) for v in verify(str(installed))[0]}
    assert states["demo-pkg"] == ("fresh", "")
    assert states["other"] == ("unknown", "not stamped (run: freshd stamp)")


def test_stale_wins_over_unknown_in_the_exit_code(
    installed: Path, pkg: Path, tmp_path: Path
) -> None:
    stamp(str(installed))
    add_dist(installed, "other", "1", {"url": (tmp_path / "gone").as_uri(), "dir_info": {}})
    (pkg / "README.md").write_text("changed\n")
    verdicts = verify(str(installed))[0]
    assert sorted(v.state for v in verdicts) == ["stale", "unknown"]
    assert exit_code(verdicts) == 1


def test_json_shapes(installed: Path, pkg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = cli(capsys, "stamp", "--venv", installed, "--json")
    assert code == 0
    stamped = json.loads(out)
    assert {"venv", "stamped", "problems"} <= stamped.keys()
    assert stamped["venv"] == str(installed) and stamped["problems"] == []
    [record] = stamped["stamped"]
    assert {
        "name",
        "version",
        "source",
        "editable",
        "scope",
        "digest",
        "dist_info",
        "install",
    } <= record.keys()
    assert (record["name"], record["version"], record["editable"]) == ("demo-pkg", "0.1.0", False)
    assert TREE_DIGEST.fullmatch(record["digest"])
    assert record["dist_info"] == f"{SITE}/demo_pkg-0.1.0.dist-info"

    code, out, _err = cli(capsys, "check", "--venv", installed, "--json")
    answer = json.loads(out)
    assert (code, answer["fresh"]) == (0, True)
    [package] = answer["packages"]
    assert {"name", "source", "editable", "scope", "state", "reason", "by", "changes"} <= set(
        package
    )
    assert (package["name"], package["state"], package["changes"]) == ("demo-pkg", "fresh", [])

    (pkg / "README.md").write_text("changed\n")
    code, out, _err = cli(capsys, "check", "--venv", installed, "--json")
    answer = json.loads(out)
    assert (code, answer["fresh"]) == (1, False)
    assert answer["packages"][0]["state"] == "stale"
    assert answer["packages"][0]["changes"] == ["changed README.md (content)"]


def test_no_stamps_is_exit_2(installed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = cli(capsys, "check", "--venv", installed)
    assert code == 2
    assert out.startswith("unknown demo-pkg") and "freshd stamp" in out


def test_nothing_to_check_is_a_one_line_error(
    venv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = cli(capsys, "check", "--venv", venv)
    assert code == 2
    assert "no stamps and no local installs" in only_error_line(err)


@pytest.mark.parametrize(
    "garbage",
    [
        b"{",
        b"\xff\xfe",
        b"[]",
        b'{"format": 99, "packages": []}',
        b'{"format": 1, "packages": []}',  # digests of format 1: never compared
        b'{"format": 2, "packages": 3}',
        b'{"format": 2, "packages": [], "lockfile": "x"}',
    ],
    ids=["truncated", "binary", "list", "format", "old-format", "packages", "lockfile"],
)
def test_garbage_stamps_are_exit_2_with_one_line(
    installed: Path, capsys: pytest.CaptureFixture[str], garbage: bytes
) -> None:
    stamp(str(installed))
    path = installed / ".freshd" / "stamps.json"
    path.write_bytes(garbage)
    code, out, err = cli(capsys, "check", "--venv", installed)
    assert (code, out) == (2, "")
    line = only_error_line(err)
    assert str(path) in line and "stamp again" in line


def test_a_lock_that_moved_is_still_reported_after_a_partial_restamp(
    installed: Path, pkg: Path
) -> None:
    """``freshd run`` restamps only the packages it reinstalled; the lock change seen
    before must not be forgotten by that (uv would never sync it)."""
    lock = installed.parent / "uv.lock"  # uv's layout: the lock beside the project's .venv
    lock.write_text("version = 1\n# iniconfig 1.1.1\n")
    stamp(str(installed))
    assert verify(str(installed))[1] is None
    lock.write_text("version = 1\n# iniconfig 2.0.0\n")
    (pkg / "README.md").write_text("changed\n")
    _written, problems = stamp(str(installed), names=["demo-pkg"], force=True)
    assert problems == []
    assert verify(str(installed))[1] is not None


def test_a_venv_moved_away_from_its_lock_says_that_it_moved(
    installed: Path, tmp_path: Path
) -> None:
    """A venv copied elsewhere (``COPY --from=build /app/.venv /opt/venv``) is not next to
    the lock it was stamped with any more: the message says it moved, not that the lock,
    which still exists, was removed."""
    lock = installed.parent / "uv.lock"
    lock.write_text("version = 1\n")
    stamp(str(installed))
    moved = tmp_path / "elsewhere" / "venv"
    moved.parent.mkdir()
    shutil.copytree(installed, moved, symlinks=True)
    why = verify(str(moved))[1]
    assert why is not None and "moved" in why and "removed" not in why
    assert str(lock) in why


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_full_disk_leaves_the_old_stamps_whole(
    installed: Path, pkg: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    stamp(str(installed))
    directory = installed / ".freshd"
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    (pkg / "README.md").write_text("changed\n")

    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch, pytest.raises(VenvError) as info:
        patch.setattr(stamps.os, failing, no_space)
        stamp(str(installed), force=True)
    assert "\n" not in str(info.value) and "No space left on device" in str(info.value)
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before
    [verdict] = verify(str(installed))[0]  # the old stamp still answers, by content
    assert verdict.state == "stale"


def test_no_stamp_for_a_source_that_differs_from_its_installed_copy(
    installed: Path, pkg: Path
) -> None:
    """An installer may install a wheel it built before an edit (uv reuses its cached
    build while no cache key changed): the install is newer than the edit, but RECORD
    shows the installed copy is the old content."""
    (pkg / "src/demo/__init__.py").write_text("VALUE = 'edited before the install'\n")
    dist_info = installed / SITE / "demo_pkg-0.1.0.dist-info"
    direct_url = dist_info / "direct_url.json"
    edit_after(direct_url, direct_url.read_text(), pkg / "src/demo/__init__.py")

    written, problems = stamp(str(installed))
    assert written == []
    assert problems == [
        "demo-pkg: src/demo/__init__.py differs from the installed copy; reinstall it, "
        "then stamp again (or stamp with --force if the install matches)"
    ]
    assert read_stamps(str(installed)) == {}
    assert stamp(str(installed), force=True)[1] == []


# -- the project rules memo in the manifests ----------------------------------------------


PROJECTS = [
    '[project]\nname = "Demo_Pkg"\nversion = "0.1.0"\n',
    '[project]\nname = "x"\n[tool.uv]\ncache-keys = ["a.txt", {file = "b/*.py"}, {dir = "src"},'
    " {git = {commit = true, tags = true}}, {env = 'FOO'}]\n",
    '[project]\nname = "x"\n[tool.freshd]\ninclude = ["build/keep"]\nexclude = ["*.md"]\n',
    '[tool.uv.workspace]\nmembers = ["libs/*"]\nexclude = ["libs/old"]\n',
    "",
]


@pytest.mark.parametrize("text", PROJECTS, ids=range(len(PROJECTS)))
def test_a_project_read_from_its_memo_equals_one_parsed(tmp_path: Path, text: str) -> None:
    from freshd_client.content.project import load_project, read_project

    (tmp_path / "pyproject.toml").write_text(text)
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = from-cfg\n")
    parsed, memo = load_project(str(tmp_path))
    assert parsed == read_project(str(tmp_path))
    again, same = load_project(str(tmp_path), json.loads(json.dumps(memo)))
    assert again == parsed
    assert same["inputs"] == memo["inputs"]


def test_a_memo_is_used_only_for_the_bytes_it_was_made_from(tmp_path: Path) -> None:
    from freshd_client.content.project import load_project

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "one"\n')
    _, memo = load_project(str(tmp_path))
    lying = {"inputs": memo["inputs"], "rules": {**memo["rules"], "name": "two"}}
    assert load_project(str(tmp_path), lying)[0].name == "two"  # the memo answered
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = other\n")  # setup.cfg counts too
    assert load_project(str(tmp_path), lying)[0].name == "one"
    (tmp_path / "setup.cfg").unlink()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "one" \n')
    assert load_project(str(tmp_path), lying)[0].name == "one"


def test_read_project_answers_from_the_bytes_it_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read_project`` keeps parsed projects by the bytes of pyproject.toml and setup.cfg:
    any change to either is parsed again, and the kept ones stay bounded."""
    from freshd_client.content import project as pj

    monkeypatch.setattr(pj, "_PARSED", {})
    monkeypatch.setattr(pj, "_PARSED_MAX", 3)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "one"\n')
    first = pj.read_project(str(tmp_path))
    assert first.name == "one" and pj.read_project(str(tmp_path)) is first
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "two"\n')
    assert pj.read_project(str(tmp_path)).name == "two"
    (tmp_path / "pyproject.toml").write_text('[project]\nversion = "1"\n')
    assert pj.read_project(str(tmp_path)).name is None
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = From_Cfg\n")
    assert pj.read_project(str(tmp_path)).name == "from-cfg"
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = other\n")
    assert pj.read_project(str(tmp_path)).name == "other"
    (tmp_path / "setup.cfg").unlink()
    assert pj.read_project(str(tmp_path)).name is None
    assert len(pj._PARSED) == 3
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(pj.ProjectFileError):
        pj.read_project(str(tmp_path))


@pytest.mark.parametrize(
    "rules",
    [None, [], {}, {"name": "x"}, "rules", {"cache_keys": 3}],
)
def test_a_malformed_memo_is_parsed_around(tmp_path: Path, rules: object) -> None:
    from freshd_client.content.project import load_project

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "one"\n')
    _, memo = load_project(str(tmp_path))
    project, fresh_memo = load_project(str(tmp_path), {"inputs": memo["inputs"], "rules": rules})
    assert project.name == "one" and fresh_memo == memo
    broken = {**memo["rules"], "include": "not a list"}
    assert load_project(str(tmp_path), {"inputs": memo["inputs"], "rules": broken})[0].include == ()


def test_new_cache_keys_are_read_although_the_memo_names_the_old_ones(
    venv: Path, pkg: Path
) -> None:
    """The keys do not cover pyproject.toml, so its edit shows only through the rules it
    holds: a check that trusted the stamped rules would hash the old key and say fresh."""
    (pkg / "a.txt").write_text("a\n")
    (pkg / "b.txt").write_text("b\n")
    (pkg / "pyproject.toml").write_text(
        '[project]\nname = "demo-pkg"\n[tool.uv]\ncache-keys = ["a.txt"]\n'
    )
    install(venv, pkg, editable=True)
    assert stamp(str(venv))[1] == []
    manifest = json.loads((venv / ".freshd" / "manifests" / "demo-pkg.json").read_text())
    assert manifest["project"]["rules"]["cache_keys"] == [["a.txt", None, False, False, None]]
    assert [v.state for v in verify(str(venv))[0]] == ["fresh"]
    (pkg / "pyproject.toml").write_text(
        '[project]\nname = "demo-pkg"\n[tool.uv]\ncache-keys = ["b.txt"]\n'
    )
    [verdict] = verify(str(venv))[0]
    assert verdict.state == "stale"
    assert verdict.changes == ["added b.txt", "removed a.txt"]


@pytest.mark.parametrize("verb", ["stamp", "check", "run"])
def test_an_empty_venv_names_none(
    capsys: pytest.CaptureFixture[str], venv: Path, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    """``--venv ""`` (an unset ``"$VENV"``) is refused, never taken as ``$VIRTUAL_ENV``."""
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))
    argv = [verb, "--venv", ""] + (["--", "true"] if verb == "run" else [])
    code, out, err = cli(capsys, *argv)
    assert (code, out) == (2 if verb == "check" else 1, "")  # check: 2 is "unknown or error"
    assert only_error_line(err) == "Error: an empty path names no directory"
