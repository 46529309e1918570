"""Waiting for a job to end without reading its record over and over: the script that ends
a job publishes its result on Celery's result backend channel for the job id, and `Ending`
listens there.
"""

from __future__ import annotations

import redis

from worker.store import keys
from worker.store.records import translated


class Ending:
    """A subscription to one job's ending: the script that ends a job publishes its result
    (Celery's result backend's channel for the job id), and `wait` returns when it does.
    Subscribe before reading the record, so an ending between the two is not missed."""

    def __init__(self, client: redis.Redis, job_id: str) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._channel = keys.result(job_id)

    @translated
    def __enter__(self) -> Ending:
        self._pubsub.subscribe(self._channel)
        return self

    def __exit__(self, *exc: object) -> None:
        self._pubsub.close()

    @translated
    def wait(self, seconds: float) -> bool:
        """Wait at most `seconds` for the ending; True when it was published."""
        return self._pubsub.get_message(timeout=max(seconds, 0.0)) is not None
