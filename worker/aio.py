"""The asyncio API: worker/api.py's calls as coroutines, for application code that runs an
event loop. Each takes the same arguments, makes the same checks (worker/contract.py) and
gives the same results and errors as its twin, and none blocks the loop.

Reads, writes and waits go to Redis over redis.asyncio, on a client of the running loop's
own, built from the settings on first use in that loop with deps' connection options
(through Sentinel when REDIS_URL says so). A new job and a cancel run the store's very Lua
scripts, laid out and read by the store's own functions, so the two APIs cannot drift apart.

One thread: Celery publishes over kombu, whose sockets block. Publishing a new job's chain
(and, after a cancel, asking the notify task to tell the application) therefore runs in a
worker thread of the loop's default executor (`asyncio.to_thread`), at most PUBLISH_THREADS
at a time per loop, so a burst of submits neither fills the executor nor takes the GIL from
the loop for long. A failed publish fails the job there, on the sync store, as the sync API
does. Everything else runs on the loop and only awaits, and at most CALLS_AT_ONCE calls of
a loop work at once (waiting for an ending does not count), so a burst of calls is spread
over many turns of the loop. `close()` closes the running loop's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from worker import deps, messages
from worker.api import WAIT_RECHECK_SECONDS, publish
from worker.clock import wall_clock
from worker.config import Settings
from worker.contract import (
    adopted_job,
    adoption_request,
    check_idempotency_key,
    lipsync_request,
    queued_job,
)
from worker.status import QUEUED_STALL_SECONDS, JobStatus
from worker.store import (
    Job,
    created,
    creation,
    decode,
    is_job_id,
    keys,
    moving,
    new_job_id,
    scripts,
    store_error,
    with_token,
)
from worker.tasks import adoption_signature, announce_end, pipeline_signature, poll_task_id

logger = logging.getLogger(__name__)

__all__ = [
    "archive_akool_job",
    "cancel_job",
    "close",
    "find_job",
    "get_job",
    "submit_lipsync",
    "wait_for_job",
]

# Calls of one loop that work at once; the others queue (cheaply) for a turn. A burst of
# calls (a gather of hundreds) then runs a few of them at each turn of the loop, instead of
# every call's first step in one go, which would hold the loop for tens of milliseconds.
CALLS_AT_ONCE = 16
# Publishing threads a loop runs at once. A publish is mostly Python (about 0.6 ms of CPU,
# holding the GIL): two threads overlap a remote broker's round trips, and more would only
# take the GIL from the loop more often.
PUBLISH_THREADS = 2

T = TypeVar("T")


@dataclass
class _Redis:
    """One event loop's Redis client and the store's scripts on it."""

    settings: Settings
    client: aioredis.Redis
    create: Any
    update: Any

    @property
    def retention(self) -> int:
        return int(self.settings.job_retention_seconds)


@dataclass
class _Loop:
    """What this module keeps per event loop: each of these is bound to its loop."""

    turns: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CALLS_AT_ONCE))
    publishing: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(PUBLISH_THREADS)
    )
    redis: _Redis | None = None


# Dropped with their loop.
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop] = weakref.WeakKeyDictionary()


def _here() -> _Loop:
    """The running loop's state, made on first use."""
    loop = asyncio.get_running_loop()
    here = _loops.get(loop)
    if here is None:
        here = _loops[loop] = _Loop()
    return here


def _client_for(settings: Settings) -> aioredis.Redis:
    """A redis.asyncio client as deps.redis_client() builds the sync one."""
    sentinel = settings.redis_sentinel
    if sentinel is None:
        return aioredis.Redis.from_url(settings.redis_url, **deps.REDIS_CONNECTION_OPTIONS)
    sentinels = Sentinel(
        list(sentinel.addresses),
        sentinel_kwargs=deps.sentinel_connection_options(sentinel),
        **deps.REDIS_CONNECTION_OPTIONS,
    )
    return sentinels.master_for(
        sentinel.master, db=sentinel.db, username=sentinel.username, password=sentinel.password
    )


