"""``freshd graph``: the local dependency graph and closure digests (issue 23, item 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ci_repo import PATHS, Agent, make_mono, write, write_lock
from freshd_client.ci.graph import load
from freshd_client.content.oneshot import digest_path


def graph(agent: Agent, *args: str) -> dict[str, dict[str, object]]:
    answer = json.loads(agent.freshd("graph", "--json", *args).stdout)
    return {p["name"]: p for p in answer["packages"]}


def test_graph_names_local_dependencies_in_dependency_order(tmp_path: Path) -> None:
    root = make_mono(tmp_path / "mono")
    agent = Agent(root, tmp_path / "a")
    answer = json.loads(agent.freshd("graph", "--json").stdout)
    names = [p["name"] for p in answer["packages"]]
    assert sorted(names) == ["core", "other", "util", "web"]
    for package in answer["packages"]:
        assert package["path"] == PATHS[package["name"]]
        assert all(names.index(dep) < names.index(package["name"]) for dep in package["deps"])
        # the tree digest is the package's own digest, as freshd digest computes it
        assert package["tree"] == digest_path(str(root / package["path"])).tree
        assert package["closure"].startswith("fc1:")
    deps = {p["name"]: p["deps"] for p in answer["packages"]}
    assert deps == {"core": [], "util": ["core"], "web": ["core", "util"], "other": []}
    text = agent.freshd("graph").stdout.splitlines()
    assert [line.split()[0] for line in text] == names


def test_closures_do_not_depend_on_the_checkout_path(tmp_path: Path) -> None:
    a = make_mono(tmp_path / "agent-a" / "src" / "mono")
    b = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(a, b)
    out_a = Agent(a, tmp_path / "pa").freshd("graph", "--json").stdout
    out_b = Agent(b, tmp_path / "pb").freshd("graph", "--json").stdout
    assert out_a == out_b
    # run from inside a package: the root is found upwards (the lock's directory)
    inner = Agent(b / "apps" / "web", tmp_path / "pb").freshd("graph", "--json").stdout
    assert inner == out_a


def test_an_edit_changes_the_closures_of_the_package_and_its_dependents(tmp_path: Path) -> None:
    root = make_mono(tmp_path / "mono")
    agent = Agent(root, tmp_path / "a")
    before = graph(agent)
    write(root / "libs/core/src/core/__init__.py", "VALUE = 2\n")
    after = graph(agent)
    changed = {n for n in before if before[n]["closure"] != after[n]["closure"]}
    assert changed == {"core", "util", "web"} == {"core", *load(str(root)).dependents("core")}
    assert {n for n in before if before[n]["tree"] != after[n]["tree"]} == {"core"}


def test_a_lock_change_changes_exactly_the_packages_that_reach_it(tmp_path: Path) -> None:
    root = make_mono(tmp_path / "mono")
    agent = Agent(root, tmp_path / "a")
    before = graph(agent)
    write_lock(root, idna="3.8")  # reached by web and other through requests
    after = graph(agent)
    changed = {n for n in before if before[n]["closure"] != after[n]["closure"]}
    assert changed == {"web", "other"}
    write_lock(root, six="1.17.0", idna="3.8")  # core's, hence util's and web's
    again = graph(agent)
    assert {n for n in after if after[n]["closure"] != again[n]["closure"]} == {
        "core",
        "util",
        "web",
    }


def test_a_declared_environment_variable_is_part_of_the_closure(tmp_path: Path) -> None:
    root = make_mono(tmp_path / "mono")
    agent = Agent(root, tmp_path / "a")
    plain = graph(agent)
    unset = graph(agent, "--env", "TASK_MODE")
    empty = graph(Agent(root, tmp_path / "a", {"TASK_MODE": ""}), "--env", "TASK_MODE")
    fast = graph(Agent(root, tmp_path / "a", {"TASK_MODE": "fast"}), "--env", "TASK_MODE")
    closures = [{n: g[n]["closure"] for n in g} for g in (plain, unset, empty, fast)]
    for i, one in enumerate(closures):
        for other in closures[i + 1 :]:
            assert all(one[n] != other[n] for n in one)
    assert graph(Agent(root, tmp_path / "a", {"TASK_MODE": "x"})) == plain  # not declared


def test_a_cycle_is_a_clear_error(tmp_path: Path) -> None:
    root = make_mono(tmp_path / "mono")
    write(
        root / "libs/core/pyproject.toml",
        '[project]\nname = "core"\nversion = "0.1.0"\ndependencies = ["web"]\n',
    )
    done = Agent(root, tmp_path / "a").freshd("graph", check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "depend on each other" in done.stderr
    assert "core -> web -> " in done.stderr or "web -> " in done.stderr


def test_a_missing_local_dependency_is_a_clear_error(tmp_path: Path) -> None:
    root = make_mono(tmp_path / "mono")
    write(
        root / "libs/util/pyproject.toml",
        '[project]\nname = "util"\nversion = "0.1.0"\ndependencies = ["gone"]\n\n'
        '[tool.uv.sources]\ngone = { path = "../gone" }\n',
    )
    done = Agent(root, tmp_path / "a").freshd("graph", check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "libs/util" in done.stderr and "'../gone'" in done.stderr

    write(
        root / "libs/util/pyproject.toml",
        '[project]\nname = "util"\nversion = "0.1.0"\ndependencies = ["ghost"]\n\n'
        "[tool.uv.sources]\nghost = { workspace = true }\n",
    )
    done = Agent(root, tmp_path / "a").freshd("graph", check=False)
    assert done.returncode == 1
    assert "'ghost' is a workspace source" in done.stderr


def test_a_checkout_without_a_workspace_is_walked_and_path_sources_followed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    write(root / "a/pyproject.toml", '[project]\nname = "a"\ndependencies = ["b", "numpy"]\n')
    write(
        root / "nested/deep/b/pyproject.toml",
        '[project]\nname = "b"\ndependencies = ["c"]\n'
        '[tool.uv.sources]\nc = { path = "../../../../c" }\n',
    )
    write(tmp_path / "c/setup.cfg", "[metadata]\nname = c\n")  # outside the root
    write(root / ".venv/pyvenv.cfg", "home = /usr\n")
    write(root / ".venv/lib/x/pyproject.toml", '[project]\nname = "not-a-member"\n')
    found = graph(Agent(root, tmp_path / "p"), "--root", str(root))
    assert {n: p["deps"] for n, p in found.items()} == {"a": ["b"], "b": ["c"], "c": []}
    assert found["c"]["path"] == "../c"
    assert all(p["pins"] == "unlocked" for p in found.values())


def test_a_fifo_named_like_a_project_file_or_lock_is_never_opened(tmp_path: Path) -> None:
    """A FIFO where ``uv.lock`` or a member's ``pyproject.toml`` should be would block a
    plain ``open`` for ever: it is read as no file, as the daemon reads it."""
    root = make_mono(tmp_path / "mono")
    (root / "uv.lock").unlink()
    os.mkfifo(root / "uv.lock")
    code = "import sys; from freshd_client.ci.lock import read; print(read(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout) == (0, "None\n"), proc.stderr
    code = "import sys; from freshd_client.content import project; "
    code += "print(project.read_toml(sys.argv[1]))"
    os.mkfifo(tmp_path / "pyproject.toml")
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "pyproject.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (0, "None\n"), proc.stderr
