"""Fleet-wide metrics in Prometheus format.

Counters live in Redis (a few hashes), so every worker process adds to the same numbers and
any one process can serve them: the web process and each worker serve `/metrics` on
`METRICS_PORT` when it is set, a private port (never the web process's public $PORT). No
Prometheus multiprocess directory is needed. Recording is best effort: a metric that cannot
be written never fails a job.

A scrape costs a bounded number of Redis commands, whatever the number of jobs: the job
counts by status and the set of unarchived finished videos are kept by the Lua scripts that
move jobs (worker/store/scripts.py), and everything is read in one pipelined round trip
(SCRAPE_COMMANDS commands), then EXISTS on the record at the head of the unarchived set; a
dead head (its record expired) costs a ZREM and a ZRANGE more, at most UNARCHIVED_PROBES
times a scrape. The jobs waiting while a fault passes are counted by family and kept in a
sorted set each by the same scripts, so their counts and oldest waits are in that pipeline
(`lipsync_jobs_waiting`, `lipsync_jobs_waiting_oldest_seconds`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from worker.clock import Clock, wall_clock
from worker.names import QUEUES
from worker.status import AT_RISK_SECONDS, WAIT_FAMILIES, JobStatus
from worker.store import counts as job_counts
from worker.store import keys

logger = logging.getLogger(__name__)

# Seconds from Akool finishing to the video being in S3: from "at once" to "a day late".
LAG_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0)
# The field the one-time count of existing jobs leaves in the counts hashes (store.counts).
COUNTED_SINCE_FIELD = b"counted_since"
# Dead heads of the unarchived set (records expired) a scrape drops before giving up.
UNARCHIVED_PROBES = 3
# Commands in a scrape's one pipeline: 5 hashes, the corrupt counter, the at-risk count, the
# unarchived head, the request budget's rate (a small hash), one LLEN per queue, the counts
# of waiting jobs (a hash) and the head of each family's waiting set.
SCRAPE_COMMANDS = 10 + len(QUEUES) + len(WAIT_FAMILIES)
# A poll loop waits on its countdown in these statuses (one loop per job).
POLLING_STATUSES = (JobStatus.SUBMITTED, JobStatus.PROCESSING)


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


@dataclass(frozen=True)
class Snapshot:
    """What one scrape read from Redis."""

    jobs: dict[str, int]
    akool_calls: dict[bytes, bytes]
    archive: dict[str, float]
    lag: dict[str, float]
    corrupt: float
    at_risk: int
    oldest_unarchived_age: float
    queues: dict[str, int]
    # The fleet's adaptive Akool request rate (None before the first call to Akool).
    budget_rps: float | None = None
    # Jobs waiting while a fault passes, by kind: how many, and since when the oldest waits.
    waiting: dict[str, tuple[int, float | None]] | None = None
    # Jobs by (kind of Akool video, status).
    jobs_by_kind: dict[tuple[str, str], int] | None = None


class FleetCollector:
    """A Prometheus collector reading the fleet's state from Redis at scrape time, in a
    bounded number of commands."""

    def __init__(self, client: redis.Redis, *, clock: Clock = wall_clock) -> None:
        self._redis = client
        self._clock = clock
        self._count_jobs = client.register_script(job_counts.COUNT_JOBS)

    def collect(self) -> Iterator[Metric]:
        """Read the fleet's state once per scrape."""
        now = self._clock()
        snapshot = self.read(now)
        yield _jobs_by_status(snapshot.jobs)
        yield _jobs_by_kind(snapshot.jobs_by_kind or {})
        yield _polls_waiting(snapshot.jobs)
        yield _queue_lengths(snapshot.queues)
        yield _akool_calls(snapshot.akool_calls)
        yield from _archive(snapshot.archive)
        yield _lag(snapshot.lag)
        yield from _risk(snapshot)
        yield _corrupt(snapshot.corrupt)
        if snapshot.budget_rps is not None:
            yield _budget_rps(snapshot.budget_rps)
        yield from _waiting(snapshot.waiting or {}, now)

    def read(self, now: float) -> Snapshot:
        """Everything a scrape shows, in one pipelined round trip (plus, once per Redis, the
        count of jobs written before counts were kept, and rarely a dead head to drop)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.METRICS_JOBS_BY_STATUS)
        pipe.hgetall(keys.METRICS_JOBS_BY_KIND)
        pipe.hgetall(keys.METRICS_AKOOL_CALLS)
        pipe.hgetall(keys.METRICS_ARCHIVE)
        pipe.hgetall(keys.METRICS_LAG)
        pipe.get(keys.METRICS_CORRUPT)
        # Archived jobs leave the expiry set, so what it holds up to a day ahead is at risk.
        pipe.zcount(keys.EXPIRY, "-inf", now + AT_RISK_SECONDS)
        pipe.zrange(keys.UNARCHIVED, 0, 0, withscores=True)
        pipe.hgetall(keys.AKOOL_BUDGET_RATE)
        pipe.hgetall(keys.METRICS_WAITING)
        for family in WAIT_FAMILIES:
            pipe.zrange(keys.waiting(family), 0, 0, withscores=True)
        for queue in QUEUES:
            pipe.llen(queue)
        counts, kinds, calls, archive, lag, corrupt, at_risk, head, rps, waits, *rest = (
            pipe.execute()
        )
        oldest, lengths = rest[: len(WAIT_FAMILIES)], rest[len(WAIT_FAMILIES) :]
        if COUNTED_SINCE_FIELD not in counts or COUNTED_SINCE_FIELD not in kinds:
            counts, kinds, head = self._count_existing_jobs(now)
        return Snapshot(
            jobs=_job_counts(counts),
            jobs_by_kind=_kind_counts(kinds),
            akool_calls=calls,
            archive=_floats(archive),
            lag=_floats(lag),
            corrupt=_number(corrupt) or 0.0,
            at_risk=int(at_risk),
            oldest_unarchived_age=self._oldest_unarchived_age(head, now),
            queues=dict(zip(QUEUES, (int(n) for n in lengths), strict=True)),
            budget_rps=_number(rps.get(b"rps")),
            waiting=_waiting_counts(waits, oldest),
        )

    def _count_existing_jobs(
        self, now: float
    ) -> tuple[dict[bytes, bytes], dict[bytes, bytes], Any]:
        """Count the jobs by status and fill the unarchived set, once (a Redis from before
        they were kept); the counts and the set's head, read again."""
        statuses = [s.value for s in JobStatus]
        names = [
            keys.METRICS_JOBS_BY_STATUS,
            keys.JOBS_INDEX,
            keys.UNARCHIVED,
            keys.METRICS_JOBS_BY_KIND,
        ]
        if self._count_jobs(keys=names, args=[keys.JOB_PREFIX, repr(now), *statuses]):
            logger.info("Counted the jobs by status once; from now on they are kept as they move")
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.METRICS_JOBS_BY_STATUS)
        pipe.hgetall(keys.METRICS_JOBS_BY_KIND)
        pipe.zrange(keys.UNARCHIVED, 0, 0, withscores=True)
        counts, kinds, head = pipe.execute()
        return counts, kinds, head

    def _oldest_unarchived_age(self, head: list[tuple[bytes, float]], now: float) -> float:
        """Seconds since Akool finished the oldest video not archived yet (0 when none).

        The set's members leave it when archived; a record that expired first (a failed job
        kept for its video, JOB_RETENTION_DAYS later) is dropped here, a few at most a scrape.
        """
        for _ in range(UNARCHIVED_PROBES):
            if not head:
                return 0.0
            job_id, completed = head[0]
            if self._redis.exists(keys.job(job_id.decode())):
                return max(0.0, now - completed)
            self._redis.zrem(keys.UNARCHIVED, job_id)
            head = self._redis.zrange(keys.UNARCHIVED, 0, 0, withscores=True)
        return 0.0


