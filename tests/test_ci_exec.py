"""``freshd affected`` and ``freshd exec`` with a directory store: two agents, two
checkouts at different absolute paths (issue 23, items 2-4 and 6)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from ci_repo import FRESHD, PACKAGES, PATHS, PROCESS_TIMEOUT_S, Agent, make_mono, write, write_lock

# The task: print who runs, write an output (a "wheel", an executable script and a nested
# file) whose bytes depend on the package's content, and its environment.
TASK = (
    'echo "building $FRESHD_PACKAGE"; mkdir -p dist/sub; '
    "cat pyproject.toml > dist/$FRESHD_PACKAGE.whl; "
    "printf '\\000\\377' >> dist/$FRESHD_PACKAGE.whl; "
    'printf "#!/bin/sh\\n" > dist/run.sh; chmod +x dist/run.sh; '
    'printf "%s|%s|%s" "$FRESHD_PACKAGE" "$FRESHD_PACKAGE_DIR" "$FRESHD_CLOSURE" > dist/sub/env.txt'
)


def exec_task(
    agent: Agent, store: Path, *extra: str, check: bool = True, task: str = "build", cmd: str = TASK
) -> subprocess.CompletedProcess[str]:
    return agent.freshd(
        "exec", "--task", task, "--store", f"file://{store}", "--outputs", "dist/**",
        *extra, "--", "sh", "-c", cmd, check=check,
    )  # fmt: skip


def affected(agent: Agent, store: Path, task: str = "build") -> list[str]:
    answer = agent.freshd("affected", "--task", task, "--store", f"file://{store}", "--json")
    return [p["name"] for p in json.loads(answer.stdout)["affected"]]


def outputs(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file below the packages' dist/ directories: bytes and executable bit."""
    found = {}
    for name in PACKAGES:
        dist = root / PATHS[name] / "dist"
        for path in sorted(dist.rglob("*")) if dist.exists() else []:
            if path.is_file():
                rel = str(path.relative_to(root))
                found[rel] = (path.read_bytes(), bool(path.stat().st_mode & 0o100))
    return found


@pytest.fixture
def agents(tmp_path: Path) -> tuple[Agent, Agent, Path]:
    """Agent A and agent B (a copy of A's checkout elsewhere) and their shared store."""
    a = make_mono(tmp_path / "agent-a" / "mono")
    b = tmp_path / "work" / "b" / "checkout"
    shutil.copytree(a, b)
    return Agent(a, tmp_path / "pa"), Agent(b, tmp_path / "pb"), tmp_path / "store"


def test_agent_b_replays_what_agent_a_ran(agents: tuple[Agent, Agent, Path]) -> None:
    a, b, store = agents
    assert affected(a, store) == ["core", "other", "util", "web"]
    ran = exec_task(a, store)
    assert a.statuses(ran.stderr) == dict.fromkeys(PACKAGES, "ran")
    assert ran.stdout.count("building ") == 4
    assert affected(a, store) == [] and affected(b, store) == []

    replayed = exec_task(b, store)
    assert b.statuses(replayed.stderr) == dict.fromkeys(PACKAGES, "replayed")
    assert replayed.stdout == ran.stdout  # the stored logs, printed in dependency order
    produced, restored = outputs(a.root), outputs(b.root)
    assert restored == produced  # byte for byte, with the executable bit
    assert len(produced) == 12
    assert restored["apps/web/dist/run.sh"][1] is True
    # the environment the task saw: A's checkout and A's closure
    env = restored["apps/web/dist/sub/env.txt"][0].decode().split("|")
    graph = json.loads(b.freshd("graph", "--json").stdout)
    closure = {p["name"]: p["closure"] for p in graph["packages"]}
    assert env == ["web", str(a.root / "apps/web"), closure["web"]]


def test_an_edit_reruns_exactly_the_package_and_its_dependents(
    agents: tuple[Agent, Agent, Path],
) -> None:
    a, b, store = agents
    exec_task(a, store)
    write(b.root / "libs/util/src/util/extra.py", "X = 1\n")
    assert affected(b, store) == ["util", "web"]
    again = exec_task(b, store)
    expected = {"core": "replayed", "other": "replayed", "util": "ran", "web": "ran"}
    assert b.statuses(again.stderr) == expected


def test_a_lock_change_reruns_exactly_the_packages_whose_pins_changed(
    agents: tuple[Agent, Agent, Path],
) -> None:
    a, b, store = agents
    exec_task(a, store)
    write_lock(b.root, requests="2.33.0")
    assert affected(b, store) == ["other", "web"]
    again = exec_task(b, store)
    expected = {"core": "replayed", "util": "replayed", "other": "ran", "web": "ran"}
    assert b.statuses(again.stderr) == expected


