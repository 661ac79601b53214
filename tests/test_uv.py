"""The proof with the real installer (issues 6 and 20): uv 0.13 on a generated app +
local library whose pyproject.toml files carry freshd's ``FRESHD_DIGEST_*`` cache keys.

Nothing is mocked: ``uv`` is the binary installed from PyPI next to this interpreter,
the project is built with hatchling from PyPI (downloaded once a session into a shared
uv cache), and ``freshd`` is the console script. Each test starts from its own
``freshd run -- uv sync`` + ``freshd stamp``; the runtime side of a container is
imitated by a tar round trip and a ``chmod -R`` of the project in the same paths (same
content, new inodes and ctimes) and, where it matters, an empty uv cache with
``UV_OFFLINE=1`` (no network, no build backend at hand). Where freshd must behave as
plain uv (the lock, groups, editable flags, errors), both are run and compared.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytest.register_assert_rewrite("uv_project")
from uv_project import (  # noqa: E402
    FRESHD,
    PRINT_VALUE,
    PRINT_VERSION,
    PROCESS_TIMEOUT_S,
    UV,
    Project,
    installer_activity,
    make_project,
)

EDITABLE = pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uv cache for the session: hatchling is downloaded once."""
    return tmp_path_factory.mktemp("uv-cache")


def synced(base: Path, cache: Path, *, editable: bool, keys: bool = True) -> Project:
    """The project under ``base``, installed by ``uv sync`` and stamped by freshd."""
    project = make_project(base, cache, editable=editable, keys=keys)
    project.sync()
    project.stamp()
    return project


@pytest.fixture
def offline(tmp_path: Path) -> dict[str, str]:
    """A container's runtime stage: no network and an empty uv cache."""
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    return {"UV_OFFLINE": "1", "UV_CACHE_DIR": str(empty)}


def cached_artifacts(cache: Path) -> list[str]:
    """What uv put into its cache besides its markers and interpreter info: downloads,
    builds, unpacked wheels."""
    markers = {"CACHEDIR.TAG", ".lock", ".gitignore", ".git"}
    return [
        str(path.relative_to(cache))
        for path in cache.rglob("*")
        if path.is_file()
        and path.name not in markers
        and not path.relative_to(cache).parts[0].startswith("interpreter-")
    ]


@EDITABLE
def test_the_problem_a_tar_round_trip_makes_uv_rebuild(
    tmp_path: Path, uv_cache: Path, offline: dict[str, str], editable: bool
) -> None:
    project = synced(tmp_path, uv_cache, editable=editable, keys=False)
    before = project.run(project.uv_run_argv(PRINT_VALUE))
    assert installer_activity(before.stderr) == [], "a no-op uv run must not reinstall"

    project.tar_round_trip()
    inode = project.dist_info("lib").stat().st_ino
    failed = project.run(project.uv_run_argv(PRINT_VALUE), check=False, **offline)
    assert "Requirement installed, but not fresh: lib==0.1.0" in failed.stderr
    assert failed.returncode != 0, "offline, uv cannot fetch the build backend to rebuild"

    rebuilt = project.run(project.uv_run_argv(PRINT_VALUE))
    assert "Requirement installed, but not fresh: lib==0.1.0" in rebuilt.stderr
    assert "Built lib @ file://" in rebuilt.stderr
    assert "Uninstalled" in rebuilt.stderr and "Installed" in rebuilt.stderr
    assert rebuilt.stdout == "one\n"
    assert project.dist_info("lib").stat().st_ino != inode


@EDITABLE
def test_freshd_run_reinstalls_nothing_after_a_round_trip_offline(
    tmp_path: Path, uv_cache: Path, offline: dict[str, str], editable: bool
) -> None:
    project = synced(tmp_path, uv_cache, editable=editable)
    project.tar_round_trip()
    inodes = {name: project.dist_info(name).stat().st_ino for name in ("app", "lib")}

    check = project.freshd("check", "--venv", project.venv)
    assert check.returncode == 0
    assert "fresh   lib" in check.stdout and "fresh   app" in check.stdout

    ran = project.freshd_run(project.uv_run_argv(PRINT_VALUE), **offline)
    assert ran.stdout == "one\n"
    assert installer_activity(ran.stderr) == []
    assert "Resolved" in ran.stderr  # uv did check the lock and the installs: no UV_NO_SYNC
    assert {name: project.dist_info(name).stat().st_ino for name in inodes} == inodes
    assert cached_artifacts(Path(offline["UV_CACHE_DIR"])) == []


