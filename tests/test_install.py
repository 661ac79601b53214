"""freshd installs without a package index: ``uv build`` wheels it, and the plain wheel
is the light client side (issue 20).

The wheel is built from this checkout and installed with pip into a clean venv of the
oldest Python the project supports (3.10, where this machine has one; else the
interpreter running the tests). It must bring no web framework, and its commands must
work there: ``freshd digest``, ``freshd stamp``/``check``/``run`` of a pip venv, and
``freshd serve`` must say which extra to install.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
UV = Path(sys.executable).parent / "uv"
TIMEOUT_S = 600
DAEMON_ONLY = (
    "fastapi",
    "starlette",
    "pydantic",
    "uvicorn",
    "watchdog",
    "rich",
    "prometheus_client",
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(TIMEOUT_S)]


def oldest_python() -> str:
    """A Python 3.10 of this machine (pyenv's), else the one running the tests."""
    found = sorted(glob.glob("/root/.pyenv/versions/3.10.*/bin/python3.10"))
    return found[-1] if found else sys.executable


def run(argv: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRESHD_", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env=env,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with the plain freshd wheel (what ``pip install freshd-*.whl`` gives)."""
    work = tmp_path_factory.mktemp("install")
    built = run([UV, "build", "-o", work / "dist", REPO])
    assert built.returncode == 0, built.stderr
    [wheel] = (work / "dist").glob("freshd-*-py3-none-any.whl")
    assert list((work / "dist").glob("freshd-*.tar.gz")), "uv build makes an sdist too"
    venv = work / "venv"
    made = run([oldest_python(), "-m", "venv", venv])
    assert made.returncode == 0, made.stderr
    installed = run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel])
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_plain_install_brings_no_web_framework(light: Path) -> None:
    code = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    found = run([light / "bin" / "python", "-c", code, *DAEMON_ONLY])
    assert found.stdout.strip() == "[]", found.stderr


def test_the_plain_install_digests_stamps_checks_and_runs(light: Path, tmp_path: Path) -> None:
    freshd = light / "bin" / "freshd"
    package = tmp_path / "lib"
    (package / "lib").mkdir(parents=True)
    (package / "pyproject.toml").write_text(
        '[project]\nname = "lib"\nversion = "0.1.0"\n'
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    )
    (package / "lib" / "__init__.py").write_text("VALUE = 1\n")
    digest = run([freshd, "digest", package])
    assert digest.returncode == 0 and digest.stdout.startswith("b3t2:"), digest.stderr

    app_venv = tmp_path / "app-venv"
    assert run([sys.executable, "-m", "venv", "--without-pip", app_venv]).returncode == 0
    pip = [sys.executable, "-m", "pip", "--python", app_venv / "bin" / "python"]
    installed = run([*pip, "install", "-q", "--no-deps", package])
    assert installed.returncode == 0, installed.stderr
    stamped = run([freshd, "stamp", "--venv", app_venv])
    assert stamped.returncode == 0, stamped.stderr
    assert stamped.stderr == ""  # a pip venv has no lock to miss
    assert run([freshd, "check", "--venv", app_venv]).returncode == 0
    ran = run([freshd, "run", "--venv", app_venv, "--", app_venv / "bin" / "python", "-c",
               "import lib; print(lib.VALUE)"])  # fmt: skip
    assert (ran.returncode, ran.stdout) == (0, "1\n"), ran.stderr


def test_the_daemon_verbs_name_the_extra_to_install(light: Path, tmp_path: Path) -> None:
    serve = run([light / "bin" / "freshd", "serve", tmp_path])
    assert serve.returncode == 1
    [line] = serve.stderr.strip().splitlines()
    assert line.startswith("Error: freshd serve needs the daemon") and "freshd[daemon]" in line