def test_a_failure_is_never_recorded_and_its_dependents_are_skipped(
    agents: tuple[Agent, Agent, Path],
) -> None:
    a, b, store = agents
    fail_util = '[ "$FRESHD_PACKAGE" != util ] || { echo "util broke"; exit 3; }; ' + TASK
    done = exec_task(a, store, check=False, cmd=fail_util)
    assert done.returncode == 1
    statuses = a.statuses(done.stderr)
    assert statuses == {"core": "ran", "other": "ran", "util": "failed", "web": "skipped"}
    assert "util broke" in done.stdout
    assert "util: failed (exit 3)" in done.stderr
    assert affected(b, store) == ["util", "web"]
    again = exec_task(b, store)
    expected = {"core": "replayed", "other": "replayed", "util": "ran", "web": "ran"}
    assert b.statuses(again.stderr) == expected


def test_jobs_keep_dependency_order(tmp_path: Path, agents: tuple[Agent, Agent, Path]) -> None:
    a, _b, store = agents
    trace = tmp_path / "trace"
    cmd = (
        f'echo "start $FRESHD_PACKAGE" >> {trace}; sleep 0.2; echo "end $FRESHD_PACKAGE" >> {trace}'
    )
    exec_task(a, store, "--jobs", "3", cmd=cmd)
    lines = trace.read_text().splitlines()
    at = {line: i for i, line in enumerate(lines)}
    assert len(lines) == 8
    for name, deps in {"util": ["core"], "web": ["core", "util"]}.items():
        assert all(at[f"end {dep}"] < at[f"start {name}"] for dep in deps)
    # core and other have no dependencies between them: with 3 jobs both start at once
    assert at["start other"] < at["end core"] and at["start core"] < at["end other"]