def _job_counts(raw: dict[bytes, bytes]) -> dict[str, int]:
    counts = dict.fromkeys((s.value for s in JobStatus), 0)
    for field, value in raw.items():
        name = field.decode(errors="replace")
        if name in counts:
            counts[name] = int(value)
    return counts


def _kind_counts(raw: dict[bytes, bytes]) -> dict[tuple[str, str], int]:
    """The counts by kind and status ("kind:status" fields), bookkeeping left out."""
    out = {}
    for field, value in raw.items():
        kind, sep, status = field.decode(errors="replace").partition(":")
        if sep:
            out[(kind, status)] = int(value)
    return out


def _jobs_by_kind(counts: dict[tuple[str, str], int]) -> Metric:
    family = GaugeMetricFamily(
        "lipsync_jobs_by_kind",
        "Jobs by kind of Akool video and status, counted as they move (lipsync_jobs's "
        "sibling: lipsync_jobs keeps its one label, so existing queries keep working)",
        labels=["kind", "status"],
    )
    for (kind, status), count in sorted(counts.items()):
        family.add_metric([kind, status], count)
    return family


def _floats(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in raw.items()}


def _jobs_by_status(counts: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(
        "lipsync_jobs",
        "Jobs by status, counted as they move (archived, failed, cancelled: each ended so)",
        labels=["status"],
    )
    for status, count in counts.items():
        family.add_metric([status], count)
    return family


def _polls_waiting(counts: dict[str, int]) -> Metric:
    return GaugeMetricFamily(
        "lipsync_polls_waiting",
        "Polls waiting for their countdown: one per job submitted to Akool and not done there",
        value=sum(counts[s.value] for s in POLLING_STATUSES),
    )


def _queue_lengths(lengths: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(
        "lipsync_queue_length",
        "Messages waiting in each Celery queue for a worker to take them",
        labels=["queue"],
    )
    for queue, length in lengths.items():
        family.add_metric([queue], length)
    return family


def _akool_calls(raw: dict[bytes, bytes]) -> Metric:
    calls = CounterMetricFamily(
        "lipsync_akool_calls",
        "Calls to Akool by endpoint and outcome",
        labels=["endpoint", "outcome"],
    )
    for field, value in raw.items():
        endpoint, _, outcome = field.decode().partition("|")
        calls.add_metric([endpoint, outcome], int(value))
    return calls


def _archive(raw: dict[str, float]) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "lipsync_archive_bytes", "Bytes copied into S3", value=raw.get("bytes", 0.0)
    )
    yield CounterMetricFamily(
        "lipsync_archive_seconds",
        "Seconds spent copying into S3",
        value=raw.get("seconds", 0.0),
    )
    yield CounterMetricFamily("lipsync_archives", "Videos archived", value=raw.get("count", 0.0))


def _lag(raw: dict[str, float]) -> Metric:
    buckets = [(f"{b:g}", raw.get(f"le_{b:g}", 0.0)) for b in LAG_BUCKETS]
    buckets.append(("+Inf", raw.get("count", 0.0)))
    return HistogramMetricFamily(
        "lipsync_completion_to_archived_seconds",
        "Seconds from Akool finishing a job to its video stored in S3",
        buckets=buckets,
        sum_value=raw.get("sum", 0.0),
    )


def _risk(snapshot: Snapshot) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "lipsync_jobs_at_risk",
        "Jobs not archived whose video Akool deletes within 24 h",
        value=snapshot.at_risk,
    )
    yield GaugeMetricFamily(
        "lipsync_oldest_unarchived_finished_video_age_seconds",
        "Age of the oldest video Akool finished that is not archived yet",
        value=snapshot.oldest_unarchived_age,
    )


