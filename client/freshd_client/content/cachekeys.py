"""uv's ``[tool.uv] cache-keys``, read as uv 0.13 reads them (docs/digest-spec.md).

uv decides whether a built package is still fresh from the keys' timestamps; freshd's
meta digest covers the same inputs by content. What a key selects is uv's choice, not
freshd's file set: a glob also selects ignored files, a path may lead out of the
package, a symlink is followed. Checked against the real uv in ``tests/test_uv_keys.py``.

- A file key without ``*``, ``?``, ``[`` or ``{`` is joined to the package directory
  (an absolute key replaces it) and read if it is a regular file once symlinks are
  followed.
- A glob key is split into a base (its leading components without a glob character,
  ``.`` dropped) and a pattern; keys whose bases nest are walked together from the
  shortest base, their patterns joined to the rest of their own base. Each pattern has
  gitignore's shape as uv's glob walker reads it: one without a ``/`` matches a name at
  any depth below the base, except ``*`` alone, which matches the base's own entries;
  one with a ``/`` is anchored at the base; ``*`` and ``?`` (one byte) never match
  ``/``, ``**`` matches any number of directories, ``{a,b}`` either, ``[...]`` a class.
  The walk follows no symlink to a directory; a match is kept when it is, or leads to,
  a regular file.
- A directory key counts when it leads to a directory.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from freshd_client.content.project import CacheKey

GLOB_CHARS = frozenset("*?[{")
"""A file key holding one of these is a glob (uv's test)."""
_GLOB_LIKE = frozenset("*{}?[]")  # a component uv's splitter treats as part of a pattern

ROOT, PARENT, CURRENT = "/", "..", "."


def is_glob(key: str) -> bool:
    return not GLOB_CHARS.isdisjoint(key)


def components(key: str) -> list[str]:
    """The components of a path as uv's Rust ``Path::components`` gives them on Unix:
    a leading ``/`` as ``/``, a leading ``.`` kept, other ``.`` and empty ones dropped."""
    parts: list[str] = [ROOT] if key.startswith("/") else []
    for i, part in enumerate(key.split("/")):
        if not part or (part == CURRENT and (i > 0 or parts)):
            continue
        parts.append(part)
    return parts


def label(key: str) -> str | None:
    """The entry path of a plain key: its components joined with ``/`` (``.`` dropped,
    ``..`` kept, an absolute key keeps its leading ``/``); None when it names the
    package directory itself."""
    parts = [p for p in components(key) if p != CURRENT]
    if not parts or parts == [ROOT]:
        return None
    if parts[0] == ROOT:
        return "/" + "/".join(parts[1:])
    return "/".join(parts)


def file_target(package: str, key: str) -> tuple[str, str] | None:
    """(entry path, path to read) of a plain file key; None when uv would read nothing
    from it as a file (it names the package directory, or ends with ``/``)."""
    name = label(key)
    if name is None or key.endswith("/") or key.endswith("/."):
        return None
    return name, os.path.join(package, key)


def dir_target(package: str, key: str) -> tuple[str, str]:
    """(entry path, path to test) of a directory key (``.`` for the package itself)."""
    return label(key) or CURRENT, os.path.join(package, key)


def split_glob(key: str) -> tuple[list[str], list[str]]:
    """A glob's base components and pattern components (uv's ``split_glob``)."""
    base: list[str] = []
    pattern: list[str] = []
    globbing = False
    parts = components(key)
    for i, part in enumerate(parts):
        normal = part not in (ROOT, PARENT, CURRENT)
        globbing = globbing or (normal and not _GLOB_LIKE.isdisjoint(part))
        if i == len(parts) - 1:
            (pattern if globbing or normal else base).append(part)
        elif part != CURRENT:
            (pattern if globbing else base).append(part)
    return base, pattern


def cluster(keys: list[str]) -> list[tuple[list[str], list[str]]]:
    """uv's grouping of glob keys: (base components, patterns relative to it), so that
    a key whose base lies below another's, through plain names, is walked with it."""
    split = [split_glob(k) for k in keys]
    bases = {tuple(b) for b, _ in split}
    groups: dict[tuple[str, ...], list[str]] = {}
    for base, pattern in split:
        group = tuple(base)
        # the shortest base of some key that is a prefix of this one, reached from it
        # through plain names only (uv's trie: other components start their own group)
        for n in range(len(base) + 1):
            prefix = tuple(base[:n])
            if prefix in bases and all(p not in (ROOT, PARENT, CURRENT) for p in base[n:]):
                group = prefix
                break
        rest = [*base[len(group) :], *pattern]
        groups.setdefault(group, []).append("/".join(rest))
    return [(list(b), p) for b, p in groups.items()]


class GlobSet:
    """The patterns of one group, matched as uv's glob walker matches them: on the
    bytes of a path (``?`` matches one byte, as in uv)."""

    def __init__(self, patterns: list[str]) -> None:
        import re

        self.files: list[re.Pattern[bytes]] = []
        for pattern in patterns:
            if pattern == "*":
                pattern = "/*"  # the walker's special case: the base's own entries
            if pattern.endswith("/"):
                continue  # a directory-only pattern selects no file
            anchored = "/" in pattern
            body = os.fsencode(pattern.lstrip("/"))
            if body.endswith(b"/**"):
                body += b"/*"  # "a/**": everything inside a, not a itself
            expr = _glob_regex(body)
            if not anchored:
                expr = b"(?:.*/)?" + expr
            self.files.append(re.compile(expr, re.DOTALL))

    def matches(self, rel: bytes) -> bool:
        return any(p.fullmatch(rel) for p in self.files)


def _glob_regex(glob: bytes) -> bytes:
    """A regular expression for a glob with ``/`` as a literal separator."""
    import re

    out: list[bytes] = []
    i, n = 0, len(glob)
    in_alt = False
    while i < n:
        c = glob[i : i + 1]
        if c == b"*":
            j = i
            while j < n and glob[j : j + 1] == b"*":
                j += 1
            if (
                j - i >= 2
                and (i == 0 or glob[i - 1 : i] == b"/")
                and (j == n or glob[j : j + 1] == b"/")
            ):
                if j == n:
                    out.append(b".*")
                else:
                    out.append(b"(?:.*/)?")
                    j += 1
            else:
                out.append(b"[^/]*")
            i = j
        elif c == b"?":
            out.append(b"[^/]")
            i += 1
        elif c == b"[":
            start = i + 2 if glob[i + 1 : i + 2] in (b"!", b"^") else i + 1
            end = glob.find(b"]", start + 1 if glob[start : start + 1] == b"]" else start)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            inner = glob[i + 1 : end]
            negate = inner[:1] in (b"!", b"^")
            if negate:
                inner = inner[1:]
            members = b"".join(b"-" if b == 0x2D else b"\\x%02x" % b for b in inner)
            out.append((b"[^/" if negate else b"[") + members + b"]")
            i = end + 1
        elif c == b"{" and not in_alt:
            out.append(b"(?:")
            in_alt = True
            i += 1
        elif c == b"}" and in_alt:
            out.append(b")")
            in_alt = False
            i += 1
        elif c == b"," and in_alt:
            out.append(b"|")
            i += 1
        elif c == b"\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1 : i + 2]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return b"".join(out)


def glob_targets(package: str, keys: list[str]) -> Iterator[tuple[str, str]]:
    """(entry path, path to read) of every file the glob ``keys`` select."""
    for base, patterns in cluster(keys):
        globs = GlobSet(patterns)
        if base and base[0] == ROOT:
            top = "/" + "/".join(base[1:])
            prefix = top.rstrip("/") + "/"
        else:
            top = os.path.join(package, *base)
            prefix = "/".join(base) + "/" if base else ""
        for raw in _walk(os.fsencode(top), globs):
            rel = os.fsdecode(raw)
            path = os.path.join(top, rel)
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    continue  # a directory, or a link to one (uv skips it)
            except OSError:
                continue
            yield prefix + rel, path


def _walk(top: bytes, globs: GlobSet) -> Iterator[bytes]:
    """Relative paths of the files and symlinks below ``top`` that ``globs`` match; no
    symlink to a directory is followed."""
    stack = [b""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(top, rel_dir) if rel_dir else top) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            rel = rel_dir + b"/" + entry.name if rel_dir else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(rel)
                    continue
            except OSError:
                continue
            if globs.matches(rel):
                yield rel


def meta_paths(keys: tuple[CacheKey, ...] | None) -> list[str] | None:
    """The paths inside the package that the meta digest reads, relative to it, when
    they are a fixed list (what a seal or a stat cache can check by lstat); None when
    they are not: a glob, git state, an environment variable, a path out of the package.
    A caller must also treat a symlink among them as not fixed (it is followed)."""
    if keys is None:
        return list(DEFAULT_FILES) + list(DEFAULT_DIRS)
    paths = []
    for key in keys:
        fixed, name = _read_path(key)
        if not fixed or key.git_commit or key.git_tags:
            return None
        if name is not None:
            paths.append(name)
    return paths


def local_only(package: str, keys: tuple[CacheKey, ...] | None) -> bool:
    """Whether the meta digest of the package at canonical ``package`` reads what its
    watcher cannot see: an environment variable, a glob, a path out of the package, or
    a key read through a symlink (``ScanResult.meta_local``). Git state is not: the
    daemon watches the repository's refs itself."""
    for key in keys if keys is not None else _default_keys():
        fixed, name = _read_path(key)
        if not fixed or (name is not None and _through_link(package, name)):
            return True
    return False


def _read_path(key: CacheKey) -> tuple[bool, str | None]:
    """Whether what ``key`` reads is a fixed path inside the package (or no path: git
    state, the package directory itself), and that path relative to the package. Not
    fixed: an environment variable, a glob, a path out of the package."""
    if key.env is not None:
        return False, None
    raw = key.file if key.file is not None else key.dir
    if raw is None:
        return True, None
    if key.file is not None and is_glob(raw):
        return False, None
    name = label(raw)
    if name is not None and (name.startswith("/") or PARENT in name.split("/")):
        return False, None
    return True, name


def _through_link(package: str, rel: str) -> bool:
    """Whether ``rel`` (below ``package``) or a directory on the way is a symlink."""
    path = package
    for part in rel.split("/"):
        path = os.path.join(path, part)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return True
        except OSError:
            return False  # absent: read as absent, nothing to follow
    return False


DEFAULT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
DEFAULT_DIRS = ("src",)
"""uv's cache keys when ``[tool.uv] cache-keys`` is not set."""


def _default_keys() -> tuple[CacheKey, ...]:
    from freshd_client.content.project import CacheKey

    return tuple(CacheKey(file=f) for f in DEFAULT_FILES) + tuple(
        CacheKey(dir=d) for d in DEFAULT_DIRS
    )
