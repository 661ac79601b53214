"""Which roots a daemon watches, and how the index remembers them.

``freshd serve ROOT…`` watches exactly the ROOTs; a plain ``freshd serve`` watches the
roots remembered in the index (the ``roots`` database: added with ``freshd add``,
given to an earlier ``freshd serve ROOT…`` or indexed with ``freshd index``), else the
current directory. The ``roots`` database then holds exactly the running daemon's
roots (direct clients read it to choose where a sync cookie goes), and the packages of
any other root leave the index (``Engine._forget_others``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from freshd_client.errors import FreshdError

Source = Literal["given", "remembered", "current directory"]


@dataclass(frozen=True, slots=True)
class Choice:
    """The roots of one run of the daemon, and what became of the other remembered ones."""

    roots: list[str]
    source: Source
    dropped: list[str] = field(default_factory=list)
    """Remembered roots not given to this run: they and their packages are forgotten."""
    merged: dict[str, str] = field(default_factory=dict)
    """A remembered root inside another → that one, which watches it as part of itself."""


def inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both canonical)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def choose(given: Sequence[str], remembered: Sequence[str], here: Callable[[], str]) -> Choice:
    """The roots of a run: ``given`` (canonical) when any, else ``remembered``, else
    ``here()``. Given roots that overlap are an error (as for ``freshd add``); a
    remembered root inside another is watched as part of that one."""
    if given:
        roots = list(dict.fromkeys(given))
        for n, root in enumerate(roots):
            for other in roots[:n]:
                if inside(root, other) or inside(other, root):
                    raise FreshdError(f"the roots {other} and {root} overlap: give only one")
        return Choice(roots, "given", sorted(set(remembered) - set(roots)))
    if not remembered:
        return Choice([here()], "current directory")
    kept: list[str] = []
    merged: dict[str, str] = {}
    for root in sorted(set(remembered), key=len):  # an outer root before those inside it
        outer = next((k for k in kept if inside(root, k)), None)
        if outer is None:
            kept.append(root)
        else:
            merged[root] = outer
    return Choice(sorted(kept), "remembered", merged=merged)


def describe(choice: Choice) -> list[str]:
    """The log lines that say what a run watches and what it dropped."""
    return [
        f"roots ({choice.source}): {', '.join(choice.roots)}",
        *(
            f"root {root} is no longer watched (not given to this freshd serve): its "
            "packages leave the index"
            for root in choice.dropped
        ),
        *(
            f"root {root} is inside the root {outer}: watched as part of it"
            for root, outer in sorted(choice.merged.items())
        ),
    ]


def here() -> str:
    """The current directory, canonical (``PackagePathError`` when it cannot be a root)."""
    from freshd.crawl.indexer import canonical_root

    return canonical_root(os.curdir)