def test_regular_install_source_edit_is_stale_and_freshd_run_runs_the_new_code(
    tmp_path: Path, uv_cache: Path
) -> None:
    project = synced(tmp_path, uv_cache, editable=False)
    project.set_value("two")

    check = project.freshd("check", "--venv", project.venv, check=False)
    assert check.returncode == 1
    [lib_line] = [line for line in check.stdout.splitlines() if " lib " in line]
    assert lib_line.startswith("stale")
    assert "changed src/lib/__init__.py (content)" in lib_line

    ran = project.freshd_run(project.uv_run_argv(PRINT_VALUE))
    assert ran.stdout == "two\n"
    assert "Built lib @ file://" in ran.stderr  # uv rebuilt it: its digest key changed
    assert "Built app" not in ran.stderr
    again = project.freshd_run(project.uv_run_argv(PRINT_VALUE))
    assert again.stdout == "two\n" and installer_activity(again.stderr) == []


def test_plain_uv_misses_a_source_edit_no_cache_key_covers(tmp_path: Path, uv_cache: Path) -> None:
    project = synced(tmp_path, uv_cache, editable=False, keys=False)
    project.set_value("two")
    plain = project.run(project.uv_run_argv(PRINT_VALUE))
    assert plain.stdout == "one\n", "plain uv never notices an edit no cache key covers"
    assert installer_activity(plain.stderr) == []


def test_editable_install_version_change_is_stale_and_freshd_run_reinstalls_it(
    tmp_path: Path, uv_cache: Path
) -> None:
    project = synced(tmp_path, uv_cache, editable=True)
    project.set_version("0.2.0")

    check = project.freshd("check", "--venv", project.venv, check=False)
    assert check.returncode == 1
    [lib_line] = [line for line in check.stdout.splitlines() if " lib " in line]
    assert lib_line.startswith("stale")
    assert "changed pyproject.toml (content)" in lib_line

    ran = project.freshd_run(project.uv_run_argv(PRINT_VERSION))
    assert ran.stdout == "0.2.0\n"
    assert project.dist_info("lib").name == "lib-0.2.0.dist-info"


def test_editable_install_source_edit_stays_fresh_and_runs_the_new_code(
    tmp_path: Path, uv_cache: Path, offline: dict[str, str]
) -> None:
    project = synced(tmp_path, uv_cache, editable=True)
    project.tar_round_trip()
    project.set_value("two")

    check = project.freshd("check", "--venv", project.venv)
    assert check.returncode == 0

    ran = project.freshd_run(project.uv_run_argv(PRINT_VALUE), **offline)
    assert ran.stdout == "two\n"
    assert installer_activity(ran.stderr) == []


@EDITABLE
def test_bytecode_and_ignored_files_make_nothing_stale(
    tmp_path: Path, uv_cache: Path, offline: dict[str, str], editable: bool
) -> None:
    project = synced(tmp_path, uv_cache, editable=editable)
    project.tar_round_trip()
    package = project.lib / "src" / "lib"
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\x00junk")
    (package / "stray.pyc").write_bytes(b"\x00junk")
    (project.lib / "__pycache__").mkdir()
    (project.lib / "debug.log").write_text("ignored by lib/.gitignore\n")

    check = project.freshd("check", "--venv", project.venv)
    assert check.returncode == 0, check.stdout

    ran = project.freshd_run(project.uv_run_argv(PRINT_VALUE), **offline)
    assert ran.stdout == "one\n"
    assert installer_activity(ran.stderr) == []


