"""``freshd run``: decide how the installer may start, reinstalling what changed first.

- every local install fresh by content: the command gets ``UV_NO_SYNC=1``, so uv
  skips its timestamp check (a copied or untarred tree rebuilds nothing);
- some stale: exactly those are reinstalled (``uv pip install --reinstall-package`` in a
  uv-made venv, ``pip install --force-reinstall --no-deps`` otherwise, or the user's
  ``--sync-cmd``), stamped again, and checked again;
- anything freshd cannot tell: the command runs unchanged and the installer decides.

A reinstall that fails stops here (FreshdError): running the command would run the
old code, which is what freshd exists to prevent.
"""

from __future__ import annotations

import os
import sys

from freshd_client.errors import FreshdError
from freshd_client.stamps import Verdict, stamp, verify
from freshd_client.venv import venv_dir

NO_SYNC = "UV_NO_SYNC"
STALE_ENV = "FRESHD_STALE"


def prepare(venv: str | None, command: list[str], *, sync_cmd: str | None) -> dict[str, str]:
    """Bring VENV's local installs up to date by content; the environment to run
    ``command`` with. Notes go to stderr, one line each. A daemon is asked with sync
    consistency: a change made just before the start is never missed for its settle
    window."""
    env = dict(os.environ)
    env.pop(NO_SYNC, None)  # set below only when freshd itself verified every package
    try:
        path = venv_dir(venv)
        verdicts, moved = verify(path, sync=True)
    except FreshdError as exc:
        _note(f"{exc}; running the command unchanged")
        return env
    stale = [v for v in verdicts if v.state == "stale"]
    if stale:
        _reinstall(path, stale, command, sync_cmd)
        verdicts, moved = verify(path, sync=True)
    unsure = [v for v in verdicts if v.state != "fresh"]
    if not unsure and moved is None:
        env[NO_SYNC] = "1"
        return env
    if moved is not None:
        _note(f"{moved}: the installer syncs (then record it with: freshd stamp)")
    for v in unsure:
        _note(f"{v.name} is {v.state}: {v.reason or 'cannot be verified'}")
    _note("running the command unchanged: the installer decides")
    return env


def _reinstall(venv: str, stale: list[Verdict], command: list[str], sync_cmd: str | None) -> None:
    """Reinstall the stale packages, then stamp the ones whose content held still."""
    import subprocess

    from freshd_client.oneshot import digest_path

    names = [v.name for v in stale]
    for v in stale:
        _note(f"{v.name} changed ({v.reason}): reinstalling")
    before: dict[str, str | None] = {}
    for v in stale:
        try:
            result = digest_path(v.source, v.scope)
            before[v.name] = result.tree if v.scope == "tree" else result.meta
        except FreshdError:
            before[v.name] = None
    argv = _installer(venv, stale, command, sync_cmd)
    env = dict(os.environ, **{STALE_ENV: " ".join(names)})
    env.pop(NO_SYNC, None)
    try:
        # the installer's output goes to stderr: stdout is the command's
        done = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr, check=False
        )
    except OSError as exc:
        raise FreshdError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise FreshdError(
            f"reinstalling {', '.join(names)} failed ({argv[0]} exited {done.returncode}); "
            "not running the command with old code"
        )
    _written, problems = stamp(venv, names=names, expect=before)
    for problem in problems:
        _note(f"not stamped: {problem}")


def _installer(
    venv: str, stale: list[Verdict], command: list[str], sync_cmd: str | None
) -> list[str]:
    """The command that reinstalls ``stale`` into ``venv``."""
    import shlex

    if sync_cmd:
        argv = shlex.split(sync_cmd)
        if not argv:
            raise FreshdError("--sync-cmd is empty")
        return argv
    python = _venv_python(venv)
    targets: list[str] = []
    for v in stale:
        targets += ["-e", v.source] if v.editable else [v.source]
    uv = _uv(venv, command)
    if uv is not None:
        reinstall = [arg for v in stale for arg in ("--reinstall-package", v.name)]
        return [uv, "pip", "install", "--python", python, *reinstall, *targets]
    return [python, "-m", "pip", "install", "--force-reinstall", "--no-deps", *targets]


def _uv(venv: str, command: list[str]) -> str | None:
    """The uv to reinstall with, when ``venv`` was made by uv: ``$FRESHD_UV``, the uv the
    command runs, else the first on PATH."""
    import shutil

    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as f:
            made_by_uv = any(line.split("=")[0].strip() == "uv" for line in f)
    except OSError:
        made_by_uv = False
    if not made_by_uv:
        return None
    for candidate in (
        os.environ.get("FRESHD_UV"),
        command[0] if os.path.basename(command[0]) == "uv" else None,
        "uv",
        os.path.join(os.path.dirname(sys.executable), "uv"),
    ):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    return None


def _venv_python(venv: str) -> str:
    for rel in ("bin/python", "bin/python3", "Scripts/python.exe"):
        candidate = os.path.join(venv, rel)
        if os.path.exists(candidate):
            return candidate
    raise FreshdError(f"{venv}: no Python interpreter in it")


def _note(text: str) -> None:
    print(f"freshd: {text}", file=sys.stderr)
