"""Job records in Redis: the source of truth about each lip-sync job.

One hash per job, refreshed to expire after the retention period, and three sorted sets of
job ids (key names in worker/keys.py):
- the index, by creation time, for listing;
- the due set, by the time each unfinished job must next show progress: the sweeper
  re-drives jobs whose time has passed (a crashed worker, a lost message);
- the expiry set, by when Akool deletes each result not yet archived, for the expiry guard.
Beside them, per job: our id under Akool's id (webhook callbacks name only Akool's), the one
right to start its archive, and whether its end was announced. A job in a final state
(`archived`, `failed`) is never changed by a late or duplicated task: updates are checked
atomically in a Lua script, which also keeps the sorted sets in step.
"""

from __future__ import annotations

import functools
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import redis

from worker import keys
from worker.errors import StoreUnavailable
from worker.status import FINAL_STATUSES, JobStatus

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def _lua(script: str) -> str:
    """A Lua script with the final statuses filled in ($archived, $failed)."""
    return string.Template(script).substitute(
        archived=JobStatus.ARCHIVED.value, failed=JobStatus.FAILED.value
    )


# Sets fields unless the job is in a final state, and keeps the due/expiry sets in step.
# KEYS: job hash, due set, expiry set. ARGV: ttl seconds, job id, due time ('' = unchanged),
# then field/value pairs. Returns 1 when written, 0 when the job is final, -1 when missing.
_UPDATE_UNLESS_FINAL = _lua("""
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local status = redis.call('HGET', KEYS[1], 'status')
if status == '$archived' or status == '$failed' then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
status = redis.call('HGET', KEYS[1], 'status')
local expires = redis.call('HGET', KEYS[1], 'expires_ts')
local result = redis.call('HGET', KEYS[1], 'result_url')
if status == '$archived' or status == '$failed' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  -- A failed job whose video exists at Akool is still worth saving: keep watching it.
  if status == '$archived' or not result or result == '' then
    redis.call('ZREM', KEYS[3], ARGV[2])
  end
  return 1
end
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2]) end
if expires and expires ~= '' then redis.call('ZADD', KEYS[3], expires, ARGV[2]) end
return 1
""")

# Takes the poll loop for a task id: the first loop to run (or the one the sweeper names)
# owns the job; a duplicated loop finds another owner and stops. KEYS[1] job hash,
# ARGV[1] task id. Returns 1 when this task owns the polling.
_OWN_POLL = """
local owner = redis.call('HGET', KEYS[1], 'poll_owner')
if not owner or owner == '' then
  redis.call('HSET', KEYS[1], 'poll_owner', ARGV[1])
  return 1
end
if owner == ARGV[1] then return 1 end
return 0
"""


# Re-opens a failed job for an operator's retry: the one write that may change a final job.
# KEYS: job hash, due set, expiry set. ARGV: job id, status, due, now, new poll deadline
# ('' keeps it). Returns 1 when re-opened, 0 when the job is not failed (any more).
_REOPEN_FAILED = _lua("""
if redis.call('HGET', KEYS[1], 'status') ~= '$failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'error', '', 'updated_ts', ARGV[4],
           'redrives', '0')
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'poll_deadline_ts', ARGV[5]) end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local expires = redis.call('HGET', KEYS[1], 'expires_ts')
if expires and expires ~= '' then redis.call('ZADD', KEYS[3], expires, ARGV[1]) end
return 1
""")


def new_job_id() -> str:
    """An unguessable job id: 128 random bits as 32 lowercase hex digits."""
    return secrets.token_hex(16)


def is_job_id(value: str) -> bool:
    """True for a string shaped like our job ids (and so safe inside keys)."""
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


