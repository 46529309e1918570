"""Job records in Redis: the source of truth about each lip-sync job.

One hash per job, refreshed to expire after the retention period, and three sorted sets of
job ids (key names in worker/store/keys.py):
- the index, by creation time, for listing;
- the due set, by the time each unfinished job must next show progress: the sweeper
  re-drives jobs whose time has passed (a crashed worker, a lost message);
- the expiry set, by when Akool deletes each result not yet archived, for the expiry guard.
Beside them, per job: our id under Akool's id (webhook callbacks name only Akool's), the one
right to start its archive, and its pending notification (worker/store/outbox.py). A job in a
final state (`archived`, `failed`) is never changed by a late or duplicated task, and no
write recreates a record that expired: writes are checked atomically in Lua scripts
(worker/store/scripts.py), which also keep the sorted sets in step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from worker.clock import Clock, wall_clock
from worker.errors import CorruptRecord, StoreUnavailable
from worker.status import WAIT_FAMILIES, JobStatus
from worker.store import keys
from worker.store import scripts as job_scripts
from worker.store.creation import created, creation, with_token
from worker.store.ending import Ending
from worker.store.outbox import Outbox
from worker.store.records import (
    POLL_LOG_ENTRIES,
    Job,
    decode,
    encode,
    is_job_id,
    new_job_id,
    translated,
)

__all__ = ["Job", "JobStore", "is_job_id", "moving", "new_job_id"]

# How long a submit claim may wait for a replica to confirm it (Sentinel deployments).
CLAIM_REPLICATION_TIMEOUT_MS = 2000

logger = logging.getLogger(__name__)


# The sets and counts a status change keeps in step, after the job's own hash (the KEYS of
# UPDATE_UNLESS_FINAL and REOPEN_FAILED): the waiting sets and their counts last, in
# job_scripts' order (from its WAIT_KEYS_FROM).
_MOVE_KEYS = (
    keys.DUE,
    keys.EXPIRY,
    keys.OUTBOX,
    keys.METRICS_JOBS_BY_STATUS,
    keys.UNARCHIVED,
    *(keys.waiting(family) for family in WAIT_FAMILIES),
    keys.METRICS_WAITING,
)
# KEYS[1] is the job's hash: the first waiting set is KEYS[WAIT_KEYS_FROM] in the scripts.
assert _MOVE_KEYS.index(keys.waiting(WAIT_FAMILIES[0])) + 2 == job_scripts.WAIT_KEYS_FROM


def moving(
    job_id: str, due: float | None, values: dict[str, Any], *, now: float, ttl: int
) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of a write that may move the job (UPDATE_UNLESS_FINAL's layout,
    shared with worker/aio.py); `updated_ts` is `now` unless `values` say otherwise."""
    values.setdefault("updated_ts", now)
    flat = [item for pair in encode(values).items() for item in pair]
    names = [keys.job(job_id), *_MOVE_KEYS]
    return names, [ttl, job_id, "" if due is None else repr(due), repr(now), *flat]


def _whole(result: Any, job_id: str) -> int:
    """A script's answer, or KeyError when it found no whole record to write to."""
    if result == -1:
        raise KeyError(job_id)
    return int(result)


