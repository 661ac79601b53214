"""The parts of ``uv.lock`` that pin a local package's external dependencies.

A local package's pins are the lock entries of every external package it reaches
through the lock's dependency lists (its own, its extras' and its groups'), stopping at
local packages, whose pins their own closure digests cover. An entry is taken whole
(version, source, sdist and wheel hashes, its own dependency list), so a change of any
of them changes the pins of exactly the packages that reach it.
"""

from __future__ import annotations

import json
import os

from blake3 import blake3

from freshd_client.content.project import normalize_name, read_toml
from freshd_client.venvs.uvkeys import LOCK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LOCAL_SOURCES = ("editable", "directory", "virtual")
"""Source kinds of a lock entry that is a local package (a workspace member, a path)."""
UNLOCKED = "unlocked"
"""The pins of a package no lock names: its requirements are in its tree digest."""


class Lock:
    """A parsed ``uv.lock``: entries by normalised name."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.entries: dict[str, list[dict[str, Any]]] = {}
        packages = data.get("package", [])
        for entry in packages if isinstance(packages, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                self.entries.setdefault(normalize_name(entry["name"]), []).append(entry)

    def pins(self, name: str) -> str:
        """The digest of the external entries the local package ``name`` reaches;
        ``UNLOCKED`` when the lock has no local entry of that name."""
        starts = [e for e in self.entries.get(name, []) if _is_local(e)]
        if not starts:
            return UNLOCKED
        seen: dict[str, dict[str, Any]] = {}
        stack = [ref for entry in starts for ref in _references(entry)]
        while stack:
            ref = stack.pop()
            for entry in self._resolve(ref):
                if _is_local(entry):
                    continue
                key = _canonical(entry)
                if key not in seen:
                    seen[key] = entry
                    stack.extend(_references(entry))
        h = blake3(b"freshd-lock-pins-1\0")
        for key in sorted(seen):
            h.update(b"%d:" % len(key.encode()) + key.encode())
        return "b3:" + h.hexdigest()

    def _resolve(self, ref: dict[str, Any]) -> list[dict[str, Any]]:
        """The entries a dependency reference names (by name, and version and source
        where given: a name locked at several versions has several entries)."""
        name = ref.get("name")
        if not isinstance(name, str):
            return []
        found = self.entries.get(normalize_name(name), [])
        for field in ("version", "source"):
            if field in ref:
                found = [e for e in found if e.get(field) == ref[field]]
        return found


def read(root: str) -> Lock | None:
    """The lock of the checkout at ``root``; None when it has none. FreshdError naming
    the file when it cannot be read or is not TOML."""
    path = os.path.join(root, LOCK)
    data = read_toml(path)
    return None if data is None else Lock(data)


def _is_local(entry: dict[str, Any]) -> bool:
    source = entry.get("source")
    return isinstance(source, dict) and any(kind in source for kind in LOCAL_SOURCES)


def _references(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The dependency references of an entry: plain, optional and development ones."""
    lists: list[object] = [entry.get("dependencies", [])]
    for table in ("optional-dependencies", "dev-dependencies"):
        groups = entry.get(table)
        lists += groups.values() if isinstance(groups, dict) else []
    return [
        ref for refs in lists if isinstance(refs, list) for ref in refs if isinstance(ref, dict)
    ]


def _canonical(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
