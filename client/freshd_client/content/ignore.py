"""gitignore(5) patterns, matched as git 2.39 matches them (``dir.c``, ``wildmatch.c``).

Written from git's documentation and checked against the real ``git`` by differential
tests (``tests/test_ignore_git.py``); docs/digest-spec.md states the rules. pathspec's
``GitIgnoreSpec`` differed from git in the cases listed in issue 19, so freshd matches
with this module alone.

Everything is bytes: a file is split at ``\\n`` only (a ``\\r`` before it is dropped), a
UTF-8 byte-order mark at its start is skipped, a line starting with ``#`` is a comment,
trailing spaces are stripped unless escaped by ``\\`` (a TAB is kept), and ``?``, ``*``
and ``[...]`` match bytes, not characters.

A pattern without a ``/`` before its end is matched against the last component of a
path; any other pattern against the path relative to the directory of its rule file.
git compares the literal part of a pattern (up to its first ``*``, ``?``, ``[`` or ``\\``)
first and then matches only the rest as a glob: a ``**`` at the start of that rest
counts as being at the start of the pattern (``foo**/bar`` matches ``foobar``), and
freshd does the same.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Iterable, Sequence

_BOM = b"\xef\xbb\xbf"
_SPECIAL = b"*?[\\"

# wildmatch's character classes ([:alpha:] ...), over the ASCII bytes git's ctype knows.
_POSIX: dict[bytes, frozenset[int]] = {
    b"alnum": frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    b"alpha": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    b"blank": frozenset(b" \t"),
    b"cntrl": frozenset([*range(32), 127]),
    b"digit": frozenset(b"0123456789"),
    b"graph": frozenset(range(33, 127)),
    b"lower": frozenset(b"abcdefghijklmnopqrstuvwxyz"),
    b"print": frozenset(range(32, 127)),
    b"punct": frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    b"space": frozenset(b" \t\n\v\f\r"),
    b"upper": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    b"xdigit": frozenset(b"0123456789ABCDEFabcdef"),
}


class _MalformedError(Exception):
    """A pattern that git's wildmatch aborts on: it matches nothing."""


def split_lines(raw: bytes) -> list[bytes]:
    """The pattern lines of a rule file's bytes, as git reads them (comments, blank
    lines and trailing unescaped spaces removed; other bytes kept as they are)."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    lines = []
    for line in raw.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.startswith(b"#"):
            continue
        line = _trim_trailing_spaces(line)
        if line:
            lines.append(line)
    return lines


def _trim_trailing_spaces(line: bytes) -> bytes:
    """Drop the run of spaces at the end of ``line`` unless a ``\\`` escapes its first."""
    end = len(line)
    while end and line[end - 1] == 0x20:
        end -= 1
    if end == len(line):
        return line
    # Is the byte before the run an escaping backslash (an odd number of them)?
    slashes = 0
    while end - slashes - 1 >= 0 and line[end - slashes - 1] == 0x5C:
        slashes += 1
    return line[: end + 1] if slashes % 2 else line[:end]


class Pattern:
    """One pattern line, compiled."""

    __slots__ = ("dir_only", "expr", "negative", "text")

    def __init__(self, line: bytes) -> None:
        self.text = line
        self.negative = line.startswith(b"!")
        body = line[1:] if self.negative else line
        self.dir_only = body.endswith(b"/")
        if self.dir_only:
            body = body[:-1]
        # expr: a regular expression for the path relative to the rule file's directory;
        # None when git's wildmatch aborts on the pattern (it then matches nothing).
        self.expr: bytes | None
        if b"/" not in body:  # matched against the last component, at any depth
            glob = _translate(body, literal=_literal_length(body) == len(body))
            self.expr = b"(?:.*/)?" + glob if glob is not None else None
        else:
            literal = _literal_length(body)
            if body.startswith(b"/"):
                body, literal = body[1:], literal - 1
            rest = _translate(body[literal:], literal=False)
            self.expr = _escape(body[:literal]) + rest if rest is not None else None

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def _literal_length(body: bytes) -> int:
    for i, byte in enumerate(body):
        if byte in _SPECIAL:
            return i
    return len(body)


def _translate(glob: bytes, *, literal: bool) -> bytes | None:
    """A regular expression for wildmatch of ``glob`` with WM_PATHNAME (``*``, ``?`` and
    classes never match ``/``); None when git's wildmatch aborts on it (matches nothing)."""
    if literal:
        return _escape(glob)
    out: list[bytes] = []
    i, n = 0, len(glob)
    try:
        while i < n:
            c = glob[i]
            if c == 0x2A:  # *
                start = i
                while i < n and glob[i] == 0x2A:
                    i += 1
                if i - start == 1:
                    out.append(b"[^/]*")
                    continue
                at_boundary_before = start == 0 or glob[start - 1] == 0x2F
                if at_boundary_before and i == n:
                    out.append(b".*")
                elif at_boundary_before and glob[i] == 0x2F:
                    out.append(b"(?:.*/)?")  # "**/": zero or more directories
                    i += 1
                elif at_boundary_before and glob[i : i + 2] == b"\\/":
                    out.append(b".*")  # an escaped slash: no zero-directory shortcut
                else:
                    out.append(b"[^/]*")
            elif c == 0x3F:  # ?
                out.append(b"[^/]")
                i += 1
            elif c == 0x5B:  # [
                matched, i = _char_class(glob, i)
                out.append(_byte_set(matched))
            elif c == 0x5C:  # backslash: the next byte is literal
                if i + 1 >= n:
                    raise _MalformedError
                out.append(_escape(glob[i + 1 : i + 2]))
                i += 2
            else:
                out.append(_escape(glob[i : i + 1]))
                i += 1
    except _MalformedError:
        return None
    return b"".join(out)


