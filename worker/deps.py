"""The process's dependencies, built from settings on first use, never at import.

Celery's prefork pool forks after importing the tasks; building clients lazily means each
child process opens its own connections.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
import redis
from botocore.config import Config

from worker.akool import AkoolClient
from worker.archive import UPLOAD_CONCURRENCY, Archiver
from worker.jobs import JobStore
from worker.metrics import Metrics
from worker.ratelimit import RequestBudget
from worker.settings import Settings, get_settings

# A Redis call that hangs longer than this is treated as an outage (StoreUnavailable).
REDIS_SOCKET_TIMEOUT_SECONDS = 10.0
# Ping idle Redis connections before use so a restarted server is noticed at once.
REDIS_HEALTH_CHECK_SECONDS = 15


def settings() -> Settings:
    """The validated settings (read once per process)."""
    return get_settings()


@functools.cache
def redis_client() -> redis.Redis:
    """The Redis client for job records."""
    return redis.Redis.from_url(
        settings().redis_url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_keepalive=True,
        health_check_interval=REDIS_HEALTH_CHECK_SECONDS,
        retry_on_timeout=True,
    )


@functools.cache
def job_store() -> JobStore:
    """The job record store."""
    return JobStore(redis_client(), retention_seconds=settings().job_retention_seconds)


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
        budget=RequestBudget(redis_client(), s.akool_max_rps),
        observer=metrics().akool_call,
    )


def s3_client(endpoint_url: str | None = None) -> Any:
    """An S3 client from boto3's standard credential chain.

    Checksums only where S3 requires them: botocore >= 1.36 adds CRC32 to every upload and
    validates it on read, which some S3-compatible stores answer wrongly for multipart
    objects. Stored bytes are checked by their own sha256 instead.
    """
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
    )


def forget() -> None:
    """Forget the cached settings and clients, so the next use reads the environment again."""
    for cached in (get_settings, redis_client, job_store, akool_client, archiver):
        cached.cache_clear()