class JobStore:
    """Reads and writes job records in Redis; every write keeps a record whole or absent."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        retention_seconds: int,
        claim_replicas: int = 0,
        clock: Clock = wall_clock,
    ) -> None:
        self._redis = client
        # What every write stamps (created_ts, updated_ts, a poll's or a claim's time).
        self._clock = clock
        self._retention = int(retention_seconds)
        # Replicas that must hold a submit claim before the submit may leave (Sentinel: a
        # failover to a replica that never saw the claim would let the job be sent twice).
        self._claim_replicas = claim_replicas
        script = client.register_script
        self._update = script(job_scripts.UPDATE_UNLESS_FINAL)
        self._update_unnamed = script(job_scripts.UPDATE_WITHOUT_AKOOL_ID)
        self._heartbeat = script(job_scripts.HEARTBEAT)
        self._own_poll = script(job_scripts.OWN_POLL)
        self._record_poll = script(job_scripts.RECORD_POLL)
        self._claim_submit = script(job_scripts.CLAIM_SUBMIT)
        self._release_submit = script(job_scripts.RELEASE_SUBMIT)
        self._forget = script(job_scripts.FORGET)
        self._reopen = script(job_scripts.REOPEN_FAILED)
        self._create = script(job_scripts.CREATE_JOB)
        self._set_if_whole = script(job_scripts.SET_IF_WHOLE)
        # Jobs whose end is still to be told to the application.
        self.outbox = Outbox(client)

    @translated
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
        now = self._clock()
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
        job = with_token(job)
        self.insert(job, due=due)
        return job

    @translated
    def insert(self, job: Job, *, due: float) -> str:
        """Store a new job as given, due to show progress by `due` (epoch s), unless a
        claim it makes is held (see `claims`); return the id of the job that answers it.

        That is the new job's id, or, when its idempotency key names a job made by the
        same request, that job's (nothing stored); also an adopted Akool id's job that has
        not failed or been cancelled. IdempotencyConflict (a different request under the
        key) and ArchiveKeyTaken (another job holds the archive key) store nothing.
        """
        names, args = creation(with_token(job), due=due, ttl=self._retention)
        return created(self._create(keys=names, args=args), job)

    @translated
    def find(self, idempotency_key: str) -> Job:
        """The job made under `idempotency_key`; KeyError when there is none (any more)."""
        value = self._redis.get(keys.idempotency(idempotency_key))
        if value is None:
            raise KeyError(idempotency_key)
        job = self.get(value.decode() if isinstance(value, bytes) else str(value))
        if job.idempotency_key != idempotency_key:
            raise KeyError(idempotency_key)
        return job

    def ending(self, job_id: str) -> Ending:
        """A subscription to the job's ending (use it as a context manager)."""
        return Ending(self._redis, job_id)

    @translated
    def cancel(self, job_id: str, reason: str) -> bool:
        """Make the job `cancelled` with `reason` as its error, unless it ended already
        (False). The write tells the application and the result backend, like any ending."""
        return self.update(job_id, status=JobStatus.CANCELLED, error=reason)

    @translated
    def note(self, job_id: str, **values: Any) -> bool:
        """Record bookkeeping fields on a whole record, final or not, without moving it (what
        a step learnt after the job ended); False when the record is gone."""
        flat = [item for pair in encode(values).items() for item in pair]
        return self._set_if_whole(keys=[self._key(job_id)], args=flat) == 1

    @translated
    def get(self, job_id: str) -> Job:
        """The job's record; KeyError when there is none (unknown or expired), CorruptRecord
        (also a KeyError) when it is not whole."""
        raw = self._redis.hgetall(self._key(job_id)) if is_job_id(job_id) else {}
        if not raw:
            raise KeyError(job_id)
        return decode(self._key(job_id), raw)

    def read(self, job_id: str) -> Job | None:
        """The job, or None when it is gone or cannot be read. An unreadable record is
        logged once (with its key) and counted, so one bad record never stops a loop over
        many."""
        try:
            return self.get(job_id)
        except CorruptRecord as e:
            self._report_corrupt(job_id, e)
        except KeyError:
            pass
        return None

    @translated
    def _report_corrupt(self, job_id: str, error: CorruptRecord) -> None:
        pipe = self._redis.pipeline()
        pipe.sadd(keys.CORRUPT_SEEN, job_id)
        pipe.expire(keys.CORRUPT_SEEN, self._retention)
        if pipe.execute()[0]:
            logger.error("Skipping %s: %s", error.key, error.why)
            self._redis.incr(keys.METRICS_CORRUPT)

    @translated
    def update(self, job_id: str, *, due: float | None = None, **values: Any) -> bool:
        """Set fields (and refresh `updated_ts`) unless the job is final; False if it is.

        `due` is when the job must next show progress, or the sweeper re-drives it. The write
        that makes a job final also queues its notification, if it has one (the outbox).
        """
        names, args = self._move(job_id, due, values)
        return _whole(self._update(keys=names, args=args), job_id) == 1

    @translated
    def update_without_akool_id(
        self, job_id: str, *, due: float | None = None, **values: Any
    ) -> bool:
        """`update`, also refused (False) once the job has an Akool id: the one write for a
        job whose submit's answer was lost (wait, adopt, give up), so a callback naming the
        job and the end of its wait cannot both win."""
        names, args = self._move(job_id, due, values)
        return _whole(self._update_unnamed(keys=names, args=args), job_id) == 1

    def _move(
        self, job_id: str, due: float | None, values: dict[str, Any]
    ) -> tuple[list[str], list[Any]]:
        return moving(job_id, due, values, now=self._clock(), ttl=self._retention)

    def fail(self, job_id: str, error: str) -> bool:
        """Mark the job failed with a sentence saying why (unless it is already final)."""
        return self.update(job_id, status=JobStatus.FAILED, error=error)

    @translated
    def heartbeat(
        self,
        job_id: str,
        due: float,
        *,
        progress_bytes: int | None = None,
        total_bytes: int | None = None,
        archive_attempt: bool = False,
    ) -> bool:
        """A sign of life from a running step: push the job's due time to `due` (and record
        how far an archive got, or that an archive attempt starts). False, writing nothing,
        when the job ended meanwhile (cancelled: the step should stop); KeyError when the
        record is gone."""
        progress = "" if progress_bytes is None else str(progress_bytes)
        total = "" if total_bytes is None else str(total_bytes)
        attempt = "1" if archive_attempt else ""
        args = [job_id, repr(due), repr(self._clock()), progress, total, attempt]
        return _whole(self._heartbeat(keys=[self._key(job_id), keys.DUE], args=args), job_id) == 1

    @translated
    def reopen(
        self,
        job_id: str,
        status: JobStatus,
        *,
        due: float,
        poll_deadline: float | None = None,
        fresh_url: bool = False,
    ) -> bool:
        """Make a failed job unfinished again at `status`, its error, its notification and
        its last wait cleared and back in the due set (a new poll deadline when given; with
        `fresh_url`, its result URL forgotten so that polling asks Akool for a new one);
        False when it is not failed (any more)."""
        names = [self._key(job_id), *_MOVE_KEYS, keys.archive_claim(job_id)]
        deadline = "" if poll_deadline is None else repr(poll_deadline)
        args = [job_id, status, repr(due), repr(self._clock()), deadline, "1" if fresh_url else ""]
        return bool(self._reopen(keys=names, args=args))

    @translated
    def own_poll(self, job_id: str, task_id: str) -> bool:
        """True when `task_id` is (now) the one poll loop of this job; KeyError if gone."""
        return self.own_poll_record(job_id, task_id) is not None

    @translated
    def own_poll_record(self, job_id: str, task_id: str) -> Job | None:
        """The job, read in the round trip that makes `task_id` (now) its one poll loop;
        None when another loop owns it. KeyError (CorruptRecord) when gone or not whole."""
        answer = self._own_poll(keys=[self._key(job_id)], args=[task_id])
        if not isinstance(answer, list):
            _whole(answer, job_id)  # KeyError when not whole
            return None
        return decode(self._key(job_id), dict(zip(answer[::2], answer[1::2], strict=True)))

    @translated
    def record_poll(
        self, job_id: str, akool_status: int | None, *, due: float | None = None, **values: Any
    ) -> bool:
        """Count a poll, log it with Akool's `akool_status` (None: it got none, the status
        Akool gave last is logged), and write `values` and `due` (as `update` does), in one
        round trip; False when the job is final."""
        names, args = self._move(job_id, due, values)
        args[4:4] = [POLL_LOG_ENTRIES, "" if akool_status is None else akool_status]
        return _whole(self._record_poll(keys=names, args=args), job_id) == 1

    @translated
    def claim_submit(self, job_id: str, token: str) -> bool:
        """Take the one right to send this job's submit to Akool for the step run holding
        `token`; False when any run holds it (only the run that took it gives it back).

        With `claim_replicas`, the claim must also reach that many of the master's connected
        replicas (Redis WAIT) before it counts; otherwise it is given back and
        StoreUnavailable says try later.
        """
        answer = self._claim_submit(keys=[self._key(job_id)], args=[repr(self._clock()), token])
        if _whole(answer, job_id) != 1:
            return False
        wanted = min(self._claim_replicas, self._connected_replicas())
        if wanted and self._redis.wait(wanted, CLAIM_REPLICATION_TIMEOUT_MS) < wanted:
            self.release_submit(job_id, token)
            raise StoreUnavailable("the submit claim did not reach a Redis replica in time")
        return True

    def _connected_replicas(self) -> int:
        """Replicas the master has now: with none (after a failover, until one rejoins)
        there is nothing a claim could be lost to, and no WAIT could succeed."""
        if not self._claim_replicas:
            return 0
        return int(self._redis.info("replication").get("connected_slaves", 0))

    @translated
    def release_submit(self, job_id: str, token: str) -> bool:
        """Give the right back after a submit that certainly did not reach Akool, if the
        step run holding `token` took it; False (nothing changed) otherwise."""
        return bool(self._release_submit(keys=[self._key(job_id)], args=[token]))

    @translated
    def overdue(self, now: float, limit: int = 500) -> list[str]:
        """Ids of unfinished jobs whose due time has passed, most overdue first."""
        ids = self._redis.zrangebyscore(keys.DUE, "-inf", now, start=0, num=limit)
        return [i.decode() for i in ids]

    @translated
    def forget_due(self, job_id: str) -> None:
        """Drop a job from the due set and from any waiting set (its record expired, is
        unreadable, or it is final)."""
        self._forget(keys=[self._key(job_id), *_MOVE_KEYS], args=[job_id])

    @translated
    def expiring(self, before: float, limit: int = 1000) -> list[str]:
        """Ids of jobs not archived whose video Akool deletes before `before` (epoch s)."""
        ids = self._redis.zrangebyscore(keys.EXPIRY, "-inf", before, start=0, num=limit)
        return [i.decode() for i in ids]

    @translated
    def forget_expiry(self, job_id: str) -> None:
        """Drop a job from the expiry set (its record expired)."""
        self._redis.zrem(keys.EXPIRY, job_id)

    @translated
    def recent_ids(self, limit: int = 100) -> list[str]:
        """The newest job ids, newest first, dropping ids whose records have expired."""
        ids = [i.decode() for i in self._redis.zrevrange(keys.JOBS_INDEX, 0, limit - 1)]
        return [i for i in ids if self._redis.exists(self._key(i))]

    @translated
    def newest(self, count: int) -> list[str]:
        """The ids of the newest `count` jobs of the index, newest first (some may have
        expired: `read_many` says None for those)."""
        return [i.decode() for i in self._redis.zrevrange(keys.JOBS_INDEX, 0, count - 1)]

    @translated
    def statuses(self, job_ids: Sequence[str]) -> list[str | None]:
        """Each job's status, in one round trip; None for a record gone or not a job's."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self._key(job_id), "status")
        found = pipe.execute(False)
        return [s.decode() if isinstance(s, bytes) else None for s in found]

    @translated
    def read_many(self, job_ids: Sequence[str]) -> list[Job | None]:
        """The records of `job_ids`, in order, in one round trip; None for one gone or that
        cannot be read."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self._key(job_id))
        out: list[Job | None] = []
        for job_id, raw in zip(job_ids, pipe.execute(False), strict=True):
            whole = isinstance(raw, dict) and bool(raw)
            try:
                out.append(decode(self._key(job_id), raw) if whole else None)
            except CorruptRecord:
                out.append(None)
        return out

    @translated
    def try_lock(self, name: str, seconds: float) -> bool:
        """Take a fleet-wide lock for `seconds` (no release: it simply expires)."""
        return bool(self._redis.set(keys.lock(name), "1", nx=True, px=int(seconds * 1000)))

    @translated
    def remember_akool_id(self, job_id: str, akool_id: str) -> None:
        """Index our job id by Akool's id, so a callback (which names only Akool's) finds it."""
        self._redis.set(keys.akool_index(akool_id), job_id, ex=self._retention)

    @translated
    def job_for_akool_id(self, akool_id: str) -> str | None:
        """Our job id for Akool's id, or None when it is not ours (or its record expired)."""
        value = self._redis.get(keys.akool_index(akool_id))
        return value.decode() if isinstance(value, bytes) else value

    @translated
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
