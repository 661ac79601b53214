"""The whole-venv fast path of ``freshd check`` and ``freshd run``.

After a check finds every local install fresh (and ``uv.lock`` as stamped), and each
package's verdict rests on the stat cache (``verified``), ``VENV/.freshd/verdict.txt``
keeps that verdict with the lstat identity of everything it rests on: the files and
directories of each package's entry in the stat cache, and what the check itself
read, taken before it read them — ``stamps.json``, ``uv.lock``, the ``lib*``
directories and their ``python*`` children, each ``site-packages``, every
``.dist-info`` directory in it (a file added inside one changes its mtime), and the
``direct_url.json``, ``METADATA`` and ``RECORD`` of the local installs. The next check
answers from it while every one of those paths has the same identity: no JSON, no
hashing, no scanner, a few dozen ``lstat`` calls (a container start that changed
nothing costs little more than the interpreter's own start).

The file is plain text, one path a line, the path as the hex of its bytes::

    freshd-verdict 1
    P <hex path> <size> <mtime_ns> <ctime_ns> <ino> <dev> <type and execute bit>
    P <hex path> -                     (absent when verified)
    V <hex name> <hex source> <0 or 1: editable>

It is never trusted when anything in it is malformed, and nothing whose mtime or
ctime falls within the racy window of the verification is written (git's rule, as
in ``verified``: ``identity``). Deleting it is always safe.
"""

from __future__ import annotations

import os

from freshd_client.spec.identity import lstat_identity, path_line, path_line_holds, racy
from freshd_client.venvs.venv import STAMP_FILE, freshd_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

VERDICT_FILE = "verdict.txt"
_HEADER = "freshd-verdict 2"  # 2: digests of format 2; a verdict of 1 is not trusted


def path(venv: str) -> str:
    return freshd_file(venv, VERDICT_FILE)


def load(venv: str) -> list[tuple[str, str, bool]] | None:
    """The (name, source, editable) of every local install when the last all-fresh
    verdict still holds; None when there is none or anything it rests on changed."""
    try:
        with open(path(venv), "rb") as f:
            lines = f.read().decode("ascii").splitlines()
        if lines[:1] != [_HEADER]:
            return None
        verdicts = []
        for line in lines[1:]:
            tag, *fields = line.split(" ")
            if tag == "P":
                if not path_line_holds(fields):
                    return None
            elif tag == "V" and len(fields) == 3 and fields[2] in ("0", "1"):
                name, source = (os.fsdecode(bytes.fromhex(f)) for f in fields[:2])
                verdicts.append((name, source, fields[2] == "1"))
            else:
                return None
    except (OSError, ValueError, IndexError):
        return None  # no file, a malformed one, or a path that cannot be examined
    return verdicts or None


def inputs(venv: str, lockfile: str) -> list[tuple[str, list[int] | None]]:
    """The identities of what a check reads besides the packages' content (see the
    module's description), taken before it reads them."""
    found: list[tuple[str, list[int] | None]] = []

    def add(*paths: str) -> None:
        found.extend((p, lstat_identity(p)) for p in paths)  # a directory before its listing

    add(freshd_file(venv, STAMP_FILE), lockfile)
    sites = [os.path.join(venv, "Lib", "site-packages")]  # Windows
    for lib in ("lib", "lib64"):
        base = os.path.join(venv, lib)
        add(base)
        if os.path.islink(base):
            continue  # lib64 -> lib: its own identity changes if it is pointed elsewhere
        for child in _listing(base):
            add(os.path.join(base, child))
            sites.append(os.path.join(base, child, "site-packages"))
    for site in sites:
        add(site)
        for entry in _listing(site):
            if entry.endswith(".dist-info"):
                dist_info = os.path.join(site, entry)
                add(dist_info)
                direct_url = os.path.join(dist_info, "direct_url.json")
                if os.path.lexists(direct_url):
                    add(direct_url, os.path.join(dist_info, "METADATA"))
                    add(os.path.join(dist_info, "RECORD"))
    return found


def _listing(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []  # missing or not a directory: its recorded identity says so


def save(
    venv: str,
    started_ns: int,
    paths: Iterable[tuple[str, list[int] | None]],
    verdicts: Iterable[tuple[str, str, bool]],
) -> None:
    """Record an all-fresh verdict resting on ``paths``, unless something among them
    was modified within the racy window before ``started_ns`` (when the verification
    began); a venv that cannot be written to keeps none, silently."""
    kept = list(paths)
    if racy((i for _p, i in kept), started_ns):
        forget(venv)
        return
    lines = [_HEADER, *(path_line(p, i) for p, i in kept)]
    for name, source, editable in verdicts:
        lines.append(f"V {os.fsencode(name).hex()} {os.fsencode(source).hex()} {int(editable)}")
    write_lines(path(venv), lines)


def write_lines(target: str, lines: list[str]) -> None:
    """Replace ``target`` with ``lines`` atomically; a venv that cannot be written to
    keeps nothing, silently (a cache costs speed when missing, never answers)."""
    from freshd_client.content.smallfile import write_atomic  # not on the path of an answer

    try:
        write_atomic(target, ("\n".join(lines) + "\n").encode("ascii"))
    except OSError:
        return  # the cache is kept another time


def forget(venv: str) -> None:
    """Remove the recorded verdict (it no longer holds)."""
    import contextlib

    with contextlib.suppress(FileNotFoundError, OSError):
        os.unlink(path(venv))
