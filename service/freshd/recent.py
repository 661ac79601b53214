"""The daemon's recent warnings and errors, kept for ``freshd status`` (health's ``recent``).

A logging handler with a small ring buffer: what went wrong lately is one query away,
without access to the daemon's stderr or journal.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

KEEP = 20
"""How many records are kept: the newest replace the oldest."""


class RecentLog(logging.Handler):
    """Keeps the last ``keep`` records of level WARNING or above."""

    def __init__(self, keep: int = KEEP) -> None:
        super().__init__(logging.WARNING)
        self._records: deque[dict[str, Any]] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: keep what it was asked to say
            message = str(record.msg)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        self._records.append(
            {
                "time": f"{stamp}.{int(record.msecs):03d}Z",
                "level": record.levelname,
                "message": message,
            }
        )

    def records(self) -> list[dict[str, Any]]:
        """The kept records, oldest first: ``{"time", "level", "message"}`` with the time
        in UTC (ISO 8601)."""
        self.acquire()  # emit() runs under this lock too
        try:
            return list(self._records)
        finally:
            self.release()
