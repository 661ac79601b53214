"""A file's record in the index and the one-shot scan: its stat identity and digest.

Kept apart from ``schema`` (LMDB, dataclasses, typing): the one-shot scan of
``freshd check`` and ``freshd run`` needs only this, and every millisecond of a
container's start counts.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from freshd_client.spec import digest as dg
from freshd_client.spec import identity as ids
from freshd_client.spec.identity import stat_identity

COOKIE_PREFIX = ".freshd-cookie-"
"""Name prefix of sync cookie files: never part of a file set; acknowledged in ``cookies``."""


class FileRecord(NamedTuple):
    """A ``files`` value: a file's stat identity and its entry digest.

    A named tuple rather than a dataclass: a warm pass decodes one per file, and
    tuples are several times cheaper to build.
    """

    rel: str
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int
    kind: bytes
    digest: bytes
    hashed_at_ns: int

    def same_stat(self, st: os.stat_result) -> bool:
        """Whether ``st`` shows the file exactly as it was when hashed."""
        identity = (self.size, self.mtime_ns, self.ctime_ns, self.ino, self.dev)
        return identity == stat_identity(st) and self.kind == dg.kind_of(st.st_mode)

    def reusable_for(self, st: os.stat_result) -> bool:
        """The stat fast path with the racy rule of every stat cache (``identity.racy``),
        written out: it runs once a file of a warm pass."""
        limit = self.hashed_at_ns - ids.RACY_WINDOW_NS
        return st.st_mtime_ns < limit and st.st_ctime_ns < limit and self.same_stat(st)
