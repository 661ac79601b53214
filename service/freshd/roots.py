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
    """The roots of one run of the daemon, and the remembered ones it leaves out."""

    roots: list[str]
    source: Source
    dropped: dict[str, str] = field(default_factory=dict)
    """A remembered root not watched this run → why."""


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
        why = "not given to this freshd serve"
        return Choice(roots, "given", {r: why for r in remembered if r not in roots})
    if not remembered:
        return Choice([here()], "current directory")
    kept: list[str] = []
    dropped: dict[str, str] = {}
    for root in sorted(set(remembered), key=len):  # an outer root before those inside it
        outer = next((k for k in kept if inside(root, k)), None)
        if outer is None:
            kept.append(root)
        else:
            dropped[root] = f"inside the root {outer}"
    return Choice(sorted(kept), "remembered", dropped)


def describe(choice: Choice) -> list[str]:
    """The log lines that say what a run watches and what it dropped."""
    lines = [f"roots ({choice.source}): {', '.join(choice.roots)}"]
    lines += [
        f"root {root} is no longer watched ({why}): its packages leave the index"
        for root, why in sorted(choice.dropped.items())
    ]
    return lines


def here() -> str:
    """The current directory, canonical (``PackagePathError`` when it cannot be a root)."""
    from freshd.indexer import canonical_root

    return canonical_root(os.curdir)
