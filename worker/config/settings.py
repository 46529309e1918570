"""Settings, read from the environment once and validated.

Every public variable is documented in the settings table of docs/configuration.md. A bad
value fails at start with a `ConfigError` that names the variable; secrets are held in
`Secret` so that they never show up in a repr, a log line or an error message.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.config import variables
from worker.config.redis_url import RedisSentinel, check_options, is_sentinel, parse_sentinels
from worker.errors import ConfigError

AKOOL_DEFAULT_BASE_URL = "https://openapi.akool.com"
# Akool serves generated files from its CDNs; nothing else is fetched unless configured.
ARCHIVE_DEFAULT_ALLOWED_HOSTS = ("*.cloudfront.net", "*.akool.com")
# Any host for notify_url, as long as it resolves to public addresses: an internal one
# (loopback, private, link-local, metadata) only when listed exactly.
NOTIFY_DEFAULT_ALLOWED_HOSTS = ("*",)
ARCHIVE_DEFAULT_PREFIX = "lipsync/"
REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/0"

POLL_INITIAL_SECONDS = 5.0
POLL_MAX_SECONDS = 60.0
# Akool documents no processing time; a 60 s clip is normally done within minutes.
POLL_TIMEOUT_SECONDS = 2 * 3600.0
JOB_RETENTION_SECONDS = 30 * 24 * 3600
AKOOL_TIMEOUT_SECONDS = 30.0
AKOOL_CONNECT_TIMEOUT_SECONDS = 5.0
DOWNLOAD_TIMEOUT_SECONDS = 60.0
# A download bringing fewer bytes than this a second over the window is cut off and tried
# again later, so a trickling host holds an archive slot for a window, not for an hour.
DOWNLOAD_MIN_BYTES_PER_SECOND = 64 * 1024.0
DOWNLOAD_RATE_WINDOW_SECONDS = 60.0
# A gone answer (the file host's 403/404/410, Akool's 1008 about an id it gave) is proof
# that the video is lost only on every try for this long: a CDN may not have the file yet.
ARCHIVE_GONE_GRACE_SECONDS = 3600.0
ARCHIVE_MAX_BYTES = 1024**3
# Akool deletes generated files after 7 days.
AKOOL_FILE_LIFETIME_SECONDS = 7 * 24 * 3600
# A job's record outlives its longest possible run by this much, for an operator to look.
RETENTION_MARGIN_SECONDS = 24 * 3600
# Akool publishes no rate limit; 5 requests a second for the whole fleet stays polite. It
# keeps about 225 jobs on the 60 s poll pace; more jobs in flight are polled less often
# (10,000 jobs: every ~33 min). Size it to jobs in flight / 45 s within Akool's real limit.
AKOOL_MAX_RPS = 5.0
# A job whose last sign of life is older than this (past its next expected step) is stalled
# and re-driven by the sweeper: above the longest Akool call, so a running submit is spared.
STALL_SECONDS = 30.0
# How often beat runs the sweeper. A job whose worker died is re-driven within about
# POLL_MAX_SECONDS + STALL_SECONDS + SWEEP_INTERVAL_SECONDS.
SWEEP_INTERVAL_SECONDS = 15.0
# A webhook whose timestamp is further than this from now is refused (replay protection).
WEBHOOK_MAX_AGE_SECONDS = 300.0
# With webhooks on, polling stays as the safety net, at this longer interval.
WEBHOOK_POLL_MAX_SECONDS = 600.0  # at most LONGEST_POLL_COUNTDOWN_SECONDS, like POLL_MAX_SECONDS
# A poll countdown waits unacknowledged in the worker: it must stay far below the broker's
# visibility timeout (see worker/celery_app.py) or Redis redelivers it. POLL_MAX_SECONDS and
# WEBHOOK_POLL_MAX_SECONDS may not exceed this.
LONGEST_POLL_COUNTDOWN_SECONDS = 900.0
SUBMIT_UNKNOWN_WAIT_SECONDS = 3600.0  # an ambiguous submit waits this long for its callback
WEB_DEFAULT_PORT = 8000
LOG_FORMATS = ("text", "json")
ARCHIVE_SSE_CHOICES = ("AES256", "aws:kms", "aws:kms:dsse")
ARCHIVE_STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
)


class Secret:
    """A string that is never shown: repr and str print a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Validated configuration of the whole service."""

    redis_url: str = field(default=REDIS_DEFAULT_URL, repr=False)  # may hold a password
    redis_sentinel: RedisSentinel | None = None  # set when REDIS_URL is a sentinel:// URL
    akool_base_url: str = AKOOL_DEFAULT_BASE_URL
    akool_api_key: Secret | None = None
    akool_client_id: str | None = None
    akool_client_secret: Secret | None = None
    akool_timeout_seconds: float = AKOOL_TIMEOUT_SECONDS
    archive_bucket: str | None = None
    archive_prefix: str = ARCHIVE_DEFAULT_PREFIX
    s3_endpoint_url: str | None = None
    archive_allowed_hosts: tuple[str, ...] = ARCHIVE_DEFAULT_ALLOWED_HOSTS
    notify_allowed_hosts: tuple[str, ...] = NOTIFY_DEFAULT_ALLOWED_HOSTS
    archive_max_bytes: int = ARCHIVE_MAX_BYTES
    archive_gone_grace_seconds: float = ARCHIVE_GONE_GRACE_SECONDS
    download_timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS
    download_min_bytes_per_second: float = DOWNLOAD_MIN_BYTES_PER_SECOND
    download_rate_window_seconds: float = DOWNLOAD_RATE_WINDOW_SECONDS
    poll_initial_seconds: float = POLL_INITIAL_SECONDS
    poll_max_seconds: float = POLL_MAX_SECONDS
    poll_timeout_seconds: float = POLL_TIMEOUT_SECONDS
    job_retention_seconds: int = JOB_RETENTION_SECONDS
    akool_max_rps: float = AKOOL_MAX_RPS
    stall_seconds: float = STALL_SECONDS
    sweep_interval_seconds: float = SWEEP_INTERVAL_SECONDS
    archive_sse: str | None = None
    archive_sse_kms_key_id: str | None = None
    archive_storage_class: str | None = None
    akool_webhook_url: str | None = None
    webhook_max_age_seconds: float = WEBHOOK_MAX_AGE_SECONDS
    webhook_poll_max_seconds: float = WEBHOOK_POLL_MAX_SECONDS
    submit_unknown_wait_seconds: float = SUBMIT_UNKNOWN_WAIT_SECONDS
    port: int = WEB_DEFAULT_PORT
    log_format: str = "text"
    metrics_port: int | None = None
    dashboard_user: str | None = None  # the jobs dashboard on METRICS_PORT; off when None
    dashboard_password: Secret | None = None

    def webhook_secret(self) -> Secret | None:
        """The key Akool encrypts callbacks with: the client secret (same value as the API
        key on Akool's dashboard)."""
        return self.akool_client_secret or self.akool_api_key

    def require_akool_auth(self) -> None:
        """Fail unless an API key or a client id + secret pair is configured."""
        if self.akool_api_key is None and self.akool_client_secret is None:
            raise ConfigError(
                "AKOOL_API_KEY is not set (or set AKOOL_CLIENT_ID and AKOOL_CLIENT_SECRET)"
            )

    def require_archive(self) -> str:
        """The archive bucket, or a ConfigError naming ARCHIVE_BUCKET."""
        if not self.archive_bucket:
            raise ConfigError("ARCHIVE_BUCKET is not set")
        return self.archive_bucket

    def validate_for_worker(self) -> None:
        """Everything a worker needs to run a job end to end."""
        self.require_akool_auth()
        self.require_archive()


def _redis(env: Mapping[str, str]) -> dict[str, Any]:
    """REDIS_URL (checked in worker/config/redis_url.py), and with a sentinel:// URL the Sentinel
    settings that must go with it."""
    url = variables.text(env, "REDIS_URL") or REDIS_DEFAULT_URL
    master = variables.text(env, "REDIS_SENTINEL_MASTER")
    sentinel_password = variables.text(env, "REDIS_SENTINEL_PASSWORD")
    if is_sentinel(url):
        if master is None:
            raise ConfigError(
                "REDIS_SENTINEL_MASTER is not set: a sentinel:// REDIS_URL needs the name the "
                "sentinels monitor the master under"
            )
        return {"redis_url": url, "redis_sentinel": parse_sentinels(url, master, sentinel_password)}
    url = variables.url(env, "REDIS_URL", REDIS_DEFAULT_URL, ("redis", "rediss", "unix"))
    check_options(url)
    for name in ("REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD"):
        if variables.text(env, name) is not None:
            raise ConfigError(f"{name} is set, but REDIS_URL is not a sentinel:// URL")
    return {"redis_url": url}


def _prefix(env: Mapping[str, str]) -> str:
    prefix = env.get("ARCHIVE_PREFIX", ARCHIVE_DEFAULT_PREFIX).strip().lstrip("/")
    if ".." in prefix.split("/") or any(ord(c) < 32 for c in prefix):
        raise ConfigError(f"ARCHIVE_PREFIX must be a plain key prefix, got {prefix!r}")
    return prefix


def _retention(env: Mapping[str, str], poll_timeout: float) -> int:
    """JOB_RETENTION_DAYS in seconds, refusing a retention shorter than a job can live: a
    record that expires while its job runs would lose the job (its poll deadline, then
    Akool's file lifetime for the archive, and a day for an operator to act)."""
    days = variables.number(env, "JOB_RETENTION_DAYS", JOB_RETENTION_SECONDS / 86400, minimum=1)
    needed = poll_timeout + AKOOL_FILE_LIFETIME_SECONDS + RETENTION_MARGIN_SECONDS
    if days * 86400 < needed:
        raise ConfigError(
            f"JOB_RETENTION_DAYS ({days:g}) must be at least {needed / 86400:.2f} days: "
            f"POLL_TIMEOUT_SECONDS ({poll_timeout:g} s) + Akool's 7-day file lifetime "
            "+ 1 day, or a job's record could expire while the job still runs"
        )
    return int(days * 86400)


def _auth(env: Mapping[str, str]) -> dict[str, Any]:
    api_key = variables.text(env, "AKOOL_API_KEY")
    client_id = variables.text(env, "AKOOL_CLIENT_ID")
    client_secret = variables.text(env, "AKOOL_CLIENT_SECRET")
    if (client_id is None) != (client_secret is None):
        missing = "AKOOL_CLIENT_SECRET" if client_secret is None else "AKOOL_CLIENT_ID"
        raise ConfigError(
            f"{missing} is not set (AKOOL_CLIENT_ID and AKOOL_CLIENT_SECRET go together)"
        )
    return {
        "akool_api_key": Secret(api_key) if api_key else None,
        "akool_client_id": client_id,
        "akool_client_secret": Secret(client_secret) if client_secret else None,
    }


def _poll(env: Mapping[str, str]) -> dict[str, Any]:
    initial = variables.number(env, "POLL_INITIAL_SECONDS", POLL_INITIAL_SECONDS, minimum=0.05)
    maximum = variables.number(env, "POLL_MAX_SECONDS", POLL_MAX_SECONDS, minimum=0.05)
    if maximum < initial:
        raise ConfigError(f"POLL_MAX_SECONDS ({maximum:g}) must be >= POLL_INITIAL_SECONDS")
    if maximum > LONGEST_POLL_COUNTDOWN_SECONDS:
        raise ConfigError(
            f"POLL_MAX_SECONDS must be at most {LONGEST_POLL_COUNTDOWN_SECONDS:g}, got {maximum:g}"
        )
    timeout = variables.number(env, "POLL_TIMEOUT_SECONDS", POLL_TIMEOUT_SECONDS, minimum=1)
    wait = variables.number(
        env, "SUBMIT_UNKNOWN_WAIT_SECONDS", SUBMIT_UNKNOWN_WAIT_SECONDS, minimum=1
    )
    return {
        "poll_initial_seconds": initial,
        "poll_max_seconds": maximum,
        "poll_timeout_seconds": timeout,
        "submit_unknown_wait_seconds": wait,
    }


def _download(env: Mapping[str, str]) -> dict[str, Any]:
    """How the archive reads the result: timeouts, the rate floor and the gone grace."""
    return {
        "download_timeout_seconds": variables.number(
            env, "DOWNLOAD_TIMEOUT_SECONDS", DOWNLOAD_TIMEOUT_SECONDS, minimum=0.1
        ),
        # 0 turns the floor off.
        "download_min_bytes_per_second": variables.number(
            env, "DOWNLOAD_MIN_BYTES_PER_SECOND", DOWNLOAD_MIN_BYTES_PER_SECOND, minimum=0
        ),
        "download_rate_window_seconds": variables.number(
            env, "DOWNLOAD_RATE_WINDOW_SECONDS", DOWNLOAD_RATE_WINDOW_SECONDS, minimum=1
        ),
        "archive_gone_grace_seconds": variables.number(
            env, "ARCHIVE_GONE_GRACE_SECONDS", ARCHIVE_GONE_GRACE_SECONDS, minimum=0
        ),
    }


def _archive_storage(env: Mapping[str, str]) -> dict[str, Any]:
    sse = variables.choice(env, "ARCHIVE_SSE", ARCHIVE_SSE_CHOICES)
    kms_key = variables.text(env, "ARCHIVE_SSE_KMS_KEY_ID")
    if kms_key and not (sse or "").startswith("aws:kms"):
        raise ConfigError("ARCHIVE_SSE_KMS_KEY_ID needs ARCHIVE_SSE=aws:kms (or aws:kms:dsse)")
    return {
        "archive_sse": sse,
        "archive_sse_kms_key_id": kms_key,
        "archive_storage_class": variables.choice(
            env, "ARCHIVE_STORAGE_CLASS", ARCHIVE_STORAGE_CLASSES
        ),
    }


def _web(env: Mapping[str, str]) -> dict[str, Any]:
    webhook = variables.text(env, "AKOOL_WEBHOOK_URL")
    log_format = (variables.text(env, "LOG_FORMAT") or "text").lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    user, password = (
        variables.text(env, "DASHBOARD_USER"),
        variables.text(env, "DASHBOARD_PASSWORD"),
    )
    if (user is None) != (password is None):  # both (the dashboard is on) or neither (off)
        missing = "DASHBOARD_USER" if user is None else "DASHBOARD_PASSWORD"
        raise ConfigError(f"{missing} is not set: the dashboard needs both DASHBOARD_ settings")
    web = {
        "akool_webhook_url": variables.url(env, "AKOOL_WEBHOOK_URL", None, ("http", "https"))
        if webhook
        else None,
        "webhook_max_age_seconds": variables.number(
            env, "WEBHOOK_MAX_AGE_SECONDS", WEBHOOK_MAX_AGE_SECONDS, minimum=1
        ),
        # Capped like POLL_MAX_SECONDS: countdowns stay far below the visibility timeout.
        "webhook_poll_max_seconds": variables.number(
            env, "WEBHOOK_POLL_MAX_SECONDS", WEBHOOK_POLL_MAX_SECONDS, minimum=1
        ),
        "port": variables.port(env, "PORT", WEB_DEFAULT_PORT),
        "log_format": log_format,
        "metrics_port": variables.port(env, "METRICS_PORT", None),
        "dashboard_user": user,
        "dashboard_password": Secret(password) if password else None,
    }
    _check_webhook_poll(web)
    return web


def _check_webhook_poll(settings: dict[str, Any]) -> None:
    if settings["webhook_poll_max_seconds"] > LONGEST_POLL_COUNTDOWN_SECONDS:
        raise ConfigError(
            f"WEBHOOK_POLL_MAX_SECONDS must be at most {LONGEST_POLL_COUNTDOWN_SECONDS:g}"
        )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting from `env` (default: the process environment).

    A variable that looks like ours but is not read (`POLL_INTIAL_SECONDS`) is logged as a
    WARNING naming the setting it probably meant.
    """
    reads = variables.ReadNames(os.environ if env is None else env)
    settings = _load(reads)
    variables.warn_unknown(reads, reads.read)
    return settings


def _load(env: Mapping[str, str]) -> Settings:
    poll = _poll(env)
    return Settings(
        **_redis(env),
        akool_base_url=variables.url(
            env, "AKOOL_BASE_URL", AKOOL_DEFAULT_BASE_URL, ("http", "https")
        ),
        akool_timeout_seconds=variables.number(
            env, "AKOOL_TIMEOUT_SECONDS", AKOOL_TIMEOUT_SECONDS, minimum=0.1
        ),
        archive_bucket=variables.text(env, "ARCHIVE_BUCKET"),
        archive_prefix=_prefix(env),
        s3_endpoint_url=variables.url(env, "S3_ENDPOINT_URL", None, ("http", "https"))
        if variables.text(env, "S3_ENDPOINT_URL")
        else None,
        archive_allowed_hosts=variables.hosts(
            env, "ARCHIVE_ALLOWED_HOSTS", ARCHIVE_DEFAULT_ALLOWED_HOSTS
        ),
        notify_allowed_hosts=variables.hosts(
            env, "NOTIFY_ALLOWED_HOSTS", NOTIFY_DEFAULT_ALLOWED_HOSTS
        ),
        archive_max_bytes=int(
            variables.number(env, "ARCHIVE_MAX_BYTES", ARCHIVE_MAX_BYTES, minimum=1)
        ),
        **_download(env),
        job_retention_seconds=_retention(env, poll["poll_timeout_seconds"]),
        akool_max_rps=variables.number(env, "AKOOL_MAX_RPS", AKOOL_MAX_RPS, minimum=0.01),
        stall_seconds=variables.number(env, "STALL_SECONDS", STALL_SECONDS, minimum=1),
        sweep_interval_seconds=variables.number(
            env, "SWEEP_INTERVAL_SECONDS", SWEEP_INTERVAL_SECONDS, minimum=0.5
        ),
        **_archive_storage(env),
        **_web(env),
        **_auth(env),
        **poll,
    )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once on first use."""
    return load_settings()