def test_no_stamp_vouches_for_an_edit_older_than_the_install_from_uvs_wheel_cache(
    tmp_path: Path, uv_cache: Path
) -> None:
    """A source edit that no cache key covers, then a new venv: uv installs the wheel it
    built before the edit from its cache, so the install is newer than the edit but holds
    the old code. freshd must not answer fresh for it (the invariant)."""
    project = make_project(tmp_path, uv_cache, editable=False, keys=False)
    project.sync()
    project.set_value("two")
    shutil.rmtree(project.venv)
    project.sync()
    installed = project.run([project.venv / "bin" / "python", "-c", PRINT_VALUE]).stdout
    assert installed == "one\n", "uv installed its cached wheel, built before the edit"

    project.freshd("stamp", "--venv", project.venv, check=False)
    check = project.freshd("check", "--venv", project.venv, check=False)
    assert check.returncode != 0, (
        f"fresh, but lib runs the code from before the edit:\n{check.stdout}"
    )


def test_with_freshd_keys_uvs_wheel_cache_is_keyed_by_content(
    tmp_path: Path, uv_cache: Path
) -> None:
    """The same edit and new venv as above, through freshd: uv keys its cached wheel by
    the digest, so the new venv gets a wheel built from the edited code."""
    project = make_project(tmp_path, uv_cache, editable=False)
    project.sync()
    project.set_value("two")
    shutil.rmtree(project.venv)
    project.sync()
    installed = project.run([project.venv / "bin" / "python", "-c", PRINT_VALUE]).stdout
    assert installed == "two\n"


PRINT_INICONFIG = "import importlib.metadata as m; print(m.version('iniconfig'))"


@pytest.mark.parametrize("lib_edited", [False, True], ids=["lock-only", "lock-and-lib"])
def test_a_moved_lock_makes_uv_sync(tmp_path: Path, uv_cache: Path, lib_edited: bool) -> None:
    """A pull that upgrades a third-party pin in uv.lock: every local package may be
    fresh, but uv must sync, also when freshd reinstalled a stale local package first."""
    project = make_project(tmp_path, uv_cache, editable=False)
    project.depend_on("iniconfig")
    project.uv("lock", "--upgrade-package", "iniconfig==1.1.1")
    project.sync()
    project.stamp()
    project.uv("lock", "--upgrade-package", "iniconfig")
    if lib_edited:
        project.set_value("two")

    check = project.freshd("check", "--venv", project.venv, check=False)
    assert check.returncode == 1
    assert "uv.lock changed" in check.stdout

    ran = project.freshd_run(project.uv_run_argv(f"{PRINT_VALUE}; {PRINT_INICONFIG}"))
    value, version = ran.stdout.split()
    assert value == ("two" if lib_edited else "one")
    assert version != "1.1.1", "uv.lock moved: uv must have synced the upgrade"


# -- the command's exit code, signals and process ---------------------------------------


@pytest.fixture(scope="module")
def stamped(tmp_path_factory: pytest.TempPathFactory, uv_cache: Path) -> Project:
    """One synced, stamped project for the tests that only run commands through it."""
    return synced(tmp_path_factory.mktemp("stamped"), uv_cache, editable=False)


@pytest.mark.parametrize("through_uv", [False, True], ids=["python", "uv-run"])
def test_freshd_run_passes_the_exit_code_through(stamped: Project, through_uv: bool) -> None:
    python = stamped.venv / "bin" / "python"
    argv: list[str | Path] = [python, "-c", "raise SystemExit(7)"]
    if through_uv:
        argv = [UV, "run", "python", "-c", "raise SystemExit(7)"]
    ran = stamped.freshd_run(argv, check=False)
    assert ran.returncode == 7, ran.stderr


def test_freshd_run_passes_a_signal_through(stamped: Project) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    ran = stamped.freshd_run([stamped.venv / "bin" / "python", "-c", code], check=False)
    assert ran.returncode == -15, ran.stderr


