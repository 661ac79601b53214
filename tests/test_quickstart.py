"""The README's quick start, followed literally on a clean clone (issue 21, item 1).

The commands are parsed out of README.md, so this test breaks when the README changes:
the daemon command (``make run ROOT=…``) runs in the background of a fresh ``git
clone`` (with the checkout's uncommitted edits to tracked files applied), on a real
tree of packages at the ROOT it names, with the default index and socket and no
``XDG_RUNTIME_DIR``; once it is ready, the second terminal's commands run as written
(PATH as the README sets it), then SIGINT, as Ctrl-C would, must stop it cleanly.

The second quick-start command, ``make test``, is not run here: it would run this suite
inside itself. CI runs it literally (``make test`` is what CI calls).

``make install`` in the clone downloads nothing twice: pip's own cache is shared with
the user's (``PIP_CACHE_DIR``), which changes no installed byte.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import make_package, session_members, wait_until  # noqa: E402

CHECKOUT = Path(__file__).resolve().parent.parent
INSTALL_SECONDS = 600.0
"""``make install`` (a venv, pip, the daemon and dev extras) on a loaded 2-core machine."""


def quick_start(readme: str) -> tuple[list[str], list[str]]:
    """The quick start's shell commands and the second terminal's (``$ `` lines)."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", section, re.M | re.S)
    shell = [code for kind, code in blocks if kind == "sh"]
    console = [code for kind, code in blocks if kind == "console"]
    assert len(shell) == 1 and len(console) == 1, blocks
    commands = [line.strip() for line in shell[0].splitlines() if line.strip()]
    second = [line[2:] for line in console[0].splitlines() if line.startswith("$ ")]
    return commands, second


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clean clone of this checkout, with its uncommitted edits to tracked files."""
    target = tmp_path / "freshd"
    subprocess.run(["git", "clone", "--quiet", str(CHECKOUT), str(target)], check=True)
    edits = subprocess.run(
        ["git", "-C", str(CHECKOUT), "diff", "HEAD", "--binary"],
        check=True,
        capture_output=True,
    ).stdout
    if edits:
        subprocess.run(["git", "-C", str(target), "apply"], input=edits, check=True)
    return target


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """TMPDIR for the daemon's default socket: AF_UNIX paths are limited to 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="fq"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fresh_environment(home: Path, tmp: Path, bin_dir: Path) -> dict[str, str]:
    """A new user's environment: a new HOME, no FRESHD_* or XDG_* variables, python3 on
    PATH and no freshd there (the README must say how to get it)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRESHD_", "XDG_", "VIRTUAL_ENV", "PYENV", "MAKE"))
        and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "MFLAGS")
    }
    bin_dir.mkdir()
    # The interpreter this suite runs on, by its real path (a pyenv shim would look for
    # its versions under the new HOME).
    (bin_dir / "python3").symlink_to(Path(sys.base_prefix, "bin", "python3").resolve())
    outer = [d for d in env.get("PATH", "").split(os.pathsep) if d]
    path = [str(bin_dir), *(d for d in outer if not os.path.exists(os.path.join(d, "freshd")))]
    cache = os.environ.get("PIP_CACHE_DIR") or str(Path("~/.cache/pip").expanduser())
    env.update(HOME=str(home), TMPDIR=str(tmp), PATH=os.pathsep.join(path), PIP_CACHE_DIR=cache)
    return env


def second_terminal(commands: list[str], clone: Path, env: dict[str, str]) -> list[tuple[int, str]]:
    """Run the commands in one shell, as typed; each one's exit code and output."""
    marker = "::freshd-quickstart::"
    script = "exec 2>&1\n" + "".join(f'{c}\necho "{marker}$?"\n' for c in commands)
    done = subprocess.run(
        ["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=120
    )
    parts = done.stdout.split(marker)  # part n: command n-1's exit code, command n's output
    assert len(parts) == len(commands) + 1, done.stdout
    codes = [int(part.partition("\n")[0]) for part in parts[1:]]
    outputs = [parts[0]] + [part.partition("\n")[2] for part in parts[1:-1]]
    return list(zip(codes, outputs, strict=True))


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_SECONDS + 300)
def test_the_quick_start_works_on_a_fresh_clone(
    clone: Path, tmp_path: Path, short_tmp: Path
) -> None:
    commands, second = quick_start((clone / "README.md").read_text())
    run = next(c for c in commands if c.startswith("make run"))
    assert any(c.startswith("make test") for c in commands), commands
    home = tmp_path / "home"
    env = fresh_environment(home, short_tmp, tmp_path / "bin")
    # The user's own code, where the README's ROOT says it is.
    root_word = re.search(r"\bROOT=(\S+)", run)
    assert root_word, run
    root = Path(root_word.group(1).replace("~", str(home), 1)).resolve()
    packages = [make_package(root, "alpha"), make_package(root / "libs", "beta")]

    log_path = tmp_path / "make-run.log"
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            ["bash", "-c", run], cwd=clone, env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        status = next(c for c in second if c.split()[:2] == ["freshd", "status"])
        setup = [c for c in second if c.startswith("export ")]

        def ready() -> bool:
            assert daemon.poll() is None, log_path.read_text()
            answer = second_terminal([*setup, status], clone, env)[-1]
            return answer[0] == 0 and answer[1].startswith("ready")

        wait_until(ready, "make run: the daemon ready", INSTALL_SECONDS, interval=0.5)
        results = dict(zip(second, second_terminal(second, clone, env), strict=True))
        for command, (code, _out) in results.items():
            assert code == 0, (command, results)
        by_verb = {shlex.split(c)[0 if c.startswith("curl") else 1]: r for c, r in results.items()}
        status_out = by_verb["status"][1]
        assert f"roots     {root} (watching)" in status_out.splitlines(), status_out
        listed = by_verb["ls"][1]
        for pkg in packages:
            assert any(
                line.split()[:3] == ["clean", pkg.name, str(pkg.resolve())]
                for line in listed.splitlines()
            ), listed
        health = json.loads(by_verb["curl"][1])
        assert (health["status"], health["roots"]) == ("ready", [str(root)]), health
        socket = health["socket"]
        assert socket == f"{short_tmp}/freshd-{os.getuid()}/freshd.sock"

        os.killpg(daemon.pid, signal.SIGINT)  # Ctrl-C: the terminal's whole process group
        daemon.wait(60)
        output = log_path.read_text()
        assert "Traceback" not in output, output
        # the daemon's log lines, timestamped (freshd.logs)
        lines = [line for line in output.splitlines() if re.match(r"\S+ freshd: ", line)]
        assert lines[-1].endswith("stopped"), output
        assert not os.path.exists(socket)
        wait_until(lambda: not session_members(daemon.pid), "every process of make run gone")
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "make run needs the directory to watch: make run ROOT=~/src/yourcode"),
        (["ROOT=/nonexistent/code"], "make run: ROOT=/nonexistent/code is not a directory"),
        ([f"ROOT={CHECKOUT}/Makefile"], f"make run: ROOT={CHECKOUT}/Makefile is not a directory"),
    ],
)
def test_make_run_without_a_directory_says_so_in_one_line(args: list[str], message: str) -> None:
    """Before anything is installed or started: the check is made when make reads the
    Makefile."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MAKE") and k not in ("MFLAGS", "ROOT")
    }
    done = subprocess.run(
        ["make", "-C", str(CHECKOUT), "--no-print-directory", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, ""), done
    assert re.fullmatch(rf"Makefile:\d+: \*\*\* {re.escape(message)}\.  Stop\.\n", done.stderr)
