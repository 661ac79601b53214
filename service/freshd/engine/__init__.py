"""The engine: turns file-system events into rehashes and index writes.

``loop`` holds the ``Engine``: its thread, its queue of ``messages`` and the step that
handles them. The rest are its parts, each an explicit state object or plain functions:
``source`` (where events come from), ``routing`` and ``events`` (an event routed to
what it may change), ``packages`` (the dirty bookkeeping), ``rescans`` (the scan and
the clean write), ``structure`` (packages appearing and disappearing), ``links`` (hard
links), ``roots`` (watch, poll, canary, blind spots), ``sync`` (cookies), ``commands``
(roots added and removed, overflows, mounts) and ``status`` (the daemon record).
"""

from freshd.engine.loop import Engine, Publish
from freshd.engine.packages import LINKED_OUT, Tracked
from freshd.engine.roots import RootMode, RootState

__all__ = ["LINKED_OUT", "Engine", "Publish", "RootMode", "RootState", "Tracked"]
