"""The daemon's and the CLI's settings: argument > ``FRESHD_*`` environment > default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from freshd.errors import ConfigError
from freshd_client import locations


@dataclass(frozen=True, slots=True)
class Config:
    """Settings resolved once at start-up."""

    index_dir: str
    workers: int


def _default_workers(env: Mapping[str, str]) -> int:
    raw = env.get("FRESHD_WORKERS")
    if raw is None:
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    return _positive_int("FRESHD_WORKERS", raw)


def _positive_int(key: str, raw: object) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(key, raw, "Not an integer.") from None
    if value < 1:
        raise ConfigError(key, raw, "Must be at least 1.")
    return value


def load(
    *,
    index_dir: str | None = None,
    workers: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config from explicit arguments, then the environment, then defaults."""
    env = os.environ if env is None else env
    resolved_dir = index_dir or env.get("FRESHD_INDEX") or locations.index_dir()
    return Config(
        index_dir=os.path.abspath(os.path.expanduser(resolved_dir)),
        workers=_positive_int("--workers", workers)
        if workers is not None
        else _default_workers(env),
    )