async def _redis() -> _Redis:
    """The running loop's client, built on first use (again after deps.forget()); it
    connects on its first command."""
    here, settings = _here(), deps.settings()
    old = here.redis
    if old is not None and old.settings is settings:
        return old
    client = _client_for(settings)
    new = here.redis = _Redis(
        settings=settings,
        client=client,
        create=client.register_script(scripts.CREATE_JOB),
        update=client.register_script(scripts.UPDATE_UNLESS_FINAL),
    )
    if old is not None:  # the settings changed: let the old client's connections go
        await _aclose(old.client)
    return new


async def close() -> None:
    """Close the running loop's Redis connections (call before the loop ends; the next call
    opens new ones)."""
    here = _here()
    old, here.redis = here.redis, None
    if old is not None:
        await _aclose(old.client)


async def _aclose(resource: Any) -> None:
    """Close a redis.asyncio client or pubsub (typed Any: types-redis 4.6 predates aclose,
    and close() is deprecated since redis-py 5)."""
    await resource.aclose()


@contextlib.contextmanager
def _store_errors(job_id: str = "?") -> Iterator[None]:
    """The one place redis-py's failures become ours, as the sync store's: an unreachable
    Redis is StoreUnavailable; a key of another type where a record belongs, CorruptRecord."""
    try:
        yield
    except redis.RedisError as e:
        ours = store_error(e, job_id)
        if ours is None:
            raise
        raise ours from e


@contextlib.asynccontextmanager
async def _turn() -> AsyncIterator[None]:
    """One of the CALLS_AT_ONCE turns of the running loop (see there)."""
    async with _here().turns:
        yield


