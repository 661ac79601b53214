"""``freshd run`` of a command other than uv, in a venv stamped by ``freshd stamp``.

(A uv command needs none of this: uv itself decides, by the ``FRESHD_DIGEST…`` cache
keys of ``uvkeys``.)

- every local install fresh by content: the command runs as given;
- some stale: exactly those are reinstalled (``pip install --force-reinstall --no-deps``,
  or the user's ``--sync-cmd``), stamped again, and checked again. A venv made by uv is
  never reinstalled into behind its lock: freshd says to start the command with
  ``uv run`` instead;
- anything freshd cannot tell: the command runs unchanged and the installer decides.

A reinstall that fails stops here (FreshdError): running the command would run the
old code, which is what freshd exists to prevent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from freshd_client.errors import FreshdError
from freshd_client.venvs.stamps import Verdict, stamp, verify
from freshd_client.venvs.uvkeys import made_by_uv
from freshd_client.venvs.venv import venv_dir

STALE_ENV = "FRESHD_STALE"


def prepare(
    venv: str | None, *, sync_cmd: str | None, note: Callable[[str], None]
) -> dict[str, str]:
    """Bring VENV's local installs up to date by content; the environment to run the
    command with. What it does and why is told to ``note``, one line each (the CLI prints
    them). A daemon is asked with sync consistency: a change made just before the start
    is never missed for its settle window."""
    env = dict(os.environ)
    try:
        path = venv_dir(venv)
        verdicts, moved = verify(path, sync=True)
    except FreshdError as exc:
        note(f"{exc}; running the command unchanged")
        return env
    stale = [v for v in verdicts if v.state == "stale"]
    if stale:
        _reinstall(path, stale, sync_cmd, note)
        verdicts, moved = verify(path, sync=True)
    unsure = [v for v in verdicts if v.state != "fresh"]
    if not unsure and moved is None:
        return env
    if moved is not None:
        note(f"{moved}: the installer syncs (then record it with: freshd stamp)")
    for v in unsure:
        note(f"{v.name} is {v.state}: {v.reason or 'cannot be verified'}")
    note("running the command unchanged: the installer decides")
    return env


def _reinstall(
    venv: str, stale: list[Verdict], sync_cmd: str | None, note: Callable[[str], None]
) -> None:
    """Reinstall the stale packages, then stamp the ones whose content held still."""
    import subprocess

    from freshd_client.content.oneshot import digest_path

    names = [v.name for v in stale]
    for v in stale:
        note(f"{v.name} changed ({v.reason}): reinstalling")
    before: dict[str, str | None] = {}
    for v in stale:
        try:
            result = digest_path(v.source, v.scope)
            before[v.name] = result.tree if v.scope == "tree" else result.meta
        except FreshdError:
            before[v.name] = None
    argv = _installer(venv, stale, sync_cmd)
    env = dict(os.environ, **{STALE_ENV: " ".join(names)})
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
        note(f"not stamped: {problem}")


def _installer(venv: str, stale: list[Verdict], sync_cmd: str | None) -> list[str]:
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
    if made_by_uv(venv, {}):
        raise FreshdError(
            f"{', '.join(v.name for v in stale)} changed since {venv} was synced; it is uv's "
            "venv, so let uv reinstall from its lock: start the command as "
            "`freshd run -- uv run CMD` (uv must be in the image), or pass "
            "--sync-cmd 'uv sync --locked'"
        )
    if not _has_pip(python):
        raise FreshdError(
            f"{venv} has no pip to reinstall {', '.join(v.name for v in stale)} with: "
            "install pip into it, or pass --sync-cmd with your installer's command"
        )
    return [python, "-m", "pip", "install", "--force-reinstall", "--no-deps", *targets]


def _has_pip(python: str) -> bool:
    import subprocess

    code = "import importlib.util, sys; sys.exit(not importlib.util.find_spec('pip'))"
    probe = [python, "-c", code]
    return subprocess.run(probe, stdin=subprocess.DEVNULL, check=False).returncode == 0


def _venv_python(venv: str) -> str:
    for rel in ("bin/python", "bin/python3", "Scripts/python.exe"):
        candidate = os.path.join(venv, rel)
        if os.path.exists(candidate):
            return candidate
    raise FreshdError(f"{venv}: no Python interpreter in it")