def test_freshd_run_execs_the_command(stamped: Project) -> None:
    code = "import os; print(os.getpid(), os.environ.get('UV_NO_SYNC'))"
    stamped.env.pop("UV_NO_SYNC", None)
    argv = [FRESHD, "run", "--venv", stamped.venv, "--", stamped.venv / "bin" / "python"]
    proc = subprocess.Popen(
        [str(a) for a in [*argv, "-c", code]],
        cwd=stamped.app,
        env=stamped.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=PROCESS_TIMEOUT_S)
    assert proc.returncode == 0
    assert out.split() == [str(proc.pid), "None"]  # uv's own check runs, by content


# -- issue 20: everything but the local packages' rebuild decision is uv's ----------------


def both(project: Project, argv: list[str | Path], **env: str) -> tuple[str, str]:
    """The outcome of ``argv`` run plainly, then through ``freshd run``: the exit code
    and the lines uv printed to stderr from its first error on."""
    plain = project.run(argv, check=False, **env)
    ran = project.freshd("run", "--", *argv, check=False, **env)
    outcomes = []
    for proc in (plain, ran):
        text = proc.stderr
        outcomes.append(f"{proc.returncode} {text[text.find('error:') :]}")
    return outcomes[0], outcomes[1]


def test_locked_with_a_changed_dependency_fails_as_plain_uv(tmp_path: Path, uv_cache: Path) -> None:
    project = synced(tmp_path, uv_cache, editable=False)
    project.set_version("0.1.0", dependencies='"iniconfig"')
    argv: list[str | Path] = [UV, "run", "--locked", "python", "-c", PRINT_VALUE]
    plain, ran = both(project, argv)
    assert plain == ran
    # uv's own exit code (1, or 2 in some releases) and message, whatever they are.
    assert not plain.startswith("0 ") and "needs to be updated" in plain
    probe = "import importlib.util as u; print(bool(u.find_spec('iniconfig')))"
    assert project.run([project.venv / "bin" / "python", "-c", probe]).stdout == "False\n"


def test_a_project_environment_elsewhere_syncs_a_changed_lock(
    tmp_path: Path, uv_cache: Path
) -> None:
    project = make_project(tmp_path, uv_cache, editable=False)
    project.depend_on("iniconfig")
    elsewhere = {"UV_PROJECT_ENVIRONMENT": str(tmp_path / "opt-venv")}
    project.uv("lock", "--upgrade-package", "iniconfig==1.1.1")
    project.freshd("run", "--", UV, "sync", **elsewhere)
    project.uv("lock", "--upgrade-package", "iniconfig")
    ran = project.freshd("run", "--", UV, "run", "python", "-c", PRINT_INICONFIG, **elsewhere)
    assert ran.stdout.strip() != "1.1.1", "uv.lock moved: uv must have synced the upgrade"
    assert not project.venv.exists()
    stamped = project.freshd("stamp", "--venv", elsewhere["UV_PROJECT_ENVIRONMENT"])
    [warning] = stamped.stderr.splitlines()
    assert warning.startswith("warning: no ") and "uv.lock beside this uv venv" in warning


def test_a_dependency_group_is_installed_as_plain_uv_does(tmp_path: Path, uv_cache: Path) -> None:
    project = make_project(tmp_path, uv_cache, editable=False)
    pyproject = project.app / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + '\n[dependency-groups]\ndev = ["iniconfig"]\n')
    project.sync("--no-dev")
    probe = "import importlib.util as u; print(bool(u.find_spec('iniconfig')))"
    without = project.freshd_run([UV, "run", "--no-dev", "python", "-c", probe])
    assert without.stdout == "False\n"
    ran = project.freshd_run([UV, "run", "--group", "dev", "python", "-c", probe])
    assert ran.stdout == "True\n"
    assert installer_activity(ran.stderr) != []  # installed iniconfig, as plain uv does
    assert "Built lib" not in ran.stderr and "Built app" not in ran.stderr


