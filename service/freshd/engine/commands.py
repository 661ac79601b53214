"""What the engine does for the messages that are not events: roots added and removed
(the API), events lost (an overflow), file systems mounted or unmounted."""

from __future__ import annotations

import logging
import os

from freshd.engine.packages import Packages
from freshd.engine.roots import RootState, Watching, under_any
from freshd.engine.structure import Structure
from freshd.engine.sync import Cookies
from freshd.index.writer import Index
from freshd.watch.mounts import affected
from freshd_client.errors import FreshdError

log = logging.getLogger("freshd.engine")


def rescan_watched(roots: dict[str, RootState], structure: Structure, sync: Cookies) -> None:
    """Events were lost: every watched root is rediscovered and rescanned."""
    for root, state in roots.items():
        if state.mode == "watching":
            structure.rescan_root(root)
            sync.poll(root)  # a cookie's own event may be among the lost


def remount(
    points: frozenset[str],
    roots: dict[str, RootState],
    structure: Structure,
    watching: Watching,
    sync: Cookies,
) -> None:
    """A file system was mounted or unmounted in or above some roots: no event told
    what their paths lead to now, so they are watched afresh and rescanned."""
    for root in affected(points, roots):
        if roots[root].mode != "watching":
            continue  # polled or missing: Engine._tick watches and rescans it
        if not os.path.isdir(root):
            structure.root_gone(root)
            continue
        watching.rewatch(roots[root])
        sync.poll(root)  # written while it was not watched


def add_root(
    root: str, roots: dict[str, RootState], watching: Watching, structure: Structure, index: Index
) -> bool:
    """Follow ``root`` too: watch it, record it, mark its packages dirty. Whether they
    are to be scanned now (False: it was already a root, or it is missing)."""
    if root in roots:
        return False
    for other in roots:
        if under_any(root, {other}) or under_any(other, {root}):
            raise FreshdError(f"{root} overlaps the root {other}")
    state = RootState(root)
    roots[root] = state
    watching.watch(state)
    if state.mode == "missing":
        return False
    index.write(lambda txn: index.put_root(txn, root))
    structure.rescan_root(root)
    return True


def remove_root(
    root: str,
    roots: dict[str, RootState],
    watching: Watching,
    structure: Structure,
    packages: Packages,
    index: Index,
) -> None:
    """Stop following ``root``: its packages leave the index, and so does the root."""
    if root not in roots:
        raise FreshdError(f"{root} is not a root of this daemon")
    watching.source.unwatch(root)
    del roots[root]
    structure.forget([p for p, t in packages.tracked.items() if t.pkg.root == root])
    index.write(lambda txn: index.delete_root(txn, root))
