"""Closure digests: what a task's result on a package depends on.

A package's closure digest covers its tree digest, the closure digests of its local
dependencies (by name), the lock pins of its external dependencies (``lock.py``) and a
declared environment: the Python implementation and version, the platform, and the
variables named with ``--env``. Its text form is ``fc1:<64 hex>`` (BLAKE3 over a
canonical JSON encoding). No absolute path enters it.

Tree digests come from a running daemon's index when it can prove them current (sync
consistency), else they are computed here, with the same answers.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

from blake3 import blake3

from freshd_client.ci import lock as lockfile
from freshd_client.content.oneshot import digest_path
from freshd_client.errors import FreshdError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Literal

    from freshd_client.ci.graph import Graph

    Source = Literal["daemon", "hashed"]

PREFIX = "fc1:"


class Closures:
    """Tree and closure digests of every package of a graph, and where the trees came from."""

    def __init__(self) -> None:
        self.tree: dict[str, str] = {}
        self.closure: dict[str, str] = {}
        self.pins: dict[str, str] = {}
        self.source: dict[str, Source] = {}
        self.env: dict[str, str | None] = {}


def environment(names: Sequence[str] = ()) -> dict[str, str | None]:
    """The declared environment: interpreter and platform, and each named variable's
    value (None when unset, which differs from empty)."""
    env: dict[str, str | None] = {
        "python": f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}",
        "platform": f"{sys.platform}-{platform.machine()}",
    }
    for name in names:
        env[f"env:{name}"] = os.environ.get(name)
    return env


def compute(graph: Graph, env_names: Sequence[str] = (), *, daemon: bool = True) -> Closures:
    """Every package's closure digest. ``daemon``: ask a running daemon first.

    Raises FreshdError naming the package or file that cannot be read.
    """
    found = Closures()
    found.env = environment(env_names)
    paths = [graph.nodes[name].path for name in graph.order]
    from_index = indexed_trees(paths) if daemon else {}
    lock = lockfile.read(graph.root)
    for name in graph.order:
        node = graph.nodes[name]
        tree = from_index.get(node.path)
        found.source[name] = "hashed" if tree is None else "daemon"
        if tree is None:
            tree = digest_path(node.path, "tree").tree
            if tree is None:
                raise FreshdError(f"{node.path}: no tree digest")
        found.tree[name] = tree
        found.pins[name] = lockfile.UNLOCKED if lock is None else lock.pins(name)
        body = {
            "tree": tree,
            "deps": {dep: found.closure[dep] for dep in node.deps},
            "pins": found.pins[name],
            "env": found.env,
        }
        encoded = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        found.closure[name] = PREFIX + blake3(b"freshd-closure-1\0" + encoded).hexdigest()
    return found


SETTLE_S = 10.0
"""How long a CI verb waits for a running daemon to finish rehashing a package edited
just before it asked: longer, and the package is hashed instead."""


def indexed_trees(paths: list[str], settle_s: float = SETTLE_S) -> dict[str, str]:
    """The tree digests a running daemon proves current for ``paths`` (sync consistency):
    each is looked up, then checked against every change made before the check. A package
    the daemon is still rehashing (an edit made just before) is waited for, up to
    ``settle_s`` in all, and checked again. A package it cannot vouch for is left out (it
    is hashed instead); no daemon, none."""
    from freshd_client.transport.client import Client

    found: dict[str, str] = {}
    try:
        with Client() as client:
            pending = list(paths)
            deadline = time.monotonic() + settle_s
            for attempt in range(2):
                known: list[tuple[str, str]] = []
                for path in pending:
                    if attempt:  # after a sync, until it is clean again (or the deadline)
                        info = client.wait_clean(path, max(0.0, deadline - time.monotonic()))
                    else:
                        info = client.lookup(path=path)
                    if info is not None and info.get("state") == "clean" and info.get("tree"):
                        known.append((path, str(info["tree"])))
                fresh = client.check_many(known, consistency="sync") if known else []
                found.update(
                    (path, tree) for (path, tree), ok in zip(known, fresh, strict=True) if ok
                )
                pending = [path for path in pending if path not in found]
                if not pending:
                    break
    except FreshdError:
        return found
    return found