async def _in_thread(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` in a worker thread, a few at a time: it uses kombu's blocking sockets."""
    async with _here().publishing:
        return await asyncio.to_thread(call, *args)


# --- creating a job ---------------------------------------------------------------------------


async def submit_lipsync(
    video_url: str,
    audio_url: str,
    webhook_url: str | None = None,
    *,
    on_complete: Mapping[str, Any] | None = None,
    notify_url: str | None = None,
    idempotency_key: str | None = None,
    metadata: Mapping[str, str] | None = None,
    archive_key: str | None = None,
) -> str:
    """Enqueue "lip-sync this video to this audio"; return the job's id. As
    `worker.api.submit_lipsync`: the same arguments, refusals (ValueError before any I/O,
    IdempotencyConflict, ArchiveKeyTaken) and idempotency."""
    async with _turn():
        request = lipsync_request(
            video_url,
            audio_url,
            webhook_url,
            on_complete=on_complete,
            notify_url=notify_url,
            idempotency_key=idempotency_key,
            metadata=metadata,
            archive_key=archive_key,
        )
        now = wall_clock()
        job = queued_job(request, new_job_id(), now=now)
        # A queued job may wait behind a long queue; the sweeper looks at it only after this.
        job_id = await _create(job, now + QUEUED_STALL_SECONDS)
    return await _enqueued(job, job_id, pipeline_signature)


async def archive_akool_job(
    akool_id: str,
    *,
    idempotency_key: str | None = None,
    metadata: Mapping[str, str] | None = None,
    archive_key: str | None = None,
    on_complete: Mapping[str, Any] | None = None,
    notify_url: str | None = None,
) -> str:
    """Archive a video job other code submitted to Akool; return our job's id. As
    `worker.api.archive_akool_job`: never submitted by us, polled and archived like any
    job; refusals as for `submit_lipsync`."""
    async with _turn():
        request = adoption_request(
            akool_id,
            idempotency_key=idempotency_key,
            metadata=metadata,
            archive_key=archive_key,
            on_complete=on_complete,
            notify_url=notify_url,
        )
        now, owner = wall_clock(), poll_task_id()
        timeout = deps.settings().poll_timeout_seconds
        job = adopted_job(request, new_job_id(), now=now, poll_timeout=timeout, poll_owner=owner)
        job_id = await _create(job, now + QUEUED_STALL_SECONDS)
    return await _enqueued(job, job_id, lambda new_id: adoption_signature(new_id, owner))


async def _create(job: Job, due: float) -> str:
    """Store the new job with the store's CREATE_JOB script, unless a claim it makes is
    held; the id of the job that answers the request (IdempotencyConflict, ArchiveKeyTaken)."""
    held = await _redis()
    names, args = creation(with_token(job), due=due, ttl=held.retention)
    with _store_errors(job.id):
        answer = await held.create(keys=names, args=args)
    return created(answer, job)


async def _enqueued(job: Job, job_id: str, chain_for: Callable[[str], Any]) -> str:
    """`job_id` once the new job's chain is published; nothing is published when an
    existing job answers the request. A failed publish fails the job and raises."""
    if job_id != job.id:
        logger.info("Job %s answers this request already; nothing new enqueued", job_id)
        return job_id
    # Stored, so published even if the caller is cancelled meanwhile: a stored job without
    # its chain would wait for the sweeper.
    await asyncio.shield(_in_thread(publish, job_id, chain_for))
    logger.info("Queued job %s", job_id)
    return job_id


# --- reading, cancelling and waiting ----------------------------------------------------------


async def _read(held: _Redis, job_id: str) -> Job:
    """The job's record; KeyError for an unknown (or expired) id, CorruptRecord (also a
    KeyError) when it is not whole."""
    with _store_errors(job_id):
        raw = await held.client.hgetall(keys.job(job_id)) if is_job_id(job_id) else {}
    if not raw:
        raise KeyError(job_id)
    return decode(keys.job(job_id), raw)


async def get_job(job_id: str) -> Job:
    """The job's current record; KeyError for an unknown (or expired) id."""
    async with _turn():
        return await _read(await _redis(), job_id)


async def find_job(idempotency_key: str) -> Job:
    """The job made under `idempotency_key`; KeyError when there is none (any more)."""
    async with _turn():
        key = check_idempotency_key(idempotency_key)
        held = await _redis()
        with _store_errors():
            value = await held.client.get(keys.idempotency(key))
        if value is None:
            raise KeyError(key)
        job = await _read(held, value.decode() if isinstance(value, bytes) else str(value))
    if job.idempotency_key != key:
        raise KeyError(key)
    return job


async def cancel_job(job_id: str) -> Job:
    """Cancel the job and return it; a job that ended already is returned unchanged. As
    `worker.api.cancel_job` (KeyError for an unknown job)."""
    async with _turn():
        held = await _redis()
        values = {"status": JobStatus.CANCELLED, "error": messages.CANCELLED}
        names, args = moving(job_id, None, values, now=wall_clock(), ttl=held.retention)
        with _store_errors(job_id):
            answer = await held.update(keys=names, args=args)
    if answer == -1:  # no whole record to write to
        raise KeyError(job_id)
    if int(answer) == 1:
        logger.warning("Job %s: cancelled by the application", job_id)
        await _in_thread(announce_end, job_id)
    async with _turn():
        return await _read(held, job_id)


async def wait_for_job(job_id: str, timeout: float) -> Job:
    """The job once it has ended (archived, failed or cancelled), waiting at most `timeout`
    seconds on its ending's notification in Redis (Celery's result backend channel).

    Raises KeyError for an unknown id, TimeoutError when the job has not ended in time, and
    ValueError for a timeout that is not a finite number >= 0.
    """
    if not math.isfinite(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    held = await _redis()
    pubsub = held.client.pubsub(ignore_subscribe_messages=True)
    try:
        # Subscribe before reading the record, so an ending between the two is not missed.
        async with _turn():
            with _store_errors(job_id):
                await pubsub.subscribe(keys.result(job_id))
        while True:
            async with _turn():
                job = await _read(held, job_id)
            remaining = deadline - loop.time()
            if job.is_final:
                return job
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g} s")
            # Read again at least this often, for an ending nothing published. The wait
            # takes no turn: it costs the loop nothing.
            with _store_errors(job_id):
                await pubsub.get_message(timeout=min(remaining, WAIT_RECHECK_SECONDS))
    finally:
        await _aclose(pubsub)