def test_no_cache_ignores_the_store(agents: tuple[Agent, Agent, Path]) -> None:
    a, b, store = agents
    exec_task(a, store)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    done = exec_task(b, store, "--no-cache")
    assert b.statuses(done.stderr) == dict.fromkeys(PACKAGES, "ran")
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_two_agents_finishing_the_same_work_leave_one_whole_record(
    agents: tuple[Agent, Agent, Path],
) -> None:
    a, b, store = agents
    argv = [FRESHD, "exec", "--task", "build", "--store", f"file://{store}"]
    argv += ["--outputs", "dist/**", "--jobs", "2", "--", "sh", "-c", TASK]
    procs = [
        subprocess.Popen(
            argv, cwd=agent.root, env=agent.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for agent in (a, b)
    ]
    for proc in procs:
        assert proc.wait(timeout=PROCESS_TIMEOUT_S) == 0
        proc.communicate()
    records = sorted((store / "records" / "build").iterdir())
    assert len(records) == 4
    assert not list(store.rglob(".put-*"))  # no temporary file left
    c = Agent(a.root, a.root.parent / "pc")
    shutil.rmtree(a.root / "apps/web/dist")
    assert c.statuses(exec_task(c, store).stderr) == dict.fromkeys(PACKAGES, "replayed")
    assert (a.root / "apps/web/dist/web.whl").exists()


def test_an_unusable_store_is_a_miss_with_one_warning(
    tmp_path: Path, agents: tuple[Agent, Agent, Path]
) -> None:
    a, _b, _store = agents
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    done = exec_task(a, blocker / "store")
    assert a.statuses(done.stderr) == dict.fromkeys(PACKAGES, "ran")
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "running without the store" in warnings[0]
    assert affected(a, blocker / "store") == ["core", "other", "util", "web"]


def test_a_record_naming_a_path_out_of_its_package_is_refused(
    tmp_path: Path, agents: tuple[Agent, Agent, Path]
) -> None:
    a, b, store = agents
    exec_task(a, store)
    record_path = next((store / "records" / "build").glob("*.json"))
    record = json.loads(record_path.read_text())
    name = record["package"]
    # a symlink in B's package that leads out of it, and a record writing through ".."
    victim = tmp_path / "victim"
    victim.mkdir()
    for evil, link in (("../../escaped.txt", False), ("dist/escaped.txt", True)):
        if link:
            shutil.rmtree(b.root / PATHS[name] / "dist", ignore_errors=True)
            (b.root / PATHS[name] / "dist").symlink_to(victim)
        record["outputs"][0]["path"] = evil
        record_path.write_text(json.dumps(record))
        done = exec_task(b, store)
        assert b.statuses(done.stderr)[name] == "ran"
        assert f"{name}: stored result refused" in done.stderr
        assert not (b.root / "escaped.txt").exists()
        assert not (b.root.parent / "escaped.txt").exists()
        assert not (victim / "escaped.txt").exists()
        if link:
            (b.root / PATHS[name] / "dist").unlink()


def test_bad_input_gets_one_line_errors(agents: tuple[Agent, Agent, Path]) -> None:
    a, _b, store = agents
    cases = [
        (["exec", "--task", "t", "--store", f"file://{store}"], "needs a command"),
        (["exec", "--task", "a/b", "--", "true"], "task name"),
        (["affected", "--task", "t", "--store", "ftp://x"], "unknown scheme"),
        (["exec", "--task", "t", "--jobs", "0", "--", "true"], "--jobs"),
        (["exec", "--task", "t", "--outputs", "../x", "--", "true"], "relative to the package"),
    ]
    for args, words in cases:
        done = a.freshd(*args, check=False)
        assert done.returncode == 1, args
        assert done.stderr.startswith("Error: ") and words in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1
    assert not store.exists()


def test_the_default_store_is_the_environment_s_or_the_user_cache(
    tmp_path: Path, agents: tuple[Agent, Agent, Path]
) -> None:
    a, _b, _store = agents
    env_store = tmp_path / "from-env"
    a.freshd("exec", "--task", "t", "--", "true", FRESHD_CACHE_STORE=str(env_store))
    assert len(list((env_store / "records" / "t").iterdir())) == 4
    cache = tmp_path / "xdg-cache"
    a.freshd("exec", "--task", "t", "--", "true", XDG_CACHE_HOME=str(cache))
    assert len(list((cache / "freshd" / "ci" / "records" / "t").iterdir())) == 4


def _wheel(directory: Path, name: str, version: str) -> None:
    """A minimal pure-Python wheel of ``name`` ``version``, for uv to lock from."""
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    lines = []
    for path, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        lines.append(f"{path},sha256={encoded},{len(text.encode())}")
    record = f"{name}-{version}.dist-info/RECORD"
    files[record] = "\n".join([*lines, f"{record},,"]) + "\n"
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def test_a_lock_upgrade_by_the_real_uv_reruns_exactly_what_reaches_it(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "extpkg", "1.0")
    _wheel(wheels, "otherext", "2.0")
    a_root = tmp_path / "agent-a" / "ws"
    project = '[project]\nname = "{}"\nversion = "0.1"\nrequires-python = ">=3.10"\n'
    write(
        a_root / "pyproject.toml",
        project.format("ws") + 'dependencies = ["a", "b"]\n\n'
        '[tool.uv.workspace]\nmembers = ["libs/*"]\n\n'
        "[tool.uv.sources]\na = { workspace = true }\nb = { workspace = true }\n",
    )
    write(a_root / "libs/a/pyproject.toml", project.format("a") + 'dependencies = ["extpkg"]\n')
    write(a_root / "libs/b/pyproject.toml", project.format("b") + 'dependencies = ["otherext"]\n')
    uv = [str(Path(FRESHD).parent / "uv"), "lock", "--offline", "--no-index"]
    uv += ["--find-links", str(wheels)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    subprocess.run(uv, cwd=a_root, env=env, check=True, capture_output=True, timeout=120)
    b_root = tmp_path / "agent-b" / "ws"  # the same depth: the lock names ../../wheels
    shutil.copytree(a_root, b_root)
    a, b = Agent(a_root, tmp_path / "pa"), Agent(b_root, tmp_path / "pb")
    store = tmp_path / "store"
    assert a.freshd("graph", "--json").stdout == b.freshd("graph", "--json").stdout
    a.freshd("exec", "--task", "t", "--store", str(store), "--", "true")
    _wheel(wheels, "extpkg", "1.1")
    upgrade = [*uv, "--upgrade-package", "extpkg"]
    subprocess.run(upgrade, cwd=b_root, env=env, check=True, capture_output=True, timeout=120)
    assert 'version = "1.1"' in (b_root / "uv.lock").read_text()
    done = b.freshd("exec", "--task", "t", "--store", str(store), "--", "true")
    ran = {line.split()[1].rstrip(":") for line in done.stderr.splitlines() if ": ran (" in line}
    replayed = {
        line.split()[1].rstrip(":") for line in done.stderr.splitlines() if "replayed (" in line
    }
    assert (ran, replayed) == ({"a", "ws"}, {"b"})
