"""The job store and the sweeper against a private redis-server (Lua scripts included)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tests.integration.bad_records import plant_bad_records
from worker import messages, metrics
from worker.config.settings import load_settings
from worker.dev.stack import RedisServer
from worker.names import Step
from worker.status import JobStatus
from worker.store import keys
from worker.store.jobs import JobStore, new_job_id
from worker.store.records import poll_log_entries
from worker.sweeper import at_risk, sweep

pytestmark = pytest.mark.integration
SETTINGS = load_settings({"STALL_SECONDS": "30"})


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def store(client: redis.Redis) -> JobStore:
    return JobStore(client, retention_seconds=3600)


def new_job(store: JobStore, *, due: float) -> str:
    job_id = new_job_id()
    store.create(job_id, "https://v.example/v.mp4", "https://v.example/a.wav", due=due)
    return job_id


def test_a_new_job_is_due_and_a_final_one_is_not(store: JobStore, client: redis.Redis) -> None:
    job_id = new_job(store, due=123.0)
    assert client.zscore(keys.DUE, job_id) == 123.0

    store.update(job_id, due=456.0, status="processing")
    assert client.zscore(keys.DUE, job_id) == 456.0

    store.update(job_id, due=789.0, status="archived", archive_uri="s3://b/k")
    assert client.zscore(keys.DUE, job_id) is None


def test_a_final_job_is_never_changed_by_a_late_task(store: JobStore) -> None:
    job_id = new_job(store, due=1.0)
    store.fail(job_id, "Akool reported that the lip-sync failed")

    assert store.update(job_id, status="archived", archive_uri="s3://b/k") is False
    assert store.get(job_id).status == "failed"


def test_expiry_index_keeps_failed_jobs_whose_video_exists(
    store: JobStore, client: redis.Redis
) -> None:
    with_video, without_video = new_job(store, due=1.0), new_job(store, due=1.0)
    for job_id in (with_video, without_video):
        store.update(job_id, status="submitted", akool_id="a1", expires_ts=1000.0)
    store.update(with_video, status="archiving", result_url="https://cdn/x.mp4")

    store.fail(with_video, "S3 refused")
    store.fail(without_video, "status 4")

    assert client.zscore(keys.EXPIRY, with_video) == 1000.0
    assert client.zscore(keys.EXPIRY, without_video) is None


def test_heartbeat_moves_the_due_time_but_never_revives_a_finished_job(
    store: JobStore, client: redis.Redis
) -> None:
    job_id = new_job(store, due=1.0)
    store.heartbeat(job_id, 50.0)
    assert client.zscore(keys.DUE, job_id) == 50.0

    store.update(job_id, status="archived", archive_uri="s3://b/k")
    store.heartbeat(job_id, 99.0)
    assert client.zscore(keys.DUE, job_id) is None


def test_only_one_poll_loop_owns_a_job(store: JobStore) -> None:
    job_id = new_job(store, due=1.0)

    assert store.own_poll(job_id, "task-a") is True
    assert store.own_poll(job_id, "task-a") is True
    assert store.own_poll(job_id, "task-b") is False
    store.update(job_id, poll_owner="task-b")  # the sweeper names a new loop
    assert store.own_poll(job_id, "task-a") is False


def test_sweep_redrives_each_stalled_job_from_the_step_it_reached(store: JobStore) -> None:
    now = time.time()
    queued = new_job(store, due=now - 1)
    polling = new_job(store, due=now - 1)
    store.update(polling, due=now - 1, status="processing", akool_id="a1")
    archiving = new_job(store, due=now - 1)
    store.update(
        archiving, due=now - 1, status="archiving", akool_id="a2", result_url="https://c/x"
    )
    healthy = new_job(store, due=now + 60)
    redriven: list[tuple[str, str]] = []

    result = sweep(store, SETTINGS, lambda job_id, step: redriven.append((job_id, step)), now=now)

    assert sorted(redriven) == sorted(
        [(queued, Step.SUBMIT), (polling, Step.POLL), (archiving, Step.ARCHIVE)]
    )
    assert result.failed == []
    assert healthy not in {job_id for job_id, _ in redriven}


def test_sweep_fails_a_job_whose_submit_may_have_reached_akool(store: JobStore) -> None:
    now = time.time()
    job_id = new_job(store, due=now - 1)
    assert store.claim_submit(job_id, "run-1")
    redriven: list[tuple[str, str]] = []

    result = sweep(store, SETTINGS, lambda j, s: redriven.append((j, s)), now=now)

    assert result.failed == [job_id] and redriven == []
    job = store.get(job_id)
    assert job.status == "failed" and job.error == messages.SUBMIT_UNKNOWN


def test_a_redriven_job_is_not_redriven_again_until_its_backoff_passes(store: JobStore) -> None:
    now = time.time()
    job_id = new_job(store, due=now - 1)
    calls: list[str] = []

    sweep(store, SETTINGS, lambda j, s: calls.append(j), now=now)
    sweep(store, SETTINGS, lambda j, s: calls.append(j), now=now + 29)
    sweep(store, SETTINGS, lambda j, s: calls.append(j), now=now + 31)
    sweep(store, SETTINGS, lambda j, s: calls.append(j), now=now + 60)

    assert calls == [job_id, job_id]
    assert store.get(job_id).redrives == 2


def test_at_risk_lists_unarchived_jobs_whose_video_is_deleted_within_a_day(
    store: JobStore,
) -> None:
    now = time.time()
    soon, later, archived = (new_job(store, due=now + 60) for _ in range(3))
    store.update(soon, status="processing", akool_id="a", expires_ts=now + 3600)
    store.update(later, status="processing", akool_id="b", expires_ts=now + 3 * 86400)
    store.update(archived, status="archiving", akool_id="c", expires_ts=now + 3600)
    store.update(archived, status="archived", archive_uri="s3://b/k")

    assert [job.id for job in at_risk(store, now=now)] == [soon]


# --- records are whole or absent ----------------------------------------------------------


@pytest.mark.parametrize(
    "write",
    [
        lambda s, j: s.heartbeat(j, time.time() + 30),
        lambda s, j: s.record_poll(j, None),
        lambda s, j: s.own_poll(j, "task-1"),
        lambda s, j: s.claim_submit(j, "run-1"),
        lambda s, j: s.update(j, status="processing"),
    ],
    ids=["heartbeat", "record_poll", "own_poll", "claim_submit", "update"],
)
def test_a_write_to_a_vanished_record_recreates_nothing_and_says_key_error(
    store: JobStore, client: redis.Redis, write
) -> None:
    job_id = new_job(store, due=time.time() + 60)
    client.delete(keys.job(job_id))

    with pytest.raises(KeyError):
        write(store, job_id)

    assert not client.exists(keys.job(job_id))


def test_a_heartbeat_refreshes_nothing_but_the_due_time(
    store: JobStore, client: redis.Redis
) -> None:
    job_id = new_job(store, due=time.time() + 60)
    client.expire(keys.job(job_id), 100)
    store.heartbeat(job_id, 12345.0)
    assert 0 < client.ttl(keys.job(job_id)) <= 100
    assert client.zscore(keys.DUE, job_id) == 12345.0


@pytest.mark.parametrize("kind", ["partial", "garbage", "wrong-type"])
def test_a_record_that_is_not_whole_reads_as_a_key_error(
    store: JobStore, client: redis.Redis, kind: str
) -> None:
    ids = plant_bad_records(client)
    with pytest.raises(KeyError):
        store.get(ids[kind])
    assert store.read(ids[kind]) is None


def test_an_unreadable_record_is_logged_once_and_counted(
    store: JobStore, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    ids = plant_bad_records(client)
    for _ in range(3):
        for job_id in ids.values():
            store.read(job_id)
    logged = [r for r in caplog.records if "Skipping lipsync:job:" in r.getMessage()]
    assert len(logged) == 3
    assert int(client.get(keys.METRICS_CORRUPT) or 0) == 3


def test_sweep_guard_and_metrics_skip_bad_records_and_handle_the_good_ones(
    store: JobStore, client: redis.Redis
) -> None:
    plant_bad_records(client)
    good = new_job(store, due=1.0)
    redriven: list[tuple[str, Step]] = []

    sweep(store, SETTINGS, lambda j, s: redriven.append((j, s)), now=time.time())
    at_risk(store, now=time.time())
    scrape = metrics.render(client).decode()

    assert redriven == [(good, Step.SUBMIT)]
    assert client.zrange(keys.DUE, 0, -1) == [good.encode()]
    assert "lipsync_corrupt_records_total 3.0" in scrape


def test_a_claim_that_must_reach_a_replica_is_taken_at_once_when_the_master_has_none(
    client: redis.Redis,
) -> None:
    # After a failover the new master has no replica until one rejoins: nothing to lose the
    # claim to, and waiting for one would stop every submit.
    store = JobStore(client, retention_seconds=3600, claim_replicas=1)
    job_id = new_job(store, due=time.time() + 60)
    started = time.monotonic()
    assert store.claim_submit(job_id, "run-1")
    assert time.monotonic() - started < 1
    assert not store.claim_submit(job_id, "run-2")


# --- claims belong to their owner; waits are counted by kind -----------------------------------


def test_a_submit_claim_is_given_back_only_by_the_run_that_took_it(store: JobStore) -> None:
    job_id = new_job(store, due=time.time() + 60)
    assert store.claim_submit(job_id, "run-1")
    assert not store.claim_submit(job_id, "run-2")

    assert not store.release_submit(job_id, "run-2")
    assert store.get(job_id).submit_claim == "run-1"
    assert store.release_submit(job_id, "run-1")
    job = store.get(job_id)
    assert (job.submit_claimed_ts, job.submit_claim) == (None, None)
    assert store.claim_submit(job_id, "run-2")


def test_a_claim_from_before_tokens_is_given_back_by_no_run(
    store: JobStore, client: redis.Redis
) -> None:
    job_id = new_job(store, due=time.time() + 60)
    client.hset(keys.job(job_id), "submit_claimed_ts", repr(time.time()))
    assert not store.release_submit(job_id, "")
    assert store.get(job_id).submit_claimed_ts is not None


def test_a_waiting_job_is_in_the_set_of_its_family_only_until_it_ends(
    store: JobStore, client: redis.Redis
) -> None:
    job_id = new_job(store, due=time.time() + 60)
    since = time.time()
    store.update(job_id, wait_on="akool", wait_since_ts=since, wait_tries=1, wait_detail="503")
    assert client.zscore(keys.waiting("akool"), job_id) == pytest.approx(since)
    # Another wait on Akool (a 1008 streak) stays in its family, counted once.
    store.update(job_id, wait_on="akool_gone", wait_since_ts=since + 1, wait_tries=1)
    assert client.hget(keys.METRICS_WAITING, "akool") == b"1"

    store.record_poll(job_id, None, wait_on="file", wait_since_ts=since + 5, wait_tries=1)
    assert client.zscore(keys.waiting("akool"), job_id) is None
    assert client.zscore(keys.waiting("file"), job_id) == pytest.approx(since + 5)
    assert client.hgetall(keys.METRICS_WAITING) == {b"akool": b"0", b"file": b"1"}
    assert store.get(job_id).polls == 1

    store.fail(job_id, "the result video is gone")
    assert client.zscore(keys.waiting("file"), job_id) is None
    assert client.hget(keys.METRICS_WAITING, "file") == b"0"


def test_a_job_whose_record_is_gone_leaves_the_waiting_sets_with_its_count(
    store: JobStore, client: redis.Redis
) -> None:
    job_id = new_job(store, due=time.time() - 1)
    store.update(job_id, wait_on="storage", wait_since_ts=time.time(), wait_tries=2)
    client.delete(keys.job(job_id))

    sweep(store, SETTINGS, lambda j, s: None, now=time.time())

    assert client.zscore(keys.waiting("storage"), job_id) is None
    assert client.hget(keys.METRICS_WAITING, "storage") == b"0"
    assert client.zscore(keys.DUE, job_id) is None


def test_a_poll_that_got_no_answer_is_logged_with_the_status_akool_gave_last(
    store: JobStore,
) -> None:
    job_id = new_job(store, due=time.time() + 60)
    store.record_poll(job_id, 2)
    store.record_poll(job_id, None)
    entries = [status for _, status in poll_log_entries(store.get(job_id).poll_log)]
    assert entries == ["2", "2"]


def test_a_retry_asking_for_a_fresh_url_forgets_the_old_one_and_the_archive_start(
    store: JobStore, client: redis.Redis
) -> None:
    job_id = new_job(store, due=time.time() + 60)
    store.update(job_id, akool_id="a1", result_url="https://x/y.mp4", completed_ts=time.time())
    assert store.claim_archive(job_id)
    store.update(job_id, wait_on="file", wait_since_ts=time.time(), wait_tries=3)
    store.fail(job_id, "the result video is gone")

    assert store.reopen(job_id, JobStatus.PROCESSING, due=time.time() + 30, fresh_url=True)

    job = store.get(job_id)
    assert (job.status, job.result_url, job.wait_on, job.error) == ("processing", None, None, None)
    assert store.claim_archive(job_id)  # the poll that finds the fresh URL may start it
