"""``[tool.uv] cache-keys`` as the real uv reads them (issue 19).

A library with a tiny in-tree build backend (no download, no hatchling) is installed
non-editable into a virtual app with ``uv sync``; its cache keys are then rewritten
and uv is asked, with ``uv sync -v --dry-run``, which of its inputs changed last
("Most recently modified: …") and whether the install is still fresh. uv reads
timestamps, so a touch is how it notices: a file uv selects is one whose touch it
names. freshd must select exactly those files for the meta digest (by content), and
for each kind of key, a change uv rebuilds for must change the meta digest while a
change uv ignores must not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from freshd_client.content.scan import scan
from freshd_client.spec import digest as dg

UV = Path(sys.executable).parent / "uv"
TIMEOUT_S = 120
TICK_DEADLINE_S = 5.0

BACKEND = """\
import base64, hashlib, os, zipfile

def _wheel(directory, editable=False):
    name, dist = "lib-0.1.0-py3-none-any.whl", "lib-0.1.0.dist-info"
    files = {
        dist + "/METADATA": b"Metadata-Version: 2.1\\nName: lib\\nVersion: 0.1.0\\n",
        dist + "/WHEEL": b"Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\n"
        b"Tag: py3-none-any\\n",
        "lib/__init__.py": b"VALUE = 1\\n",
    }
    record = []
    with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
            digest = hashlib.sha256(data).digest()
            b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            record.append(f"{path},sha256={b64},{len(data)}")
        z.writestr(dist + "/RECORD", "\\n".join([*record, dist + "/RECORD,,"]) + "\\n")
    return name

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory)

def get_requires_for_build_wheel(config_settings=None):
    return []
"""

LIB_PYPROJECT = """\
[project]
name = "lib"
version = "0.1.0"

[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]
"""

APP_PYPROJECT = """\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["lib"]

[tool.uv]
package = false

[tool.uv.sources]
lib = { path = "../lib", editable = false }
"""

# The files a key may select: nested, hidden, ignored by .gitignore, in a directory
# freshd's tree leaves out, a non-ASCII name, a directory named like a file.
CANDIDATES = [
    "src/a.py",
    "src/deep/b.py",
    "src/deep/er/c.py",
    "src/y.txt",
    "src/.h.py",
    "x.txt",
    ".hidden.txt",
    "srcfile.py",
    "a.txt/inner",
    "other/z.txt",
    "build/out.txt",
    "debug.log",
    "café.txt",
    "cafe.txt",
]


class Lab:
    """The library and the app, with the real uv (offline, a private cache)."""

    def __init__(self, base: Path) -> None:
        self.lib = base / "lib"
        self.app = base / "app"
        (self.lib / "src" / "lib").mkdir(parents=True)
        self.app.mkdir()
        (self.lib / "backend.py").write_text(BACKEND)
        (self.lib / "src" / "lib" / "__init__.py").write_text("VALUE = 1\n")
        (self.lib / ".gitignore").write_text("*.log\n")
        for rel in CANDIDATES:
            path = self.lib / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rel + "\n")
        (self.app / "pyproject.toml").write_text(APP_PYPROJECT)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "FRESHD_"))}
        env.pop("VIRTUAL_ENV", None)
        env.update(
            UV_CACHE_DIR=str(base / "uv-cache"),
            UV_PYTHON=sys.executable,
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_CONFIG="1",
            UV_OFFLINE="1",
        )
        self.env = env
        self.set_keys(None)
        self.uv("sync", "-q")

    def uv(self, *args: str, **env: str) -> str:
        proc = subprocess.run(
            [str(UV), *args],
            cwd=self.app,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stderr

    def set_keys(self, keys: str | None) -> None:
        text = LIB_PYPROJECT + (f"\n[tool.uv]\ncache-keys = {keys}\n" if keys else "")
        (self.lib / "pyproject.toml").write_text(text)

    def check(self, **env: str) -> tuple[bool, str | None]:
        """uv's verdict on the installed library: (fresh, the input it found newest)."""
        out = self.uv("sync", "-v", "--dry-run", **env)
        assert "lib==0.1.0" in out, out  # uv did look at the installed library
        newest = re.search(r"Most recently modified: (.+)$", out, re.M)
        shown = os.path.normpath(self.app / newest.group(1)) if newest else None
        return "not fresh" not in out, shown

    def uv_selected(self, candidates: list[str]) -> set[str]:
        """The candidates uv reads for its timestamp: touched in turn, the last one uv
        reads is the one it names; then the same with those touched before it."""
        remaining, selected, last = list(candidates), set(), 0
        while remaining:
            for rel in remaining:
                last = touch(self.lib / rel, after=last)
            _fresh, newest = self.check()
            paths = [os.path.normpath(self.lib / rel) for rel in remaining]
            if newest not in paths:
                break
            index = paths.index(newest)
            selected.add(remaining[index])
            remaining = remaining[:index]
        return selected

    def meta(self, **env: str) -> tuple[str, set[str]]:
        """freshd's meta digest and the files it reads (paths relative to the library)."""
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            result = scan(str(self.lib), scopes=("meta",))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        assert result.error is None and result.meta is not None, result.error
        files = {
            os.path.relpath(os.path.normpath(os.path.join(self.lib, os.fsdecode(e.path))), self.lib)
            for e in result.meta_entries
            if e.kind in (dg.KIND_FILE, dg.KIND_EXEC)
        }
        return result.meta, files


