"""Git state named by ``[tool.uv] cache-keys = [{ git = ... }]``, read without running git.

Entries use paths that start with ``//`` so they can never collide with a file a key
names (its path never holds an empty component, not even when it is absolute).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from blake3 import blake3

from freshd_client.content.smallfile import read_small
from freshd_client.spec.digest import KIND_GIT, Entry

COMMIT_PATH = b"//git:commit"
TAGS_PATH = b"//git:tags"


def entries(package: str, *, commit: bool, tags: bool) -> Iterator[Entry]:
    """The git entries of a meta digest; none when no repository encloses ``package``."""
    if not (commit or tags):
        return
    git_dir = find_git_dir(package)
    if git_dir is None:
        return
    common = _common_dir(git_dir)
    refs = _packed_refs(common)
    if commit:
        head = _resolve_head(git_dir, common, refs)
        if head is not None:
            yield Entry(COMMIT_PATH, KIND_GIT, blake3(head.encode()).digest())
    if tags:
        listing = sorted(_tags(common, refs))
        yield Entry(TAGS_PATH, KIND_GIT, blake3("\n".join(listing).encode()).digest())


def _read(path: str) -> str | None:
    try:
        raw = read_small(path)
        return raw.decode("utf-8").strip() if raw is not None else None
    except (OSError, UnicodeDecodeError):
        return None


def find_git_dir(start: str) -> str | None:
    """The git directory of the repository enclosing ``start``, if any."""
    current = start
    while True:
        candidate = os.path.join(current, ".git")
        if os.path.isdir(candidate):
            return candidate
        text = _read(candidate)  # a worktree or submodule: ".git" is a file
        if text and text.startswith("gitdir:"):
            return os.path.normpath(os.path.join(current, text[len("gitdir:") :].strip()))
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _common_dir(git_dir: str) -> str:
    text = _read(os.path.join(git_dir, "commondir"))
    return os.path.normpath(os.path.join(git_dir, text)) if text else git_dir


def _packed_refs(common: str) -> dict[str, str]:
    text = _read(os.path.join(common, "packed-refs")) or ""
    refs: dict[str, str] = {}
    for line in text.splitlines():
        if line and line[0] not in "#^":
            sha, _, name = line.partition(" ")
            refs[name] = sha
    return refs


def _resolve_head(git_dir: str, common: str, refs: dict[str, str]) -> str | None:
    head = _read(os.path.join(git_dir, "HEAD"))
    for _ in range(8):  # symbolic refs may chain
        if head is None or not head.startswith("ref:"):
            return head
        name = head[4:].strip()
        head = (
            _read(os.path.join(common, name))
            or _read(os.path.join(git_dir, name))
            or refs.get(name)
        )
    return None


def _tags(common: str, refs: dict[str, str]) -> Iterator[str]:
    found = {name: sha for name, sha in refs.items() if name.startswith("refs/tags/")}
    tag_root = os.path.join(common, "refs", "tags")
    for dirpath, _dirs, files in os.walk(tag_root):
        for fname in files:
            full = os.path.join(dirpath, fname)
            sha = _read(full)
            if sha:
                found["refs/" + os.path.relpath(full, os.path.join(common, "refs"))] = sha
    for name, sha in found.items():
        yield f"{sha} {name}"
