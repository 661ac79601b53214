"""Exceptions of the freshd service, under freshd_client's FreshdError.

FreshdError (freshd_client.errors)
├── ConfigError         a setting has a bad value (names the key and the value)
├── IndexLockedError    another process is the index's writer
└── UsageError          the command line is wrong (names the help to read)
"""

from __future__ import annotations

from freshd_client.errors import FreshdError


class ConfigError(FreshdError):
    """A configuration value is invalid."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        super().__init__(f"Config '{key}' has value {value!r}. {expected}")
        self.key = key


class IndexLockedError(FreshdError):
    """The index already has a writer."""


class UsageError(FreshdError):
    """The command line is wrong: the message names the help to read (``hint``)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message} (see: {hint} --help)")
        self.hint = hint