def touch(path: Path, after: int) -> int:
    """Touch ``path`` until its ctime is later than ``after`` (the kernel's clock for
    ctime is coarse: two touches in a row can get the same one); its new ctime."""
    deadline = time.monotonic() + TICK_DEADLINE_S
    while True:
        os.utime(path)
        ctime = path.stat().st_ctime_ns
        if ctime > after:
            return ctime
        assert time.monotonic() < deadline, f"the ctime of {path} never moved past {after}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab(tmp_path_factory.mktemp("uv-keys"))


GLOB_KEYS = [
    '["src/*"]',  # * does not cross "/"
    '["*.txt"]',  # no "/": a name at any depth, ignored and hidden files too
    '["src/*.py"]',  # uv splits off "src": "*.py" then matches at any depth below it
    '["**/*.py"]',
    '["src/**"]',
    '["{x,y}.txt", "caf?.txt", "caf??.txt"]',  # alternation; ? is one byte, as in git
    '["*"]',  # "*" alone: the top directory's own files only
    '["*", "src/*.py"]',  # walked together from the top: "src/*.py" is anchored there
    '["./src//[ab].py", "build/*"]',
    '[{ file = "other/*.txt" }, "*.log"]',
]


@pytest.mark.parametrize("keys", GLOB_KEYS)
def test_glob_keys_select_the_files_uv_selects(lab: Lab, keys: str) -> None:
    lab.set_keys(keys)
    theirs = lab.uv_selected(CANDIDATES)
    ours = lab.meta()[1] & set(CANDIDATES)
    assert ours == theirs, f"freshd only: {ours - theirs}, uv only: {theirs - ours}"


PLAIN_KEYS = [
    ('["x.txt"]', {"x.txt"}),
    ('[{ file = "./src//y.txt" }]', {"src/y.txt"}),
    ('["x.txt/"]', set()),  # a file named with a trailing "/": uv reads nothing
    ('["a.txt"]', set()),  # a directory: not a file key's
    ('["build/out.txt", "debug.log"]', {"build/out.txt", "debug.log"}),  # outside the tree
    ('["../lib/other/z.txt"]', {"other/z.txt"}),
]


@pytest.mark.parametrize(("keys", "expected"), PLAIN_KEYS)
def test_file_keys_read_what_uv_reads(lab: Lab, keys: str, expected: set[str]) -> None:
    lab.set_keys(keys)
    assert lab.uv_selected(CANDIDATES) == expected
    assert lab.meta()[1] & set(CANDIDATES) == expected


def test_a_changed_key_file_is_stale_for_uv_and_changes_the_meta_digest(lab: Lab) -> None:
    lab.set_keys('["x.txt"]')
    lab.uv("sync", "-q")
    before, _ = lab.meta()
    assert lab.check()[0]
    (lab.lib / "srcfile.py").write_text("edited, no key names it\n")
    assert lab.check()[0], "uv ignores a file no key selects"
    assert lab.meta()[0] == before
    (lab.lib / "x.txt").write_text("edited\n")
    assert not lab.check()[0]
    assert lab.meta()[0] != before


def test_dir_keys_count_what_uv_counts(lab: Lab) -> None:
    lab.set_keys('[{ dir = "assets" }]')
    lab.uv("sync", "-q")
    absent, _ = lab.meta()
    assert lab.check()[0]
    (lab.lib / "assets").mkdir()
    try:
        assert not lab.check()[0], "uv rebuilds when the directory appears"
        present, _ = lab.meta()
        assert present != absent
        (lab.lib / "assets" / "inside.txt").write_text("x")
        assert lab.meta()[0] == present, "a directory key counts the directory, not its content"
    finally:
        shutil.rmtree(lab.lib / "assets")


def test_env_keys_count_the_value_at_check_time(lab: Lab) -> None:
    lab.set_keys('[{ env = "FRESHD_TEST_KEY" }]')
    lab.uv("sync", "-q")
    unset, _ = lab.meta()
    assert lab.check()[0]
    assert not lab.check(FRESHD_TEST_KEY="1")[0], "uv rebuilds when the variable changes"
    one, _ = lab.meta(FRESHD_TEST_KEY="1")
    assert len({unset, one, lab.meta(FRESHD_TEST_KEY="")[0], lab.meta(FRESHD_TEST_KEY="2")[0]}) == 4
    assert lab.meta(FRESHD_TEST_KEY="1")[0] == one
    lab.uv("sync", "-q", FRESHD_TEST_KEY="1")
    assert lab.check(FRESHD_TEST_KEY="1")[0]


def test_git_commit_keys_count_what_uv_counts(lab: Lab) -> None:
    git_env = {
        **lab.env,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }

    def git(*args: str) -> None:
        subprocess.run(
            ["git", *args],
            cwd=lab.lib,
            env=git_env,
            check=True,
            capture_output=True,
            timeout=TIMEOUT_S,
        )

    git("init", "-q")
    try:
        lab.set_keys("[{ git = { commit = true } }]")
        no_commit, _ = lab.meta()
        git("add", "pyproject.toml")
        git("commit", "-q", "-m", "one")
        lab.uv("sync", "-q")
        first, _ = lab.meta()
        assert first != no_commit
        assert lab.check()[0]
        git("commit", "-q", "--allow-empty", "-m", "two")
        assert not lab.check()[0], "uv rebuilds at a new commit"
        assert lab.meta()[0] != first
    finally:
        shutil.rmtree(lab.lib / ".git")
