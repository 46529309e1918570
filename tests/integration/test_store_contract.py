"""The job store's side of the caller's contract against a private redis-server: the one
script that creates a job unless a claim it makes is held, the claims living as long as the
record, cancel, and each ending stored where Celery's result backend reads it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from worker import contract
from worker.celery_app import app
from worker.dev.stack import RedisServer
from worker.errors import ArchiveKeyTaken, IdempotencyConflict, JobCancelled, JobFailed
from worker.status import JobStatus
from worker.store import keys
from worker.store.jobs import JobStore, new_job_id

pytestmark = pytest.mark.integration
RETENTION = 3600
VIDEO = "https://v.example/v.mp4"
AUDIO = "https://v.example/a.wav"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def store(client: redis.Redis) -> JobStore:
    return JobStore(client, retention_seconds=RETENTION)


def insert(store: JobStore, now: float = 1000.0, **arguments: object) -> str:
    """A lip-sync job made as submit_lipsync makes it; the id that answers the request."""
    request = contract.lipsync_request(VIDEO, AUDIO, **arguments)  # type: ignore[arg-type]
    return store.insert(contract.queued_job(request, new_job_id(), now=now), due=now + 300)


def adopt(store: JobStore, akool_id: str, **arguments: object) -> str:
    request = contract.adoption_request(akool_id, **arguments)  # type: ignore[arg-type]
    job = contract.adopted_job(request, new_job_id(), now=1000.0, poll_timeout=60, poll_owner="t")
    return store.insert(job, due=1300.0)


def job_records(client: redis.Redis) -> int:
    return len(list(client.scan_iter(keys.JOB_PREFIX + "*")))


def meta(client: redis.Redis, job_id: str) -> dict[str, object]:
    raw = client.get(keys.result(job_id))
    assert raw is not None, "no result stored"
    return dict(json.loads(raw))


# --- idempotency keys -------------------------------------------------------------------------


def test_the_same_request_under_one_key_returns_the_first_job_and_stores_nothing(
    store: JobStore, client: redis.Redis
) -> None:
    first = insert(store, idempotency_key="order-1", metadata={"b": "2", "a": "1"})
    again = insert(store, idempotency_key="order-1", metadata={"a": "1", "b": "2"})
    assert again == first
    assert job_records(client) == 1
    assert client.zcard(keys.JOBS_INDEX) == 1
    assert client.hget(keys.METRICS_JOBS_BY_STATUS, "queued") == b"1"
    assert store.find("order-1").id == first


def test_a_different_request_under_a_used_key_is_a_conflict_naming_the_job(
    store: JobStore, client: redis.Redis
) -> None:
    first = insert(store, idempotency_key="order-2")
    with pytest.raises(IdempotencyConflict, match=first) as caught:
        insert(store, idempotency_key="order-2", metadata={"x": "y"})
    assert isinstance(caught.value, ValueError)
    assert (caught.value.key, caught.value.job_id) == ("order-2", first)
    assert job_records(client) == 1


def test_a_failed_job_is_returned_for_its_key_not_run_again(store: JobStore) -> None:
    first = insert(store, idempotency_key="order-3")
    store.fail(first, "it failed")
    assert insert(store, idempotency_key="order-3") == first


def test_a_key_whose_job_record_is_gone_makes_a_new_job(
    store: JobStore, client: redis.Redis
) -> None:
    first = insert(store, idempotency_key="order-4")
    client.delete(keys.job(first))
    second = insert(store, idempotency_key="order-4")
    assert second != first
    assert store.find("order-4").id == second


def test_an_unknown_key_is_a_key_error(store: JobStore) -> None:
    with pytest.raises(KeyError):
        store.find("never-used")


def test_the_claims_live_as_long_as_the_record_is_refreshed(
    store: JobStore, client: redis.Redis
) -> None:
    job_id = insert(store, idempotency_key="order-5", archive_key="a/b.mp4")
    for name in (keys.idempotency("order-5"), keys.archive_key("a/b.mp4")):
        client.expire(name, 5)
    store.update(job_id, status=JobStatus.SUBMITTED)
    for name in (keys.idempotency("order-5"), keys.archive_key("a/b.mp4")):
        assert client.ttl(name) > RETENTION - 60
    assert client.ttl(keys.job(job_id)) > RETENTION - 60


def test_many_threads_with_one_key_make_one_job(store: JobStore, client: redis.Redis) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(16)

    def submit() -> None:
        barrier.wait()
        ids.append(insert(store, idempotency_key="order-6"))

    threads = [threading.Thread(target=submit) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(ids) == 16 and len(set(ids)) == 1
    assert job_records(client) == 1


# --- archive keys and adopted ids --------------------------------------------------------------


def test_an_archive_key_held_by_a_live_job_is_refused(store: JobStore, client: redis.Redis) -> None:
    first = insert(store, archive_key="videos/one.mp4")
    with pytest.raises(ArchiveKeyTaken, match=first):
        insert(store, archive_key="videos/one.mp4")
    assert job_records(client) == 1
    client.delete(keys.job(first))
    assert insert(store, archive_key="videos/one.mp4") != first


def test_the_same_idempotent_request_with_an_archive_key_returns_its_job(store: JobStore) -> None:
    first = insert(store, idempotency_key="order-7", archive_key="videos/two.mp4")
    assert insert(store, idempotency_key="order-7", archive_key="videos/two.mp4") == first


def test_adopting_an_akool_id_twice_returns_the_first_job_until_it_fails(
    store: JobStore, client: redis.Redis
) -> None:
    first = adopt(store, "64dd838cf0b6684651e90217")
    assert adopt(store, "64dd838cf0b6684651e90217") == first
    job = store.get(first)
    assert (job.status, job.akool_id, job.video_url, job.poll_owner) == (
        JobStatus.SUBMITTED,
        "64dd838cf0b6684651e90217",
        "",
        "t",
    )
    assert job.adopted_ts is not None and job.webhook_token is None
    assert store.job_for_akool_id("64dd838cf0b6684651e90217") == first
    store.fail(first, "gone")
    second = adopt(store, "64dd838cf0b6684651e90217")
    assert second != first
    assert store.job_for_akool_id("64dd838cf0b6684651e90217") == second
    assert client.hget(keys.METRICS_JOBS_BY_STATUS, "submitted") == b"1"


# --- cancel ----------------------------------------------------------------------------------


def test_a_cancelled_job_is_final_counted_and_out_of_every_set(
    store: JobStore, client: redis.Redis
) -> None:
    job_id = insert(store, notify_url="https://hooks.example/done")
    store.update(job_id, due=5000.0, status=JobStatus.PROCESSING, expires_ts=9000.0)
    assert store.cancel(job_id, "cancelled by the application")
    job = store.get(job_id)
    assert job.status == JobStatus.CANCELLED and job.is_final
    assert client.zscore(keys.DUE, job_id) is None
    assert client.zscore(keys.EXPIRY, job_id) is None
    assert client.zscore(keys.OUTBOX, job_id) is not None  # told once, like any ending
    counts = client.hgetall(keys.METRICS_JOBS_BY_STATUS)
    assert (counts[b"cancelled"], counts[b"processing"]) == (b"1", b"0")
    assert not store.cancel(job_id, "again")
    assert not store.update(job_id, status=JobStatus.ARCHIVED)


def test_a_cancelled_job_refuses_heartbeats_and_submit_claims(store: JobStore) -> None:
    job_id = insert(store)
    assert store.heartbeat(job_id, 2000.0)
    store.cancel(job_id, "cancelled")
    assert not store.heartbeat(job_id, 2000.0)
    assert not store.claim_submit(job_id, "token")


# --- endings in the result backend -------------------------------------------------------------


@pytest.mark.parametrize(
    "epoch",
    [0.0, 951_782_400.0, 1_709_251_199.0, 1_798_761_599.5, 4_102_444_800.0, 1_780_000_000.0],
)
def test_an_ending_is_dated_as_python_dates_it(client: redis.Redis, epoch: float) -> None:
    store = JobStore(client, retention_seconds=RETENTION, clock=lambda: epoch)
    job_id = insert(store)
    store.update(job_id, status=JobStatus.ARCHIVED, archive_uri="s3://b/k")
    expected = datetime.fromtimestamp(int(epoch), tz=UTC).isoformat()
    assert meta(client, job_id)["date_done"] == expected


def test_each_ending_is_stored_as_celerys_backend_stores_a_result(
    store: JobStore, client: redis.Redis
) -> None:
    archived, failed, cancelled = insert(store), insert(store), insert(store)
    store.update(archived, status=JobStatus.ARCHIVED, archive_uri="s3://b/k.mp4")
    store.fail(failed, "Akool reported that the lip-sync failed")
    store.cancel(cancelled, "cancelled by the application")
    backend = app.backend
    got = backend.decode_result(client.get(keys.result(archived)))
    assert got["status"] == "SUCCESS"
    assert got["result"] == {
        "job_id": archived,
        "status": "archived",
        "archive_uri": "s3://b/k.mp4",
    }
    for job_id, kind, error in (
        (failed, JobFailed, "Akool reported that the lip-sync failed"),
        (cancelled, JobCancelled, "cancelled by the application"),
    ):
        stored = backend.decode_result(client.get(keys.result(job_id)))
        assert stored["status"] == "FAILURE"
        exception = backend.exception_to_python(stored["result"])
        assert type(exception) is kind and str(exception) == error
        assert 0 < client.ttl(keys.result(job_id)) <= RETENTION


def test_a_reopened_job_forgets_its_stored_ending(store: JobStore, client: redis.Redis) -> None:
    job_id = insert(store)
    store.fail(job_id, "it failed")
    assert client.exists(keys.result(job_id))
    assert store.reopen(job_id, JobStatus.QUEUED, due=2000.0)
    assert not client.exists(keys.result(job_id))


def test_an_ending_is_published_to_whoever_waits_on_it(store: JobStore) -> None:
    job_id = insert(store)
    with store.ending(job_id) as ending:
        store.cancel(job_id, "cancelled")
        # The first read may be the subscription's own confirmation (not an ending).
        heard = any(ending.wait(1.0) for _ in range(5))
    assert heard


def test_a_job_record_with_metadata_reads_back_equal(store: JobStore) -> None:
    job_id = insert(store, metadata={"customer": "Zoë", "order": "17"}, archive_key="x/y.mp4")
    job = store.get(job_id)
    assert job.metadata == {"customer": "Zoë", "order": "17"}
    assert job.archive_key == "x/y.mp4"
    assert job.to_dict()["metadata"] == {"customer": "Zoë", "order": "17"}
    assert "request_digest" not in job.to_dict()


def test_a_job_of_another_kind_reads_back_with_its_kind_and_akool_body(store: JobStore) -> None:
    from worker.video_kinds import character_swap_request

    request = character_swap_request(
        "https://v.example/face.png", VIDEO, duration=12, idempotency_key="swap-1"
    )
    job_id = store.insert(contract.queued_job(request, new_job_id(), now=1000.0), due=1300.0)
    job = store.get(job_id)
    assert job.kind == "character_swap"
    assert job.body == {
        "image": "https://v.example/face.png",
        "video": VIDEO,
        "duration": 12,
        "mode": "animate",
    }
    assert (job.video_url, job.audio_url) == ("", "")


def test_a_record_without_a_kind_is_a_lipsync_job(store: JobStore, client: redis.Redis) -> None:
    job_id = insert(store)
    client.hdel(keys.job(job_id), "kind")  # as every record of an earlier release
    assert store.get(job_id).kind == "lipsync"


def test_jobs_are_counted_by_kind_and_status_as_they_move_and_recounted_once_when_missing(
    store: JobStore, client: redis.Redis
) -> None:
    from worker.metrics import FleetCollector
    from worker.video_kinds import character_swap_request

    request = character_swap_request("https://v.example/face.png", VIDEO)
    swap = store.insert(contract.queued_job(request, new_job_id(), now=1000.0), due=1300.0)
    lipsync = insert(store)
    store.update(swap, status=JobStatus.PROCESSING)
    store.cancel(lipsync, "cancelled")
    counts = {k.decode(): int(v) for k, v in client.hgetall(keys.METRICS_JOBS_BY_KIND).items()}
    assert counts == {
        "character_swap:queued": 0,
        "character_swap:processing": 1,
        "lipsync:queued": 0,
        "lipsync:cancelled": 1,
    }
    client.delete(keys.METRICS_JOBS_BY_KIND)  # a Redis from before the counts by kind
    snapshot = FleetCollector(client).read(2000.0)
    assert snapshot.jobs_by_kind == {
        ("character_swap", "processing"): 1,
        ("lipsync", "cancelled"): 1,
    }
