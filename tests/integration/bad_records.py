"""Job records that are not whole, planted where real ones live, for the tests of what reads
them (the store, the sweeper, the expiry guard, metrics, the CLI)."""

from __future__ import annotations

import time

import redis

from worker.store import keys
from worker.store.jobs import new_job_id


def plant_bad_records(client: redis.Redis) -> dict[str, str]:
    """A partial hash, a hash of garbage and a key of another type, each where a job record
    would be and listed in the due, expiry and index sets; their ids by kind."""
    ids = {"partial": new_job_id(), "garbage": new_job_id(), "wrong-type": new_job_id()}
    client.hset(keys.job(ids["partial"]), mapping={"polls": "3"})
    client.hset(
        keys.job(ids["garbage"]),
        mapping={
            "id": ids["garbage"],
            "status": "banana",
            "video_url": "x",
            "audio_url": "y",
            "created_ts": "yesterday",
        },
    )
    client.set(keys.job(ids["wrong-type"]), "not a hash")
    for job_id in ids.values():
        client.zadd(keys.DUE, {job_id: 1.0})
        client.zadd(keys.EXPIRY, {job_id: time.time() + 60})
        client.zadd(keys.JOBS_INDEX, {job_id: time.time()})
    return ids
