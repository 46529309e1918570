"""The process's dependencies, built from settings on first use, never at import.

Celery's prefork pool forks after importing the tasks; building clients lazily means each
child process opens its own connections.
"""

from __future__ import annotations

import functools
from typing import Any

import redis
from redis.sentinel import Sentinel

from worker.akool import AkoolClient, RequestBudget
from worker.archive import UPLOAD_CONCURRENCY, Archiver
from worker.config import RedisSentinel, Settings, get_settings
from worker.metrics import Metrics
from worker.store import JobStore

# A Redis call that hangs longer than this is treated as an outage (StoreUnavailable).
REDIS_SOCKET_TIMEOUT_SECONDS = 10.0
# Ping idle Redis connections before use so a restarted server is noticed at once.
REDIS_HEALTH_CHECK_SECONDS = 15


def settings() -> Settings:
    """The validated settings (read once per process)."""
    return get_settings()


# Every connection to a Redis server, whether named by REDIS_URL or found through Sentinel.
REDIS_CONNECTION_OPTIONS: dict[str, Any] = {
    "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
    "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
    "socket_keepalive": True,
    "health_check_interval": REDIS_HEALTH_CHECK_SECONDS,
    "retry_on_timeout": True,
}


@functools.cache
def redis_client() -> redis.Redis:
    """The Redis client of the job store, the request budget, the outbox, the webhook
    receiver and the metrics: through Sentinel when REDIS_URL is a sentinel:// URL."""
    s = settings()
    if s.redis_sentinel is not None:
        return sentinel_master(s.redis_sentinel)
    return redis.Redis.from_url(s.redis_url, **REDIS_CONNECTION_OPTIONS)


def sentinel_connection_options(sentinel: RedisSentinel) -> dict[str, Any]:
    """How to connect to the sentinels themselves: bounded like any Redis connection (a
    sentinel that hangs is skipped for the next), with their own password if they have one."""
    options: dict[str, Any] = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
    }
    if sentinel.sentinel_password is not None:
        options["password"] = sentinel.sentinel_password
    return options


def sentinel_transport_options(sentinel: RedisSentinel) -> dict[str, Any]:
    """The transport options that point kombu's broker and Celery's result backend at the
    master the sentinels name (both take these names, see kombu's SentinelChannel)."""
    return {
        "master_name": sentinel.master,
        "sentinel_kwargs": sentinel_connection_options(sentinel),
    }


def sentinel_master(sentinel: RedisSentinel) -> redis.Redis:
    """A client of the master the sentinels name now.

    Its pool asks the sentinels for the master's address at every new connection, so after
    a failover connections to the old master fail (StoreUnavailable to the job store, a
    transient error that is retried) and the next ones reach the promoted replica; a
    connection that finds it reached a demoted master drops itself (ConnectionError too).
    """
    sentinels = Sentinel(
        list(sentinel.addresses),
        sentinel_kwargs=sentinel_connection_options(sentinel),
        **REDIS_CONNECTION_OPTIONS,
    )
    return sentinels.master_for(
        sentinel.master, db=sentinel.db, username=sentinel.username, password=sentinel.password
    )


@functools.cache
def job_store() -> JobStore:
    """The job record store."""
    s = settings()
    # Behind Sentinel a replica may become the master: a submit claim must reach one first.
    replicas = 1 if s.redis_sentinel is not None else 0
    return JobStore(
        redis_client(), retention_seconds=s.job_retention_seconds, claim_replicas=replicas
    )


def metrics() -> Metrics:
    """The recorder of the fleet's metric counters (in the job store's Redis)."""
    return Metrics(redis_client())


@functools.cache
def akool_client() -> AkoolClient:
    """The Akool client, authenticated as configured."""
    s = settings()
    s.require_akool_auth()
    return AkoolClient(
        s.akool_base_url,
        api_key=s.akool_api_key,
        client_id=s.akool_client_id,
        client_secret=s.akool_client_secret,
        timeout=s.akool_timeout_seconds,
        # AKOOL_MAX_RPS is the ceiling the adaptive rate climbs back to.
        budget=RequestBudget(redis_client(), s.akool_max_rps),
        observer=metrics().akool_call,
    )


def s3_client(endpoint_url: str | None = None) -> Any:
    """An S3 client from boto3's standard credential chain.

    Checksums only where S3 requires them: botocore >= 1.36 adds CRC32 to every upload and
    validates it on read, which some S3-compatible stores answer wrongly for multipart
    objects. Stored bytes are checked by their own sha256 instead.
    """
    # Imported here, not at the top: boto3 costs a fifth of a second of CPU to import, and
    # most processes that import the package (the application's, the akool worker, beat,
    # web) never talk to S3.
    import boto3
    from botocore.config import Config

    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=UPLOAD_CONCURRENCY * 2,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


@functools.cache
def archiver() -> Archiver:
    """The archiver writing to ARCHIVE_BUCKET under ARCHIVE_PREFIX."""
    s = settings()
    return Archiver(
        s3_client(s.s3_endpoint_url),
        s.require_archive(),
        prefix=s.archive_prefix,
        allowed_hosts=s.archive_allowed_hosts,
        max_bytes=s.archive_max_bytes,
        timeout=s.download_timeout_seconds,
        sse=s.archive_sse,
        sse_kms_key_id=s.archive_sse_kms_key_id,
        storage_class=s.archive_storage_class,
        min_rate=s.download_min_bytes_per_second,
        rate_window=s.download_rate_window_seconds,
    )


def forget() -> None:
    """Forget the cached settings and clients, so the next use reads the environment again."""
    for cached in (get_settings, redis_client, job_store, akool_client, archiver):
        cached.cache_clear()