def _corrupt(value: float) -> Metric:
    return CounterMetricFamily(
        "lipsync_corrupt_records",
        "Job records found unreadable (partial, garbage or another type) and skipped",
        value=value,
    )


def _budget_rps(rps: float) -> Metric:
    return GaugeMetricFamily(
        "lipsync_akool_budget_rps",
        "The fleet's Akool request rate now: cut on 1005/429, climbing back to AKOOL_MAX_RPS",
        value=rps,
    )


def _waiting_counts(
    counts: dict[bytes, bytes], heads: list[list[tuple[bytes, float]]]
) -> dict[str, tuple[int, float | None]]:
    """Per family of waits: how many jobs wait, and since when the oldest waits."""
    out = {}
    for family, head in zip(WAIT_FAMILIES, heads, strict=True):
        count = int(_number(counts.get(family.encode())) or 0)
        out[family] = (max(0, count), head[0][1] if head else None)
    return out


def _waiting(waiting: dict[str, tuple[int, float | None]], now: float) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "lipsync_jobs_waiting",
        "Unfinished jobs waiting while a fault passes, by what they wait on (akool: Akool "
        "unreachable, failing or answering without the video; file: the result's host "
        "answering gone; download; storage: S3)",
        labels=["on"],
    )
    oldest = GaugeMetricFamily(
        "lipsync_jobs_waiting_oldest_seconds",
        "How long the job waiting longest on each kind of fault has waited (0: none waits)",
        labels=["on"],
    )
    for family in WAIT_FAMILIES:
        count, since = waiting.get(family, (0, None))
        jobs.add_metric([family], count)
        oldest.add_metric([family], max(0.0, now - since) if since else 0.0)
    yield jobs
    yield oldest


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


def serve(client: redis.Redis, port: int, addr: str = "0.0.0.0") -> bool:  # noqa: S104
    """Serve /metrics on `addr`:`port` from a daemon thread (METRICS_PORT: a private port, for
    Prometheus on the internal network). False, logged as an error, when the port is taken:
    the process goes on with its real work."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client))
    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        logger.error("METRICS_PORT %d cannot be served (%s): no /metrics here", port, e)
        return False
    logger.info("Serving metrics on %s:%d", addr, port)
    return True
