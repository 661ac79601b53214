"""A generated uv project for the installer tests and ``bench/bench_uv.py``.

``make_project(base, editable=…)`` writes ``base/app`` (a hatchling project, installed
editable by uv as the workspace root) that depends on ``base/lib`` (a hatchling
library, ``src/`` layout, a ``.gitignore``) through ``[tool.uv.sources]`` as a path
dependency, editable or not. ``Project`` runs the real ``uv`` and ``freshd`` on it with a
private environment: the given uv cache, the interpreter running the tests, no Python
downloads, and ``FRESHD_HOME``/``FRESHD_SOCKET`` pointing where no daemon runs, so every
freshd answer is computed one-shot, as in a container.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
UV = BIN / "uv"
FRESHD = BIN / "freshd"

PROCESS_TIMEOUT_S = 120
PRINT_VALUE = "import lib; print(lib.VALUE)"
PRINT_VERSION = "import importlib.metadata as m; print(m.version('lib'))"
INSTALLER_ACTIVITY = re.compile(r"not fresh|Built |Installed |Uninstalled |Installing |Building ")
"""``uv -v`` lines that show it rebuilt or reinstalled something."""

LIB_PYPROJECT = """\
[project]
name = "lib"
version = "{version}"
requires-python = ">=3.10"
dependencies = [{dependencies}]

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.uv]
cache-keys = [{{ env = "FRESHD_DIGEST_LIB" }}]
"""

APP_PYPROJECT = """\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["lib"]

[tool.uv.sources]
lib = {{ path = "../lib", editable = {editable} }}

[tool.uv]
cache-keys = [{{ env = "FRESHD_DIGEST_APP" }}]

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""


class Project:
    """``base/app`` and its local library ``base/lib``, driven with the real uv and freshd."""

    def __init__(self, base: Path, cache: Path, editable: bool, keys: bool = True) -> None:
        self.base = base
        self.app = base / "app"
        self.lib = base / "lib"
        self.venv = self.app / ".venv"
        self.editable = editable
        self.keys = keys  # whether the packages carry freshd's FRESHD_DIGEST_* cache keys
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("UV_", "FRESHD_")) and k not in ("VIRTUAL_ENV", "PYTHONHOME")
        }
        env.update(
            UV_CACHE_DIR=str(cache),
            UV_PYTHON=sys.executable,
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_CONFIG="1",
            FRESHD_HOME=str(base / "freshd-home"),  # never created: no daemon, no index
            FRESHD_SOCKET=str(base / "freshd-home" / "freshd.sock"),
        )
        self.env = env

    # -- running things ---------------------------------------------------------------

    def run(
        self, argv: list[str | Path], *, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the app directory with the project's environment (plus ``env``)."""
        proc = subprocess.run(
            [str(a) for a in argv],
            cwd=self.app,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT_S,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{argv} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n"
                f"--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def uv(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run([UV, *args], check=check, **env)

    def freshd(
        self, *args: str | Path, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return self.run([FRESHD, *args], check=check, **env)

    def uv_run_argv(self, code: str) -> list[str | Path]:
        """``uv run -v python -c CODE``: the command a container starts."""
        return [UV, "run", "-v", "python", "-c", code]

    def freshd_run(
        self, argv: list[str | Path], *, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``freshd run --venv VENV -- ARGV``."""
        return self.freshd("run", "--venv", self.venv, "--", *argv, check=check, **env)

    # -- the scenario -----------------------------------------------------------------

    def sync(self, *args: str) -> None:
        """``uv sync``: lock, build and install app and lib (PyPI for hatchling, once a
        cache); through ``freshd run`` when the packages have freshd's cache keys, so uv
        records their content digests."""
        if self.keys:
            self.freshd("run", "--", UV, "sync", *args)
        else:
            self.uv("sync", *args)

    def stamp(self) -> None:
        self.freshd("stamp", "--venv", self.venv)

    def tar_round_trip(self) -> None:
        """``tar cf`` of app and lib, ``rm -rf``, ``tar xf`` into the same paths, then
        ``chmod -R a+rX``: the same content with new inodes and ctimes, as a Docker layer,
        ``COPY`` or a ``RUN chmod`` layer makes it."""
        archive = self.base / "project.tar"
        subprocess.run(["tar", "-C", self.base, "-cf", archive, "app", "lib"], check=True)
        shutil.rmtree(self.app)
        shutil.rmtree(self.lib)
        subprocess.run(["tar", "-C", self.base, "-xf", archive], check=True)
        archive.unlink()
        subprocess.run(["chmod", "-R", "a+rX", self.app, self.lib], check=True)

    def set_value(self, value: str) -> None:
        """A source edit of lib that no uv cache key covers."""
        (self.lib / "src" / "lib" / "__init__.py").write_text(f"VALUE = {value!r}\n")

    def set_version(self, version: str, dependencies: str = "") -> None:
        """A build-input change of lib: its version (or dependencies) in pyproject.toml."""
        text = LIB_PYPROJECT.format(version=version, dependencies=dependencies)
        if not self.keys:
            text = text[: text.index("[tool.uv]")]
        (self.lib / "pyproject.toml").write_text(text)

    def depend_on(self, requirement: str) -> None:
        """Add a third-party dependency to the app (before the first ``uv sync``)."""
        pyproject = self.app / "pyproject.toml"
        text = pyproject.read_text().replace('"lib"]', f'"lib", "{requirement}"]')
        pyproject.write_text(text)

    def dist_info(self, name: str) -> Path:
        """The ``.dist-info`` directory of ``name`` in the venv (exactly one)."""
        found = list(self.venv.glob(f"lib/python*/site-packages/{name}-*.dist-info"))
        assert len(found) == 1, found
        return found[0]


def make_project(
    base: Path, cache: Path, *, editable: bool, value: str = "one", keys: bool = True
) -> Project:
    """Write the app and its library under ``base`` (nothing installed yet); ``keys``:
    with freshd's ``FRESHD_DIGEST_*`` cache keys in both pyproject.toml files."""
    project = Project(base, cache, editable, keys)
    package = project.lib / "src" / "lib"
    package.mkdir(parents=True)
    project.set_version("0.1.0")
    project.set_value(value)
    (project.lib / ".gitignore").write_text("*.log\n")
    (project.app / "src" / "app").mkdir(parents=True)
    (project.app / "src" / "app" / "__init__.py").write_text("")
    app = APP_PYPROJECT.format(editable="true" if editable else "false")
    if not keys:
        app = app.replace('[tool.uv]\ncache-keys = [{ env = "FRESHD_DIGEST_APP" }]\n\n', "")
    (project.app / "pyproject.toml").write_text(app)
    return project


def installer_activity(output: str) -> list[str]:
    """The lines of ``uv -v`` output that show a rebuild or a reinstall."""
    return [line for line in output.splitlines() if INSTALLER_ACTIVITY.search(line)]
