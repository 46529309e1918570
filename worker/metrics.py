"""Fleet-wide metrics in Prometheus format.

Counters live in Redis (a few hashes), so every worker process adds to the same numbers and
any one process can serve them: the web process at `/metrics`, and a worker when
`METRICS_PORT` is set. No Prometheus multiprocess directory is needed. Recording is best
effort: a metric that cannot be written never fails a job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from worker import keys
from worker.jobs import JobStore
from worker.status import JobStatus
from worker.sweeper import at_risk

logger = logging.getLogger(__name__)

# Seconds from Akool finishing to the video being in S3: from "at once" to "a day late".
LAG_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0)
# Jobs by status are counted over the newest jobs only, so a scrape stays cheap.
STATUS_SCAN_LIMIT = 10_000
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Records events into the fleet's counters in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def akool_call(self, endpoint: str, outcome: str) -> None:
        """Count one call to Akool: endpoint (submit, status, token) and outcome (ok,
        code_1005, http_502, network, ...)."""
        self._safely(
            lambda: self._redis.hincrby(keys.METRICS_AKOOL_CALLS, f"{endpoint}|{outcome}", 1)
        )

    def archived(self, size: int, seconds: float, lag: float | None) -> None:
        """Count one finished archive: bytes, seconds spent, and completion-to-archived lag."""

        def write() -> None:
            pipe = self._redis.pipeline()
            pipe.hincrby(keys.METRICS_ARCHIVE, "count", 1)
            pipe.hincrby(keys.METRICS_ARCHIVE, "bytes", size)
            pipe.hincrbyfloat(keys.METRICS_ARCHIVE, "seconds", seconds)
            if lag is not None:
                for bucket in LAG_BUCKETS:
                    if lag <= bucket:
                        pipe.hincrby(keys.METRICS_LAG, f"le_{bucket:g}", 1)
                pipe.hincrby(keys.METRICS_LAG, "count", 1)
                pipe.hincrbyfloat(keys.METRICS_LAG, "sum", lag)
            pipe.execute()

        self._safely(write)

    @staticmethod
    def _safely(write: Any) -> None:
        try:
            write()
        except redis.RedisError:
            logger.debug("metric not recorded: Redis unavailable")


class FleetCollector:
    """A Prometheus collector reading the fleet's state from Redis at scrape time."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def collect(self) -> Iterator[Metric]:
        """Read the fleet's state once per scrape."""
        store = JobStore(self._redis, retention_seconds=1)
        yield self._jobs_by_status()
        yield from self._akool_calls()
        yield from self._archive()
        yield self._lag()
        yield from self._risk(store)
        yield self._corrupt()

    def _jobs_by_status(self) -> Metric:
        family = GaugeMetricFamily(
            "lipsync_jobs", "Jobs by status (newest jobs, up to 10,000)", labels=["status"]
        )
        ids = [i.decode() for i in self._redis.zrevrange(keys.JOBS_INDEX, 0, STATUS_SCAN_LIMIT - 1)]
        pipe = self._redis.pipeline()
        for job_id in ids:
            pipe.hget(keys.job(job_id), "status")
        counts = dict.fromkeys((s.value for s in JobStatus), 0)
        # A record of another type answers an error in its place; it is simply not counted.
        for status in pipe.execute(raise_on_error=False) if ids else []:
            text = status.decode(errors="replace") if isinstance(status, bytes) else None
            if text in counts:
                counts[text] += 1
        for status, count in counts.items():
            family.add_metric([status], count)
        return family

    def _akool_calls(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "lipsync_akool_calls",
            "Calls to Akool by endpoint and outcome",
            labels=["endpoint", "outcome"],
        )
        for field, value in self._redis.hgetall(keys.METRICS_AKOOL_CALLS).items():
            endpoint, _, outcome = field.decode().partition("|")
            calls.add_metric([endpoint, outcome], int(value))
        yield calls

    def _archive(self) -> Iterator[Metric]:
        raw = {k.decode(): float(v) for k, v in self._redis.hgetall(keys.METRICS_ARCHIVE).items()}
        yield CounterMetricFamily(
            "lipsync_archive_bytes", "Bytes copied into S3", value=raw.get("bytes", 0.0)
        )
        yield CounterMetricFamily(
            "lipsync_archive_seconds",
            "Seconds spent copying into S3",
            value=raw.get("seconds", 0.0),
        )
        yield CounterMetricFamily(
            "lipsync_archives", "Videos archived", value=raw.get("count", 0.0)
        )

    def _lag(self) -> Metric:
        raw = {k.decode(): float(v) for k, v in self._redis.hgetall(keys.METRICS_LAG).items()}
        buckets = [(f"{b:g}", raw.get(f"le_{b:g}", 0.0)) for b in LAG_BUCKETS]
        buckets.append(("+Inf", raw.get("count", 0.0)))
        return HistogramMetricFamily(
            "lipsync_completion_to_archived_seconds",
            "Seconds from Akool finishing a job to its video stored in S3",
            buckets=buckets,
            sum_value=raw.get("sum", 0.0),
        )

    def _risk(self, store: JobStore) -> Iterator[Metric]:
        now = time.time()
        risky = at_risk(store, now=now)
        yield GaugeMetricFamily(
            "lipsync_jobs_at_risk",
            "Jobs not archived whose video Akool deletes within 24 h",
            value=len(risky),
        )
        yield GaugeMetricFamily(
            "lipsync_oldest_unarchived_finished_video_age_seconds",
            "Age of the oldest video Akool finished that is not archived yet",
            value=self._oldest_unarchived_age(now),
        )

    def _oldest_unarchived_age(self, now: float) -> float:
        """Scan the expiry index (oldest first, bounded) for a finished, unarchived video."""
        for raw_id in self._redis.zrange(keys.EXPIRY, 0, 999):
            completed = _number(self._hget(keys.job(raw_id.decode()), "completed_ts"))
            if completed is not None:
                return max(0.0, now - completed)
        return 0.0

    def _hget(self, key: str, field: str) -> bytes | None:
        """One field, or None when the key is missing or holds another type."""
        try:
            value = self._redis.hget(key, field)
        except redis.ResponseError:
            return None
        return value if isinstance(value, bytes) else None

    def _corrupt(self) -> Metric:
        return CounterMetricFamily(
            "lipsync_corrupt_records",
            "Job records found unreadable (partial, garbage or another type) and skipped",
            value=_number(self._redis.get(keys.METRICS_CORRUPT)) or 0.0,
        )


def _number(raw: bytes | None) -> float | None:
    """A stored number, or None when absent or not a number."""
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def render(client: redis.Redis) -> bytes:
    """The fleet's metrics in Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client))
    return generate_latest(registry)


def serve(client: redis.Redis, port: int) -> None:
    """Serve /metrics on `port` from a daemon thread (for workers with METRICS_PORT)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client))
    start_http_server(port, addr="0.0.0.0", registry=registry)  # noqa: S104 - scraped remotely
    logger.info("Serving metrics on port %d", port)