@dataclass(frozen=True)
class Job:
    """A snapshot of one job's record."""

    id: str
    status: JobStatus
    video_url: str
    audio_url: str
    webhook_url: str | None = None
    akool_id: str | None = None
    result_url: str | None = None
    archive_uri: str | None = None
    error: str | None = None
    created_ts: float = 0.0
    updated_ts: float = 0.0
    submitted_ts: float | None = None
    completed_ts: float | None = None
    archived_ts: float | None = None
    expires_ts: float | None = None
    poll_deadline_ts: float | None = None
    submit_claimed_ts: float | None = None
    polls: int = 0
    archive_bytes: int | None = None
    poll_owner: str | None = None
    redrives: int = 0
    # Where to tell the application that the job ended: an HTTP URL to POST the record to,
    # and/or a Celery signature (JSON) to call with the job id.
    notify_url: str | None = None
    on_complete: str | None = None
    # Bytes copied so far by a running archive (for progress bars).
    archive_progress_bytes: int | None = None
    archive_total_bytes: int | None = None

    @property
    def created_at(self) -> datetime:
        """When the job was accepted (UTC)."""
        return datetime.fromtimestamp(self.created_ts, tz=UTC)

    @property
    def expires_at(self) -> datetime | None:
        """When Akool deletes the result (UTC); counted from submission, so never late."""
        return _when(self.expires_ts)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, with ISO timestamps."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["created_at"] = self.created_at.isoformat()
        out["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        return out


_FLOAT_FIELDS = {f.name for f in fields(Job) if f.name.endswith("_ts")}
_INT_FIELDS = {
    "polls",
    "archive_bytes",
    "redrives",
    "archive_progress_bytes",
    "archive_total_bytes",
}


def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name, text = k.decode(), v.decode()
        if name not in Job.__dataclass_fields__ or text == "":
            continue
        if name in _FLOAT_FIELDS:
            out[name] = float(text)
        elif name in _INT_FIELDS:
            out[name] = int(text)
        elif name == "status":
            out[name] = JobStatus(text)
        else:
            out[name] = text
    return out


def _encode(values: dict[str, Any]) -> dict[str | bytes, str]:
    for name in values:
        if name not in Job.__dataclass_fields__:
            raise ValueError(f"unknown job field {name!r}")
    return {name: "" if value is None else str(value) for name, value in values.items()}


P = ParamSpec("P")
R = TypeVar("R")


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Turn redis-py's connection failures into StoreUnavailable (a TransientError)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise StoreUnavailable(
                "the job store could not be reached: is Redis running at REDIS_URL?"
            ) from e

    return wrapper


