"""Hard links: files with more than one name, and which packages share them.

inotify reports a write under the name it was made through only. A file of one
package that is also a name in another package (``cp -al``, link farms) changes
both; and a name outside every watched file set changes it with no event at all.

The engine records every file-set member whose link count is above one, by
``(device, inode)``. An event on one name dirties every package holding another
name. An inode with more links than the names known here has a name that cannot
be watched: the packages holding it are never reported clean (DESIGN.md's
invariant), and are rescanned periodically and before every ``sync`` answer.
"""

from __future__ import annotations

from collections.abc import Iterable

Inode = tuple[int, int]  # (st_dev, st_ino)
Name = tuple[str, str]  # (package path, relative path)
Link = tuple[str, int, int, int]
"""A linked file as a scan reports it: (relative path, st_dev, st_ino, st_nlink)."""


class LinkTable:
    """The linked files of the packages the engine follows."""

    def __init__(self) -> None:
        self._inode: dict[Name, Inode] = {}
        self._names: dict[Inode, set[Name]] = {}
        self._nlink: dict[Inode, int] = {}
        self._by_package: dict[str, set[str]] = {}

    def update(self, package: str, links: Iterable[Link], changed: Iterable[str] | None) -> None:
        """Record a scan of ``package``: of every file (``changed`` None), or of only the
        ``changed`` relative paths (a targeted rescan)."""
        rels = self._by_package.get(package, set())
        for rel in list(rels) if changed is None else [r for r in changed if r in rels]:
            self._drop((package, rel))
        for rel, dev, ino, nlink in links:
            inode = (dev, ino)
            name = (package, rel)
            self._drop(name)
            self._inode[name] = inode
            self._names.setdefault(inode, set()).add(name)
            self._nlink[inode] = nlink
            self._by_package.setdefault(package, set()).add(rel)

    def add_name(self, package: str, rel: str, inode: Inode) -> None:
        """A name found in the stored records of a package scanned before the link."""
        name = (package, rel)
        if name not in self._inode and inode in self._nlink:
            self._inode[name] = inode
            self._names[inode].add(name)
            self._by_package.setdefault(package, set()).add(rel)

    def forget(self, package: str) -> None:
        """``package`` is no longer followed."""
        for rel in list(self._by_package.get(package, ())):
            self._drop((package, rel))

    def others(self, package: str, rel: str) -> list[Name]:
        """The other names of the file at ``rel`` in ``package`` (none if not linked)."""
        inode = self._inode.get((package, rel))
        if inode is None:
            return []
        return sorted(n for n in self._names[inode] if n != (package, rel))

    def short(self) -> dict[Inode, int]:
        """Inodes with more links than known names, with their link counts."""
        return {i: n for i, n in self._nlink.items() if n > len(self._names[i])}

    def holders(self, inodes: Iterable[Inode]) -> set[str]:
        """The packages holding a name of any of ``inodes``."""
        return {p for i in inodes for p, _rel in self._names.get(i, ())}

    def _drop(self, name: Name) -> None:
        inode = self._inode.pop(name, None)
        if inode is None:
            return
        names = self._names[inode]
        names.discard(name)
        if not names:
            del self._names[inode], self._nlink[inode]
        rels = self._by_package[name[0]]
        rels.discard(name[1])
        if not rels:
            del self._by_package[name[0]]
