"""The outbox: jobs whose end is still to be told to the application.

The write that makes a job final puts it here in the same Lua script (worker/store/scripts.py)
when it has an `on_complete` or a `notify_url`, scored by when the next delivery attempt is
due. A delivery task claims the entry (holding it for a lease), and removes it only once
every notification went out, or it gave up; the sweeper re-enqueues entries whose time has
come, such as one left by a worker that died. So a notification is sent once per ending of a
job, and a dead worker cannot lose it.
"""

from __future__ import annotations

from typing import Any

import redis

from worker.store import keys
from worker.store import scripts as job_scripts
from worker.store.records import encode, translated

# How long one delivery attempt holds a job's notification: well above the notify_url POST's
# timeout (NOTIFY_TIMEOUT_SECONDS). A worker that dies holding it is replaced by the sweeper
# once the lease has passed.
NOTICE_LEASE_SECONDS = 60.0


class Outbox:
    """Pending notifications in Redis, one entry per job."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._claim = client.register_script(job_scripts.CLAIM_NOTICE)
        self._finish = client.register_script(job_scripts.FINISH_NOTICE)
        self._set = client.register_script(job_scripts.SET_IF_WHOLE)

    @translated
    def pending(self, job_id: str) -> bool:
        """True while the job has a notification not yet delivered nor given up."""
        return self._redis.zscore(keys.OUTBOX, job_id) is not None

    @translated
    def due(self, now: float, limit: int = 500) -> list[str]:
        """Ids of jobs whose next delivery attempt is due (or whose holder died)."""
        ids = self._redis.zrangebyscore(keys.OUTBOX, "-inf", now, start=0, num=limit)
        return [i.decode() for i in ids]

    @translated
    def claim(
        self, job_id: str, task_id: str, *, now: float, lease_seconds: float = NOTICE_LEASE_SECONDS
    ) -> bool:
        """Take the job's notification for `task_id` until now + lease; False when nothing is
        pending or another live task holds it (an unreadable record drops the entry)."""
        names = [keys.job(job_id), keys.OUTBOX]
        args = [job_id, task_id, repr(now), repr(now + lease_seconds)]
        return self._claim(keys=names, args=args) == 1

    @translated
    def hold(self, job_id: str, until: float) -> None:
        """Keep the claim until `until` (the holder retries later); never re-adds an entry."""
        self._redis.zadd(keys.OUTBOX, {job_id: until}, xx=True)

    @translated
    def note(self, job_id: str, **values: Any) -> None:
        """Record the notification's progress on the job (final or not; TTL untouched)."""
        flat = [item for pair in encode(values).items() for item in pair]
        self._set(keys=[keys.job(job_id)], args=flat)

    @translated
    def finish(self, job_id: str, **values: Any) -> None:
        """Remove the job's entry, recording `values` (delivered, or why it gave up)."""
        flat = [item for pair in encode(values).items() for item in pair]
        self._finish(keys=[keys.job(job_id), keys.OUTBOX], args=[job_id, *flat])
