"""A small uv-workspace monorepo for the ``freshd graph/affected/exec`` tests (issue 23).

``make_mono(base)`` writes ``base`` as a workspace root (virtual: no ``[project]``)
with four members and a ``uv.lock`` in uv's format:

    libs/core   depends on six (external)
    libs/util   depends on core (a workspace source)
    apps/web    depends on util and requests (external); core in a dependency group
    tools/other depends on nothing local; on requests

``Agent`` runs the real ``freshd`` CLI in one checkout with a private environment: no
daemon reachable (``FRESHD_HOME``/``FRESHD_SOCKET`` in a private directory) unless a
test passes a daemon's environment.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

FRESHD = str(Path(sys.executable).parent / "freshd")
PROCESS_TIMEOUT_S = 120
PACKAGES = ("core", "util", "web", "other")
PATHS = {"core": "libs/core", "util": "libs/util", "web": "apps/web", "other": "tools/other"}

LOCK = """\
version = 1
revision = 3
requires-python = ">=3.10"

[manifest]
members = ["core", "other", "util", "web"]

[[package]]
name = "core"
version = "0.1.0"
source = {{ editable = "libs/core" }}
dependencies = [{{ name = "six" }}]

[[package]]
name = "util"
version = "0.1.0"
source = {{ editable = "libs/util" }}
dependencies = [{{ name = "core" }}]

[[package]]
name = "web"
version = "0.1.0"
source = {{ editable = "apps/web" }}
dependencies = [{{ name = "requests" }}, {{ name = "util" }}]

[package.dev-dependencies]
dev = [{{ name = "core" }}]

[[package]]
name = "other"
version = "0.1.0"
source = {{ editable = "tools/other" }}
dependencies = [{{ name = "requests" }}]

[[package]]
name = "six"
version = "{six}"
source = {{ registry = "https://pypi.org/simple" }}
sdist = {{ url = "https://files.example/six-{six}.tar.gz", hash = "sha256:{six_hash}" }}

[[package]]
name = "requests"
version = "{requests}"
source = {{ registry = "https://pypi.org/simple" }}
dependencies = [{{ name = "idna" }}]
sdist = {{ url = "https://files.example/requests-{requests}.tar.gz", hash = "sha256:{r_hash}" }}

[[package]]
name = "idna"
version = "{idna}"
source = {{ registry = "https://pypi.org/simple" }}
sdist = {{ url = "https://files.example/idna-{idna}.tar.gz", hash = "sha256:{i_hash}" }}
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_lock(
    root: Path, six: str = "1.16.0", requests: str = "2.32.0", idna: str = "3.7"
) -> None:
    """The workspace's uv.lock with these versions of its external packages."""

    def sha(name: str, version: str) -> str:
        return hashlib.sha256(f"{name}-{version}".encode()).hexdigest()

    text = LOCK.format(
        six=six,
        requests=requests,
        idna=idna,
        six_hash=sha("six", six),
        r_hash=sha("requests", requests),
        i_hash=sha("idna", idna),
    )
    write(root / "uv.lock", text)


def make_mono(root: Path) -> Path:
    """Write the monorepo at ``root``; returns ``root``."""
    write(
        root / "pyproject.toml", '[tool.uv.workspace]\nmembers = ["libs/*", "apps/*", "tools/*"]\n'
    )
    write(
        root / "libs/core/pyproject.toml",
        '[project]\nname = "Core"\nversion = "0.1.0"\ndependencies = ["six>=1.0"]\n',
    )
    write(root / "libs/core/src/core/__init__.py", "VALUE = 1\n")
    write(
        root / "libs/util/pyproject.toml",
        '[project]\nname = "util"\nversion = "0.1.0"\ndependencies = ["core"]\n\n'
        "[tool.uv.sources]\ncore = { workspace = true }\n",
    )
    write(root / "libs/util/src/util/__init__.py", "from core import VALUE\n")
    write(
        root / "apps/web/pyproject.toml",
        '[project]\nname = "web"\nversion = "0.1.0"\ndependencies = ["util", "requests>=2"]\n\n'
        '[dependency-groups]\ndev = ["core"]\n\n[tool.uv.sources]\nutil = { workspace = true }\n',
    )
    write(root / "apps/web/src/web/__init__.py", "import util\n")
    write(
        root / "tools/other/pyproject.toml",
        '[project]\nname = "other"\nversion = "0.1.0"\ndependencies = ["requests"]\n',
    )
    write(root / "tools/other/other.py", "print('other')\n")
    for path in PATHS.values():
        write(root / path / ".gitignore", "dist\n")  # a directory or (in a test) a link
    write_lock(root)
    return root


class Agent:
    """One CI agent: a checkout and the environment its ``freshd`` runs in."""

    def __init__(self, checkout: Path, private: Path, env: dict[str, str] | None = None) -> None:
        self.root = checkout
        private.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("FRESHD_", "AWS_"))}
        base.update(
            FRESHD_HOME=str(private / "home"),
            FRESHD_SOCKET=str(private / "no-daemon.sock"),
            PYTHONDONTWRITEBYTECODE="1",
        )
        self.env = {**base, **(env or {})}

    def freshd(
        self, *args: str, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [FRESHD, *args],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT_S,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"freshd {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def statuses(self, stderr: str) -> dict[str, str]:
        """``{package: replayed/ran/failed/skipped}`` from an exec's stderr."""
        found: dict[str, str] = {}
        for line in stderr.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "freshd:" and parts[1].rstrip(":") in PACKAGES:
                found[parts[1].rstrip(":")] = parts[2].rstrip(",")
        return found
