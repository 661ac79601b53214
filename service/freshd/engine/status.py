"""What the engine records about itself: the daemon record (its status and heartbeat,
read by every client for liveness), the roots of this run, and why roots answer unknown.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping

import lmdb

from freshd import __version__
from freshd.config import Config
from freshd.engine.packages import Tracked
from freshd.engine.roots import RootState
from freshd.index.writer import Index
from freshd_client.spec import schema as sc

log = logging.getLogger("freshd.engine")


def write_daemon(index: Index, cfg: Config, started_ns: int, status: sc.DaemonStatus) -> None:
    """Write the daemon record, with a heartbeat of now."""
    record = sc.DaemonRecord(
        api_version=sc.API_VERSION,
        status=status,
        pid=os.getpid(),
        heartbeat_ns=time.time_ns(),
        started_ns=started_ns,
        socket=cfg.socket or None,
        version=__version__,
    )
    index.write(
        lambda txn: txn.put(sc.META_DAEMON, sc.encode_daemon(record), db=index.dbs[sc.DB_META])
    )


def record_roots(index: Index, roots: Collection[str], txn: lmdb.Transaction) -> None:
    """At start: the index remembers exactly this run's roots (``freshd.roots``)."""
    cursor = txn.cursor(db=index.dbs[sc.DB_ROOTS])
    known = {bytes(k) for k, _v in cursor}
    for root in roots:
        if sc.path_key(root) not in known:
            index.put_root(txn, root)
    for stale in known - {sc.path_key(r) for r in roots}:
        txn.delete(stale, db=index.dbs[sc.DB_ROOTS])


def forget_others(
    index: Index, tracked: Collection[str], roots: Collection[str], txn: lmdb.Transaction
) -> None:
    """After the first crawl: the packages found in no root of this run (roots no
    longer watched, or missing now) leave the index: no record is left behind that
    nothing keeps current."""
    cursor = txn.cursor(db=index.dbs[sc.DB_PACKAGES])
    others = [
        record
        for record in (sc.decode_package(v) for _k, v in cursor)
        if record.path not in tracked
    ]
    by_root: dict[str, int] = {}
    for record in others:
        index.delete_package(txn, record.path)
        by_root[record.root] = by_root.get(record.root, 0) + 1
    for root, count in sorted(by_root.items()):
        why = "the root is missing" if root in roots else "no longer a root"
        log.info("removed %d package(s) of %s from the index: %s", count, root, why)
    if others:
        index.touch(txn)


def problems(roots: Mapping[str, RootState], tracked: Mapping[str, Tracked]) -> dict[str, str]:
    """Why a root's packages, or some of them, answer unknown: its watch state's
    reason, else the first directory below it that is not watched (any thread)."""
    found = {r: s.reason for r, s in list(roots.items()) if s.reason}
    for package in list(tracked.values()):
        if package.unwatched is not None and package.pkg.root not in found:
            found[package.pkg.root] = package.unwatched
    return found
