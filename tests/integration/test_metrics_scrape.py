"""/metrics against a private redis-server: a scrape runs the same bounded number of Redis
commands however many jobs there are, and the job counts the Lua scripts keep match the
records as jobs move, are re-opened, or are written final twice. How long a scrape of 10,000
jobs takes is measured by the bench (bench part `scrape`), not asserted here."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from tests.integration.test_observability import sample
from worker import metrics
from worker.dev.stack import RedisServer
from worker.names import AKOOL_QUEUE, ARCHIVE_QUEUE
from worker.status import JobStatus
from worker.store import keys
from worker.store.jobs import JobStore, new_job_id

pytestmark = pytest.mark.integration

# Two fleets an order of magnitude apart: the scrape's cost in commands must not change.
SMALL_FLEET = 80
LARGE_FLEET = 800
MAX_SCRAPE_COMMANDS = 20
RETENTION_SECONDS = 40 * 86400
VIDEO = "https://videos.example.com/in.mp4"
AUDIO = "https://videos.example.com/voice.wav"
RESULT = "https://akool.example.com/out.mp4"
DAY = 86400.0
_databases = iter(range(1, 16))


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A database of its own on the module's private redis-server."""
    db = redis.Redis(port=redis_server.port, db=next(_databases))
    db.flushdb()
    yield db
    db.close()


@pytest.fixture
def store(client: redis.Redis) -> JobStore:
    return JobStore(client, retention_seconds=RETENTION_SECONDS)


