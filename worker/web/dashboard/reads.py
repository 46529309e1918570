"""What the dashboard reads from Redis, bounded whatever the number of jobs: the counts the
scripts keep (worker/metrics.py), the head of the expiry set, and the newest ids of the
jobs index with their records in one pipelined round trip. Nothing here scans every job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from worker.errors import CorruptRecord
from worker.metrics import FleetCollector
from worker.names import LIPSYNC_KIND
from worker.status import AT_RISK_SECONDS, FILTER_WINDOW, JobStatus
from worker.store import Job, decode, keys

# Rows of the jobs table: the newest matches.
PAGE_ROWS = 100
# A filter looks through the newest FILTER_WINDOW (status) ids (ids by prefix in Python,
# statuses and metadata with one pipelined HMGET each): a match older than these is not
# shown, and the page says so.
# Jobs at risk listed (their total is counted apart): the soonest deleted first.
AT_RISK_ROWS = 50


@dataclass(frozen=True)
class Overview:
    """What the jobs page shows."""

    counts: dict[str, int]
    at_risk_total: int
    at_risk: list[Job]
    jobs: list[Job]
    # True when the filter looked through FILTER_WINDOW ids and older ones were left.
    window_full: bool


def _records(client: redis.Redis, ids: list[str]) -> list[Job | None]:
    """The records of `ids`, in order, in one round trip; None for one gone or unreadable
    (the sweeper and the metrics count those)."""
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(keys.job(job_id))
    return [_job(job_id, raw) for job_id, raw in zip(ids, pipe.execute(False), strict=True)]


def _job(job_id: str, raw: object) -> Job | None:
    if not isinstance(raw, dict) or not raw:
        return None
    try:
        return decode(keys.job(job_id), raw)
    except CorruptRecord:
        return None


def metadata_filter(text: str) -> tuple[str, str] | None:
    """`key=value` as (key, value), split at the first "="; None when there is no "=" or
    no key (a key holding "=" cannot be searched for)."""
    key, sign, value = text.partition("=")
    return (key, value) if sign and key else None


def has_metadata(raw: object, key: str, value: str) -> bool:
    """True when a record's `metadata` field (JSON, as stored) maps `key` to `value`."""
    if not isinstance(raw, bytes | str) or not raw:
        return False
    try:
        metadata = json.loads(raw)
    except ValueError:  # not JSON, or not UTF-8: an unreadable record matches nothing
        return False
    return isinstance(metadata, dict) and metadata.get(key) == value


def matching_ids(
    client: redis.Redis,
    status: str | None,
    prefix: str,
    window: int = FILTER_WINDOW,
    meta: tuple[str, str] | None = None,
    kind: str | None = None,
) -> tuple[list[str], bool]:
    """The newest PAGE_ROWS ids (newest first) among the newest `window`, with `prefix`, in
    `status` (None: any), whose metadata holds `meta` (key, value) (None: any) and of
    `kind` (None: any); and whether the window was full (older jobs not looked at)."""
    raw = client.zrevrange(keys.JOBS_INDEX, 0, window - 1)
    ids = [i.decode() for i in raw if i.decode().startswith(prefix)]
    if status or meta or kind:
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(keys.job(job_id), "status", "metadata", "kind")
        found = pipe.execute(False)
        ids = [
            job_id
            for job_id, fields in zip(ids, found, strict=True)
            if isinstance(fields, list) and _matches(fields, status, meta, kind)
        ]
    return ids[:PAGE_ROWS], len(raw) == window


def _matches(
    fields: list[object], status: str | None, meta: tuple[str, str] | None, kind: str | None
) -> bool:
    """True when a record's [status, metadata, kind] fields pass the filters. A record of
    an earlier release has no kind: it is a lip-sync job."""
    if status and fields[0] != status.encode():
        return False
    if kind and (fields[2] or LIPSYNC_KIND.encode()) != kind.encode():
        return False
    return meta is None or has_metadata(fields[1], *meta)


def overview(
    client: redis.Redis,
    collector: FleetCollector,
    *,
    status: str | None = None,
    prefix: str = "",
    meta: tuple[str, str] | None = None,
    kind: str | None = None,
    now: float,
) -> Overview:
    """Counts by status, the jobs at risk (soonest first) and the newest matching jobs."""
    snapshot = collector.read(now)
    ids, window_full = matching_ids(client, status, prefix, meta=meta, kind=kind)
    # Archived jobs leave the expiry set; what it holds up to a day ahead is at risk.
    risky = client.zrangebyscore(
        keys.EXPIRY, "-inf", now + AT_RISK_SECONDS, start=0, num=AT_RISK_ROWS
    )
    jobs = _records(client, [i.decode() for i in risky] + ids)
    at_risk = [j for j in jobs[: len(risky)] if j and j.status != JobStatus.ARCHIVED]
    return Overview(
        counts=snapshot.jobs,
        at_risk_total=snapshot.at_risk,
        at_risk=at_risk,
        jobs=[j for j in jobs[len(risky) :] if j],
        window_full=window_full and bool(status or prefix or meta or kind),
    )
