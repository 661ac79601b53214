"""Exceptions of the freshd service, under freshd_client's FreshdError.

FreshdError (freshd_client.errors)
├── ConfigError         a setting has a bad value (names the key and the value)
├── IndexLockedError    another process is the index's writer
├── DaemonStartError    the daemon cannot start or stops on a fatal error (socket in use, …)
├── ApiError            a request the HTTP API refuses: its 4xx status, code and message
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


class DaemonStartError(FreshdError):
    """The daemon cannot start (socket in use, unsafe directory, …) or its engine failed.

    Not freshd_client's ``DaemonError``, which a client raises when talking to a daemon
    fails."""


class ApiError(FreshdError):
    """A 4xx answer of the HTTP API, ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class UsageError(FreshdError):
    """The command line is wrong: the message names the help to read (``hint``)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message} (see: {hint} --help)")
        self.hint = hint
