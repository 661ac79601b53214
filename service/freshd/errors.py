"""Exceptions of the freshd service, under freshd_client's FreshdError.

FreshdError (freshd_client.errors)
├── ConfigError         a setting has a bad value (names the key and the value)
└── IndexLockedError    another process is the index's writer
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
