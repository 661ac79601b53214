"""The engine: turns file-system events into rehashes and index writes.

``loop`` holds the ``Engine`` (its thread, its queue of ``messages``, the dirty
bookkeeping and the scan-and-write); the other modules are its parts: ``events``
(what an event means for a package), ``packages`` (the packages it follows),
``roots`` (how a root is followed), ``sync`` (the sync cookies), ``status`` (the
daemon record) and ``source`` (where its events come from).
"""

from freshd.engine.loop import Engine, Publish
from freshd.engine.packages import LINKED_OUT, Tracked
from freshd.engine.roots import RootMode, RootState

__all__ = ["LINKED_OUT", "Engine", "Publish", "RootMode", "RootState", "Tracked"]
