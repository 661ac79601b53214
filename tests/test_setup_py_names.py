"""A setup.py-only package is named by the literal ``name=`` of its ``setup()`` call, read
from the syntax tree and never run (issue 21, item 6): through ``freshd digest --json``
and the daemon's lookup by name."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import make_tree
from freshd_client.project import load_project, read_project

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import FRESHD, Factory, write  # noqa: E402

pytest_plugins = ["daemon_harness"]

RAN = "ran.txt"
"""What a setup.py below writes when it is run: it never must be."""

SETUP_PY: dict[str, tuple[str, str | None]] = {
    "literal": (
        'from setuptools import setup\nsetup(name="Legacy_Pkg", version="1.0")\n',
        "legacy-pkg",
    ),
    "nested-call": (
        "import setuptools\n"
        "def main():\n"
        '    options = {"zip_safe": False}\n'
        '    setuptools.setup(version="1.0", **dict(name="nested.pkg"), **options)\n'
        'if __name__ == "__main__":\n'
        "    main()\n",
        "nested-pkg",
    ),
    "dict-literal": ('setup(**{"name": "from-dict", "version": "1"})\n', "from-dict"),
    "variable": ('NAME = "hidden"\nsetup(name=NAME)\n', None),
    "f-string": ('v = "x"\nsetup(name=f"pkg-{v}")\n', None),
    "kwargs-only": ('kw = {"name": "k"}\nsetup(**kw)\n', None),
    "disagreeing-calls": ('setup(name="one")\nsetup(name="two")\n', None),
    "syntax-error": ('setup(name="broken"\n', None),
    "no-setup-call": ("print('hello')\n", None),
    "runs-code-if-run": (f'open("{RAN}", "w").write("ran")\nsetup(name="inert")\n', "inert"),
}


@pytest.mark.parametrize("case", list(SETUP_PY))
def test_name_read_from_setup_py(tmp_path: Path, case: str) -> None:
    source, expected = SETUP_PY[case]
    pkg = make_tree(tmp_path / "pkg", {"setup.py": source, "mod.py": ""})
    assert read_project(str(pkg)).name == expected
    proc = subprocess.run(
        [FRESHD, "digest", str(pkg), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=pkg,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["name"] == expected
    assert not (pkg / RAN).exists()


def test_pyproject_and_setup_cfg_names_come_first(tmp_path: Path) -> None:
    setup_py = 'setup(name="from-setup-py")\n'
    both = make_tree(
        tmp_path / "a",
        {"setup.py": setup_py, "setup.cfg": "[metadata]\nname = from-cfg\n"},
    )
    assert read_project(str(both)).name == "from-cfg"
    dynamic = make_tree(
        tmp_path / "b",
        {"setup.py": setup_py, "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'},
    )
    assert read_project(str(dynamic)).name == "from-setup-py"


def test_a_memo_follows_an_edited_setup_py(tmp_path: Path) -> None:
    """A stamp's memo of the project files covers setup.py: a renamed setup() is read."""
    pkg = make_tree(tmp_path / "pkg", {"setup.py": 'setup(name="before")\n'})
    project, memo = load_project(str(pkg))
    assert project.name == "before"
    (pkg / "setup.py").write_text('setup(name="after")\n')
    assert load_project(str(pkg), memo)[0].name == "after"


def test_the_daemon_finds_a_setup_py_package_by_name(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    root = make_tree(
        tmp_path / "root",
        {
            "legacy/setup.py": SETUP_PY["literal"][0],
            "legacy/legacy_pkg/__init__.py": "",
            "computed/setup.py": SETUP_PY["variable"][0],
            "broken/setup.py": SETUP_PY["syntax-error"][0],
        },
    )
    daemon = freshd_factory(root)
    legacy = daemon.call("GET", "/v1/packages/lookup?name=Legacy.Pkg")
    assert (legacy["path"], legacy["name"]) == (str(root / "legacy"), "legacy-pkg")
    names = {p["path"]: p["name"] for p in daemon.call("GET", "/v1/packages")["packages"]}
    assert names == {
        str(root / "legacy"): "legacy-pkg",
        str(root / "computed"): None,
        str(root / "broken"): None,
    }
    missing = daemon.request("GET", "/v1/packages/lookup?name=hidden")
    assert missing.status == 404 and missing.json["error"]["code"] == "not_found"
    # a rename in setup.py reaches the index like any other edit
    write(root / "legacy" / "setup.py", 'from setuptools import setup\nsetup(name="renamed")\n')
    daemon.wait_package(root / "legacy", lambda p: p["name"] == "renamed", "renamed")
    assert daemon.request("GET", "/v1/packages/lookup?name=legacy-pkg").status == 404
    assert daemon.call("GET", "/v1/packages/lookup?name=renamed")["path"] == str(root / "legacy")