def commands_run(client: redis.Redis) -> int:
    """Commands the server ran so far, those run inside scripts included (INFO left out)."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info")


def scrape(client: redis.Redis) -> str:
    return metrics.render(client).decode()


def counts(client: redis.Redis) -> dict[str, float]:
    text = scrape(client)
    return {s.value: sample(text, "lipsync_jobs", status=s.value) for s in JobStatus}


def truth(store: JobStore, ids: list[str]) -> dict[str, float]:
    """The jobs by status, read from every record."""
    found = Counter(store.get(job_id).status.value for job_id in ids)
    return {s.value: float(found[s.value]) for s in JobStatus}


def create(store: JobStore) -> str:
    job_id = new_job_id()
    store.create(job_id, VIDEO, AUDIO, due=time.time() + 60)
    return job_id


def submitted(store: JobStore, job_id: str, *, expires_in: float = 7 * DAY) -> None:
    now = time.time()
    assert store.update(
        job_id, status=JobStatus.SUBMITTED, akool_id="a" + job_id, expires_ts=now + expires_in
    )


def archiving(store: JobStore, job_id: str, *, completed: float) -> None:
    assert store.update(
        job_id, status=JobStatus.ARCHIVING, result_url=RESULT, completed_ts=completed
    )


def seed(client: redis.Redis, store: JobStore, count: int) -> None:
    """`count` jobs: half queued, a quarter processing, an eighth archived, an eighth failed
    with their videos unsaved."""
    for i in range(count):
        job_id = create(store)
        if i % 2 == 0:
            continue
        submitted(store, job_id)
        if i % 4 == 1:
            assert store.update(job_id, status=JobStatus.PROCESSING)
        elif i % 8 == 3:
            archiving(store, job_id, completed=time.time())
            assert store.update(job_id, status=JobStatus.ARCHIVED)
        else:
            archiving(store, job_id, completed=time.time())
            assert store.fail(job_id, "the archive failed")


def commands_of_one_scrape(client: redis.Redis) -> tuple[int, str]:
    """Redis commands one scrape runs (after the first, which counts old jobs once)."""
    scrape(client)
    before = commands_run(client)
    text = scrape(client)
    return commands_run(client) - before, text


def test_a_scrape_runs_the_same_few_redis_commands_however_many_jobs_there_are(
    client: redis.Redis, store: JobStore
) -> None:
    seed(client, store, SMALL_FLEET)
    small, _ = commands_of_one_scrape(client)
    seed(client, store, LARGE_FLEET - SMALL_FLEET)
    large, text = commands_of_one_scrape(client)

    assert small == large < MAX_SCRAPE_COMMANDS
    assert sample(text, "lipsync_jobs", status="queued") == LARGE_FLEET / 2
    assert sample(text, "lipsync_jobs", status="processing") == LARGE_FLEET / 4
    assert sample(text, "lipsync_jobs", status="archived") == LARGE_FLEET / 8
    assert sample(text, "lipsync_jobs", status="failed") == LARGE_FLEET / 8
    assert sample(text, "lipsync_polls_waiting") == LARGE_FLEET / 4
    assert sample(text, "lipsync_oldest_unarchived_finished_video_age_seconds") < 60


def test_job_counts_stay_exact_through_a_life_a_reopen_and_a_duplicate_final_write(
    client: redis.Redis, store: JobStore
) -> None:
    archived, failed, waiting = create(store), create(store), create(store)
    ids = [archived, failed, waiting]
    steps = [
        lambda: submitted(store, archived),
        lambda: store.update(archived, status=JobStatus.PROCESSING),
        lambda: archiving(store, archived, completed=time.time()),
        lambda: store.update(archived, status=JobStatus.ARCHIVED),
        lambda: submitted(store, failed),
        lambda: store.fail(failed, "Akool said status 4"),
        lambda: store.reopen(failed, JobStatus.PROCESSING, due=time.time() + 60),
        lambda: store.fail(failed, "Akool said status 4 again"),
    ]

    assert counts(client) == truth(store, ids)
    for step in steps:
        step()
        assert counts(client) == truth(store, ids)
    # Duplicated final writes (a redelivered task, a late callback) change nothing.
    assert not store.update(archived, status=JobStatus.ARCHIVED)
    assert not store.fail(failed, "a late duplicate")
    assert not store.reopen(archived, JobStatus.ARCHIVING, due=time.time())
    assert counts(client) == truth(store, ids)
    assert counts(client)["failed"] == counts(client)["archived"] == 1


def test_jobs_written_before_counts_were_kept_are_counted_once_by_the_first_scrape(
    client: redis.Redis, store: JobStore
) -> None:
    ids = [create(store) for _ in range(4)]
    submitted(store, ids[0])
    archiving(store, ids[1], completed=time.time() - 100)
    client.delete(keys.METRICS_JOBS_BY_STATUS, keys.UNARCHIVED)  # as before the upgrade
    assert store.update(ids[0], status=JobStatus.PROCESSING)  # moves counted from nothing

    text = scrape(client)

    assert counts(client) == truth(store, ids)
    assert 95 < sample(text, "lipsync_oldest_unarchived_finished_video_age_seconds") < 160
    assert store.update(ids[2], status=JobStatus.SUBMITTED)
    assert counts(client) == truth(store, ids)


def test_the_oldest_unarchived_video_age_follows_completion_archive_and_expiry(
    client: redis.Redis, store: JobStore
) -> None:
    def age() -> float:
        return sample(scrape(client), "lipsync_oldest_unarchived_finished_video_age_seconds")

    old, recent, unsaved = create(store), create(store), create(store)
    for job_id in (old, recent, unsaved):
        submitted(store, job_id)
    assert age() == 0
    archiving(store, recent, completed=time.time() - 50)
    archiving(store, old, completed=time.time() - 500)
    assert 495 < age() < 560
    assert store.fail(old, "the archive failed")  # its video at Akool is still worth saving
    assert 495 < age() < 560
    client.delete(keys.job(old))  # its record expired
    assert 45 < age() < 110
    assert client.zrange(keys.UNARCHIVED, 0, -1) == [recent.encode()]
    assert store.update(recent, status=JobStatus.ARCHIVED)
    assert store.fail(unsaved, "Akool said status 4")  # no video was ever made
    assert age() == 0


def test_at_risk_counts_unarchived_jobs_whose_video_goes_within_a_day(
    client: redis.Redis, store: JobStore
) -> None:
    soon, later, saved = create(store), create(store), create(store)
    submitted(store, soon, expires_in=3600)
    submitted(store, later, expires_in=3 * DAY)
    submitted(store, saved, expires_in=3600)
    archiving(store, saved, completed=time.time())
    assert store.update(saved, status=JobStatus.ARCHIVED)

    assert sample(scrape(client), "lipsync_jobs_at_risk") == 1


def test_queue_lengths_and_polls_waiting_are_read_from_redis(
    client: redis.Redis, store: JobStore
) -> None:
    client.lpush(AKOOL_QUEUE, "m1", "m2", "m3")
    client.lpush(ARCHIVE_QUEUE, "m4")
    polling = [create(store) for _ in range(3)]
    for job_id in polling:
        submitted(store, job_id)
    assert store.update(polling[0], status=JobStatus.PROCESSING)
    create(store)  # queued: its submit waits, not a poll

    text = scrape(client)

    assert sample(text, "lipsync_queue_length", queue=AKOOL_QUEUE) == 3
    assert sample(text, "lipsync_queue_length", queue=ARCHIVE_QUEUE) == 1
    assert sample(text, "lipsync_polls_waiting") == 3
