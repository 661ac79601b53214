"""What the kernel watches for this process: the identity of every inotify watch.

watchdog adds a watch for each directory below a root, and when one cannot be added
(``EACCES``, the ``fs.inotify.max_user_watches`` limit, out of memory or descriptors) it
logs and goes on: the tree below it is silently unwatched. The kernel itself lists the
watches of every inotify descriptor in ``/proc/self/fdinfo/<fd>`` (proc(5)): one line
``inotify wd:… ino:<hex> sdev:<hex> …`` per watch. The engine compares the directories a
scan listed with that list; a directory missing from it is a blind spot, and its package
is never reported fresh until a retry watches it.

This also catches a file system mounted over a directory after it was watched: the
path then leads to the mounted root, a different (device, inode) than the one watched.
"""

from __future__ import annotations

import os
import re
import sys

Identity = tuple[int, int]
"""A directory's (st_dev, st_ino)."""

_FD_DIR = "/proc/self/fd"
_FDINFO_DIR = "/proc/self/fdinfo"
_INOTIFY_LINK = "anon_inode:inotify"


def supported() -> bool:
    """Whether this system lists inotify watches (Linux with /proc)."""
    return sys.platform.startswith("linux") and os.path.isdir(_FDINFO_DIR)


def watched() -> frozenset[Identity]:
    """The (st_dev, st_ino) of every inode watched by an inotify descriptor of this
    process. OSError when /proc cannot be read."""
    found: set[Identity] = set()
    for name in os.listdir(_FD_DIR):
        try:
            if os.readlink(f"{_FD_DIR}/{name}") != _INOTIFY_LINK:
                continue
            with open(f"{_FDINFO_DIR}/{name}", "rb") as fh:
                text = fh.read()
        except OSError:
            continue  # closed meanwhile (another thread's descriptor)
        found.update(parse(text))
    return frozenset(found)


_WATCH = re.compile(rb"^inotify wd:[0-9a-f]+ ino:([0-9a-f]+) sdev:([0-9a-f]+) ", re.MULTILINE)


def parse(fdinfo: bytes) -> list[Identity]:
    """The watches named in the text of an inotify descriptor's fdinfo (one expression
    for all lines: ~6,000 watches are read at every start)."""
    devices: dict[bytes, int] = {}
    watches = []
    for ino, sdev in _WATCH.findall(fdinfo):
        dev = devices.get(sdev)
        if dev is None:
            raw = int(sdev, 16)
            # The kernel prints its internal dev_t: 12 bits of major, 20 of minor.
            dev = devices[sdev] = os.makedev(raw >> 20, raw & 0xFFFFF)
        watches.append((dev, int(ino, 16)))
    return watches
