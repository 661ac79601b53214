"""Where freshd's log lines go and what they look like (the CLI sets it up for every verb).

The level is resolved as every setting is (``freshd.config``): the ``-v``/``-q`` options
of the command line, else ``FRESHD_LOG_LEVEL``, else the verb's default (``INFO`` for
``freshd serve``, ``WARNING`` for the one-shot verbs). Each ``-v`` is one level more
verbose than that default, each ``-q`` one less.

The daemon's lines carry a timestamp, except when its stderr is the journal's stream
(systemd sets ``JOURNAL_STREAM`` to that stream's ``DEVICE:INODE``): the journal keeps
its own timestamp, so the lines are plain and start with the syslog priority (``<4>``)
that journald turns into the entry's priority (``journalctl -p warning``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from freshd.errors import ConfigError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SYSLOG_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def resolve_level(default: str, verbose: int, quiet: int, env: Mapping[str, str]) -> str:
    """The level name: ``-v``/``-q`` (``verbose``/``quiet`` counts), else
    ``FRESHD_LOG_LEVEL``, else ``default``."""
    if verbose or quiet:
        step = LEVELS.index(default) - verbose + quiet
        return LEVELS[min(max(step, 0), len(LEVELS) - 1)]
    raw = env.get("FRESHD_LOG_LEVEL", "")
    if not raw:
        return default
    if raw.upper() not in LEVELS:
        raise ConfigError("FRESHD_LOG_LEVEL", raw, f"Expected one of {', '.join(LEVELS)}.")
    return raw.upper()


def to_journal(env: Mapping[str, str]) -> bool:
    """Whether stderr is the journal's stream (``JOURNAL_STREAM`` names its device and
    inode, as systemd documents; an inherited variable with stderr redirected does not)."""
    device, sep, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{device}:{inode}"


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelname, 6)
        return f"<{priority}>{super().format(record)}"


def configure(level: str, *, timestamps: bool, env: Mapping[str, str]) -> None:
    """Send every log record at ``level`` or above to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    if to_journal(env):
        handler.setFormatter(_JournalFormatter("%(levelname)s %(message)s"))
    elif timestamps:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d freshd: %(levelname)s %(message)s",
                datefmt="%Y-%m-%dT%H:%M:%S",
            )
        )
    else:
        handler.setFormatter(logging.Formatter("freshd: %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("watchdog").setLevel("ERROR")  # its overflow warnings: reported by us