def test_no_editable_rebuilds_only_what_changed_and_keeps_it_regular(
    tmp_path: Path, uv_cache: Path, offline: dict[str, str]
) -> None:
    project = make_project(tmp_path, uv_cache, editable=False)
    project.sync("--no-editable")
    (project.app / "src" / "app" / "__init__.py").write_text("WHO = 'edited'\n")
    code = "import app, lib; print(app.WHO, lib.VALUE)"
    ran = project.freshd_run([UV, "run", "-v", "--no-editable", "python", "-c", code])
    assert ran.stdout == "edited one\n"
    assert "Built app" in ran.stderr and "Built lib" not in ran.stderr
    for name in ("app", "lib"):
        assert '"editable":true' not in (project.dist_info(name) / "direct_url.json").read_text()
    project.tar_round_trip()
    again = project.freshd_run([UV, "run", "-v", "--no-editable", "python", "-c", code], **offline)
    assert again.stdout == "edited one\n"
    assert installer_activity(again.stderr) == []


def test_without_freshd_keys_freshd_run_steps_aside_in_one_line(
    tmp_path: Path, uv_cache: Path
) -> None:
    project = synced(tmp_path, uv_cache, editable=False, keys=False)
    ran = project.freshd_run(project.uv_run_argv(PRINT_VALUE))
    notes = [line for line in ran.stderr.splitlines() if line.startswith("freshd:")]
    assert len(notes) == 1 and "uv decides" in notes[0], ran.stderr
    assert ran.stdout == "one\n"


# -- what a regular (non-editable) install depends on, per build backend ------------------

BACKENDS = {
    "hatchling": ('["hatchling"]', "hatchling.build"),
    "setuptools": ('["setuptools>=61"]', "setuptools.build_meta"),
    "uv_build": ('["uv_build>=0.8,<0.14"]', "uv_build"),
}
NOT_IN_THE_WHEEL = '\n[tool.freshd]\nexclude = ["Dockerfile", "entrypoint.sh", "var/"]\n'


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_files_no_build_reads_are_excluded_and_source_edits_rebuild(
    tmp_path: Path, uv_cache: Path, offline: dict[str, str], backend: str
) -> None:
    """A regular install depends on what its build reads. What it never puts in the
    wheel (a Dockerfile, an entrypoint copied later, files the app writes at run time)
    is left out with [tool.freshd] exclude and rebuilds nothing, with each backend; a
    source edit still rebuilds."""
    project = make_project(tmp_path, uv_cache, editable=False)
    requires, build_backend = BACKENDS[backend]
    pyproject = project.lib / "pyproject.toml"
    text = pyproject.read_text().replace('["hatchling"]', requires)
    text = text.replace('"hatchling.build"', f'"{build_backend}"')
    pyproject.write_text(text + NOT_IN_THE_WHEEL)
    project.sync()
    project.tar_round_trip()
    (project.lib / "Dockerfile").write_text("FROM scratch\n")
    (project.lib / "entrypoint.sh").write_text('#!/bin/sh\nexec "$@"\n')
    (project.lib / "var").mkdir()
    (project.lib / "var" / "runtime.db").write_bytes(b"written by the app")

    untouched = project.freshd_run(project.uv_run_argv(PRINT_VALUE), **offline)
    assert untouched.stdout == "one\n", untouched.stderr
    assert installer_activity(untouched.stderr) == []

    project.set_value("two")
    edited = project.freshd_run(project.uv_run_argv(PRINT_VALUE))
    assert edited.stdout == "two\n", edited.stderr
    assert "Built lib" in edited.stderr


def test_a_command_other_than_uv_in_a_uv_venv_is_not_reinstalled_behind_the_lock(
    stamped: Project,
) -> None:
    """A final image without uv, or an entrypoint that runs python directly: a stale
    package is not reinstalled with pip behind uv's lock; freshd says what to do."""
    stamped.set_value("changed")
    try:
        python = stamped.venv / "bin" / "python"
        ran = stamped.freshd_run([python, "-c", PRINT_VALUE], check=False)
    finally:
        stamped.set_value("one")
    assert ran.returncode == 1 and ran.stdout == ""
    [line] = ran.stderr.strip().splitlines()[-1:]
    assert line.startswith("Error: lib changed since") and "freshd run -- uv run" in line
