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
in ``verified``). Deleting it is always safe.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

VERDICT_FILE = "verdict.txt"
_HEADER = "freshd-verdict 2"  # 2: digests of format 2; a verdict of 1 is not trusted
RACY_WINDOW_NS = 2_000_000_000  # records.RACY_WINDOW_NS, without loading the digests
RECORD_KIND_BITS = {b"f": stat.S_IFREG, b"x": stat.S_IFREG | stat.S_IXUSR, b"l": stat.S_IFLNK}
"""The type bits of ``identity`` for a file record's kind (file, executable, symlink)."""


def identity(st: os.stat_result) -> list[int]:
    """Size, mtime, ctime, inode, device, and the type with the execute bit of a
    regular file (what a digest sees of a mode); a directory's size does not count."""
    mode = st.st_mode
    kind = stat.S_IFMT(mode) | (mode & stat.S_IXUSR if stat.S_ISREG(mode) else 0)
    size = st.st_size if not stat.S_ISDIR(mode) else 0
    return [size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, kind]


def lstat_identity(path: str | bytes) -> list[int] | None:
    """The identity of ``path`` (None when it does not exist); OSError otherwise."""
    try:
        return identity(os.lstat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


def path(venv: str) -> str:
    return os.path.join(venv, ".freshd", VERDICT_FILE)


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
                expected = None if fields[1:] == ["-"] else [int(v) for v in fields[1:]]
                if expected is not None and len(expected) != 6:
                    return None
                if lstat_identity(bytes.fromhex(fields[0])) != expected:
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
    from freshd_client.stamps import STAMP_DIR, STAMP_FILE

    found: list[tuple[str, list[int] | None]] = []

    def add(*paths: str) -> None:
        found.extend((p, lstat_identity(p)) for p in paths)  # a directory before its listing

    add(os.path.join(venv, STAMP_DIR, STAMP_FILE), lockfile)
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
    newest = max((max(i[1], i[2]) for _p, i in kept if i is not None), default=0)
    if newest >= started_ns - RACY_WINDOW_NS:
        forget(venv)
        return
    lines = [_HEADER, *path_lines(kept)]
    for name, source, editable in verdicts:
        lines.append(f"V {os.fsencode(name).hex()} {os.fsencode(source).hex()} {int(editable)}")
    write_lines(path(venv), lines)


def path_lines(paths: Iterable[tuple[str, list[int] | None]]) -> list[str]:
    """The ``P`` lines of a verdict file (``uvcache``'s too): each path in hex, then its
    identity, or ``-`` when it was absent."""
    lines = []
    for p, ident in paths:
        shown = "-" if ident is None else " ".join(str(v) for v in ident)
        lines.append(f"P {os.fsencode(p).hex()} {shown}")
    return lines


def write_lines(target: str, lines: list[str]) -> None:
    """Replace ``target`` with ``lines`` atomically; a venv that cannot be written to
    keeps nothing, silently (a cache costs speed when missing, never answers)."""
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, target)
    except OSError:
        import contextlib

        with contextlib.suppress(OSError):
            os.unlink(tmp)


def forget(venv: str) -> None:
    """Remove the recorded verdict (it no longer holds)."""
    import contextlib

    with contextlib.suppress(FileNotFoundError, OSError):
        os.unlink(path(venv))
