"""Configuration: settings read once from the environment and validated (settings), the
environment readers (variables), Redis URLs and Sentinel (redis_url), and the startup checks
of the Redis a process is given (preflight).
"""

from __future__ import annotations

from worker.config import preflight
from worker.config.redis_url import (
    RedisSentinel,
)
from worker.config.settings import (
    AKOOL_CONNECT_TIMEOUT_SECONDS,
    AKOOL_FILE_LIFETIME_SECONDS,
    AKOOL_TIMEOUT_SECONDS,
    ARCHIVE_GONE_GRACE_SECONDS,
    ARCHIVE_MAX_BYTES,
    DOWNLOAD_MIN_BYTES_PER_SECOND,
    DOWNLOAD_RATE_WINDOW_SECONDS,
    DOWNLOAD_TIMEOUT_SECONDS,
    LONGEST_POLL_COUNTDOWN_SECONDS,
    STALL_SECONDS,
    Secret,
    Settings,
    get_settings,
)

__all__ = [
    "AKOOL_CONNECT_TIMEOUT_SECONDS",
    "AKOOL_FILE_LIFETIME_SECONDS",
    "AKOOL_TIMEOUT_SECONDS",
    "ARCHIVE_GONE_GRACE_SECONDS",
    "ARCHIVE_MAX_BYTES",
    "DOWNLOAD_MIN_BYTES_PER_SECOND",
    "DOWNLOAD_RATE_WINDOW_SECONDS",
    "DOWNLOAD_TIMEOUT_SECONDS",
    "LONGEST_POLL_COUNTDOWN_SECONDS",
    "RedisSentinel",
    "STALL_SECONDS",
    "Secret",
    "Settings",
    "get_settings",
    "preflight",
]
