"""Reading one environment variable: typed, checked, and failing with the variable's name
(a `ConfigError`); and noticing the variables that look like ours but that no setting reads.

worker/config/settings.py composes these into the service's settings.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from worker.errors import ConfigError
from worker.net import ascii_int

logger = logging.getLogger(__name__)

# Variables with these prefixes are ours or look like ours: one that no setting reads is
# most likely misspelled, and would otherwise be ignored without a word. (REDIS_ and LOG_
# are left out: platforms and other libraries set REDIS_TLS_URL, LOG_LEVEL and the like.)
OUR_PREFIXES = (
    "AKOOL_",
    "ARCHIVE_",
    "POLL_",
    "JOB_",
    "WEBHOOK_",
    "NOTIFY_",
    "DOWNLOAD_",
    "STALL_",
    "SWEEP_",
    "S3_",
    "METRICS_",
    "DASHBOARD_",
)


def text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {raw!r}")
    return value


def url(env: Mapping[str, str], name: str, default: str | None, schemes: tuple[str, ...]) -> str:
    """A URL with one of `schemes` and a host (a path for unix://); the error never echoes
    the value, which may carry a password."""
    value = text(env, name) or default or ""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL") from None
    located = bool(parts.path) if parts.scheme == "unix" else bool(host)
    if parts.scheme not in schemes or not located:
        raise ConfigError(
            f"{name} must be a {'/'.join(schemes)} URL with a host"
            f" (got scheme {parts.scheme!r}, host {host or ''!r})"
        )
    return value


def hosts(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = text(env, name)
    if raw is None:
        return default
    listed = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    if not listed:
        raise ConfigError(f"{name} must list at least one host")
    return listed


def choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    value = text(env, name)
    if value is not None and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def port(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = text(env, name)
    if raw is None:
        return default
    number = ascii_int(raw)
    if number is None or not 0 < number < 65536:
        raise ConfigError(f"{name} must be a TCP port (1-65535), got {raw!r}")
    return number


class ReadNames(Mapping[str, str]):
    """The environment, noting every name a setting looks up."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def unknown_variables(env: Mapping[str, str], known: Iterable[str]) -> list[str]:
    """Variables with one of our prefixes that no setting reads: most likely misspelled."""
    known = set(known)
    return sorted(n for n in env if n.startswith(OUR_PREFIXES) and n not in known)


def warn_unknown(env: Mapping[str, str], known: set[str]) -> None:
    for name in unknown_variables(env, known):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        logger.warning(
            "%s is set but is not a lipsync-worker setting, so it is ignored%s", name, hint
        )