def _char_class(glob: bytes, i: int) -> tuple[set[int], int]:
    """The bytes the class starting at ``glob[i] == '['`` matches, and the index after it."""
    n = len(glob)
    i += 1
    negated = i < n and glob[i] in b"!^"
    if negated:
        i += 1
    members: set[int] = set()
    prev: int | None = None
    first = True
    while True:
        if i >= n:
            raise _MalformedError
        c = glob[i]
        if c == 0x5D and not first:  # ]
            i += 1
            break
        first = False
        if c == 0x5C:
            i += 1
            if i >= n:
                raise _MalformedError
            c = glob[i]
            members.add(c)
            prev = c
        elif c == 0x2D and prev is not None and i + 1 < n and glob[i + 1] != 0x5D:
            i += 1
            hi = glob[i]
            if hi == 0x5C:
                i += 1
                if i >= n:
                    raise _MalformedError
                hi = glob[i]
            members.update(range(prev, hi + 1))
            prev = None
        elif c == 0x5B and i + 1 < n and glob[i + 1] == 0x3A:  # "[:"
            end = glob.find(b"]", i + 2)
            if end < 0:
                raise _MalformedError
            name = glob[i + 2 : end]
            if not name.endswith(b":"):
                members.add(0x5B)  # no ":]": a plain "["
                prev = 0x5B
                i += 1
                continue
            cls = _POSIX.get(name[:-1])
            if cls is None:
                raise _MalformedError
            members.update(cls)
            i = end
            prev = None
        else:
            members.add(c)
            prev = c
        i += 1
    if negated:
        members = set(range(256)) - members
    members.discard(0x2F)
    return members, i


def _byte_set(members: set[int]) -> bytes:
    if not members:
        return b"(?!)"
    return b"[" + b"".join(b"\\x%02x" % b for b in sorted(members)) + b"]"


def _escape(literal: bytes) -> bytes:
    """``literal`` as a regular expression matching exactly its bytes."""
    return b"".join(bytes((b,)) if b in _PLAIN else b"\\x%02x" % b for b in literal)


_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class RuleList:
    """The patterns of one rule file (or of ``[tool.freshd]``), for paths relative to
    its directory. Compiled when first asked (``re`` is loaded only then)."""

    __slots__ = ("_dirs", "_files", "patterns")

    def __init__(self, lines: Iterable[bytes]) -> None:
        self.patterns = [Pattern(line) for line in lines]
        self._dirs: tuple[re.Pattern[bytes] | None, list[bool]] | None = None
        self._files: tuple[re.Pattern[bytes] | None, list[bool]] | None = None

    def decide(self, rel: bytes, is_dir: bool) -> bool | None:
        """True when the last pattern matching ``rel`` ignores it, False when it is a
        negation, None when no pattern matches."""
        if self._dirs is None or self._files is None:
            # The last pattern that matches decides: one alternation, latest pattern
            # first, finds it in one regex call (the group that took part names it).
            self._dirs = _union(self.patterns)
            self._files = _union([p if not p.dir_only else None for p in self.patterns])
        union, negative = self._dirs if is_dir else self._files
        if union is None:
            return None
        found = union.fullmatch(rel)
        if found is None:
            return None
        return not negative[found.lastindex or 0]


def _union(
    patterns: Sequence[Pattern | None],
) -> tuple[re.Pattern[bytes] | None, list[bool]]:
    parts: list[bytes] = []
    negative = [False]  # group numbers start at 1
    for pattern in reversed(patterns):
        if pattern is None or pattern.expr is None:
            continue
        parts.append(b"(" + pattern.expr + b")")
        negative.append(pattern.negative)
    if not parts:
        return None, negative
    import re

    return re.compile(b"|".join(parts), re.DOTALL), negative