class JobStore:
    """Reads and writes job records in Redis."""

    def __init__(self, client: redis.Redis, *, retention_seconds: int) -> None:
        self._redis = client
        self._retention = int(retention_seconds)
        self._update = client.register_script(_UPDATE_UNLESS_FINAL)
        self._own_poll = client.register_script(_OWN_POLL)
        self._reopen = client.register_script(_REOPEN_FAILED)

    @_translated
    def create(
        self,
        job_id: str,
        video_url: str,
        audio_url: str,
        webhook_url: str | None = None,
        *,
        due: float,
        notify_url: str | None = None,
        on_complete: str | None = None,
    ) -> Job:
        """Store a new job in state `queued`, due to show progress by `due` (epoch s)."""
        now = time.time()
        job = Job(
            id=job_id,
            status=JobStatus.QUEUED,
            video_url=video_url,
            audio_url=audio_url,
            webhook_url=webhook_url,
            created_ts=now,
            updated_ts=now,
            notify_url=notify_url,
            on_complete=on_complete,
        )
        values = {
            f.name: getattr(job, f.name) for f in fields(job) if getattr(job, f.name) is not None
        }
        pipe = self._redis.pipeline()
        pipe.hset(self._key(job_id), mapping=_encode(values))
        pipe.expire(self._key(job_id), self._retention)
        pipe.zadd(keys.JOBS_INDEX, {job_id: now})
        pipe.zadd(keys.DUE, {job_id: due})
        # The index forgets ids whose records have expired, so it cannot grow forever.
        pipe.zremrangebyscore(keys.JOBS_INDEX, 0, now - self._retention)
        pipe.execute()
        return job

    @_translated
    def get(self, job_id: str) -> Job:
        """The job's record; KeyError when there is none (unknown or expired)."""
        raw = self._redis.hgetall(self._key(job_id)) if is_job_id(job_id) else {}
        if not raw:
            raise KeyError(job_id)
        return Job(**_decode(raw))

    @_translated
    def update(self, job_id: str, *, due: float | None = None, **values: Any) -> bool:
        """Set fields (and refresh `updated_ts`) unless the job is final; False if it is.

        `due` is when the job must next show progress, or the sweeper re-drives it.
        """
        values.setdefault("updated_ts", time.time())
        flat = [item for pair in _encode(values).items() for item in pair]
        names = [self._key(job_id), keys.DUE, keys.EXPIRY]
        args = [self._retention, job_id, "" if due is None else repr(due), *flat]
        result = self._update(keys=names, args=args)
        if result == -1:
            raise KeyError(job_id)
        return result == 1

    @_translated
    def heartbeat(
        self,
        job_id: str,
        due: float,
        *,
        progress_bytes: int | None = None,
        total_bytes: int | None = None,
    ) -> None:
        """A sign of life from a running step: push the job's due time to `due` (and record
        how far an archive got)."""
        pipe = self._redis.pipeline()
        pipe.hset(self._key(job_id), "updated_ts", time.time())
        if progress_bytes is not None:
            pipe.hset(self._key(job_id), "archive_progress_bytes", progress_bytes)
        if total_bytes is not None:
            pipe.hset(self._key(job_id), "archive_total_bytes", total_bytes)
        pipe.zadd(keys.DUE, {job_id: due}, xx=True)  # never re-adds a finished job
        pipe.execute()

    @_translated
    def reopen(
        self, job_id: str, status: JobStatus, *, due: float, poll_deadline: float | None = None
    ) -> bool:
        """Make a failed job unfinished again at `status`, its error cleared and back in the
        due set (a new poll deadline when given); False when it is not failed (any more)."""
        names = [self._key(job_id), keys.DUE, keys.EXPIRY]
        deadline = "" if poll_deadline is None else repr(poll_deadline)
        args = [job_id, status, repr(due), repr(time.time()), deadline]
        return bool(self._reopen(keys=names, args=args))

    @_translated
    def own_poll(self, job_id: str, task_id: str) -> bool:
        """True when `task_id` is (now) the one poll loop of this job."""
        return bool(self._own_poll(keys=[self._key(job_id)], args=[task_id]))

    @_translated
    def overdue(self, now: float, limit: int = 500) -> list[str]:
        """Ids of unfinished jobs whose due time has passed, most overdue first."""
        ids = self._redis.zrangebyscore(keys.DUE, "-inf", now, start=0, num=limit)
        return [i.decode() for i in ids]

    @_translated
    def forget_due(self, job_id: str) -> None:
        """Drop a job from the due set (its record expired or it is final)."""
        self._redis.zrem(keys.DUE, job_id)

    @_translated
    def expiring(self, before: float, limit: int = 1000) -> list[str]:
        """Ids of jobs not archived whose video Akool deletes before `before` (epoch s)."""
        ids = self._redis.zrangebyscore(keys.EXPIRY, "-inf", before, start=0, num=limit)
        return [i.decode() for i in ids]

    @_translated
    def forget_expiry(self, job_id: str) -> None:
        """Drop a job from the expiry set (its record expired)."""
        self._redis.zrem(keys.EXPIRY, job_id)

    def fail(self, job_id: str, error: str) -> bool:
        """Mark the job failed with a sentence saying why (unless it is already final)."""
        return self.update(job_id, status=JobStatus.FAILED, error=error)

    @_translated
    def claim_submit(self, job_id: str) -> bool:
        """Take the one right to send this job's submit to Akool; False if already taken."""
        return bool(self._redis.hsetnx(self._key(job_id), "submit_claimed_ts", time.time()))

    @_translated
    def release_submit(self, job_id: str) -> None:
        """Give the right back after a submit that certainly did not reach Akool."""
        self._redis.hdel(self._key(job_id), "submit_claimed_ts")

    @_translated
    def count_poll(self, job_id: str) -> int:
        """Count one more poll of Akool for this job."""
        return int(self._redis.hincrby(self._key(job_id), "polls", 1))

    @_translated
    def recent_ids(self, limit: int = 100) -> list[str]:
        """The newest job ids, newest first, dropping ids whose records have expired."""
        ids = [i.decode() for i in self._redis.zrevrange(keys.JOBS_INDEX, 0, limit - 1)]
        return [i for i in ids if self._redis.exists(self._key(i))]

    @_translated
    def try_lock(self, name: str, seconds: float) -> bool:
        """Take a fleet-wide lock for `seconds` (no release: it simply expires)."""
        return bool(self._redis.set(keys.lock(name), "1", nx=True, px=int(seconds * 1000)))

    @_translated
    def mark_announced(self, job_id: str) -> bool:
        """Note that the job's end is being announced; False when it already was."""
        return bool(self._redis.set(keys.notified(job_id), "1", nx=True, ex=self._retention))

    @_translated
    def forget_announcement(self, job_id: str) -> None:
        """Let the job's next ending be announced again (after an operator re-drove it)."""
        self._redis.delete(keys.notified(job_id))

    @_translated
    def remember_akool_id(self, job_id: str, akool_id: str) -> None:
        """Index our job id by Akool's id, so a callback (which names only Akool's) finds it."""
        self._redis.set(keys.akool_index(akool_id), job_id, ex=self._retention)

    @_translated
    def job_for_akool_id(self, akool_id: str) -> str | None:
        """Our job id for Akool's id, or None when it is not ours (or its record expired)."""
        value = self._redis.get(keys.akool_index(akool_id))
        return value.decode() if isinstance(value, bytes) else value

    @_translated
    def claim_archive(self, job_id: str) -> bool:
        """Take the one right to start the archive after completion was seen.

        Completion can be seen twice, by the webhook and by a poll in flight at the same
        moment; whichever claims first enqueues the archive, the other stops. (The sweeper and
        an operator's retry re-drive an archive directly: they act on jobs nothing works on.)
        """
        return bool(self._redis.set(keys.archive_claim(job_id), "1", nx=True, ex=self._retention))

    @staticmethod
    def _key(job_id: str) -> str:
        return keys.job(job_id)
