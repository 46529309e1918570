"""The caller's contract, as application code meets it: idempotency keys under concurrent
callers, metadata that travels with a job, archive keys, adopting a job other code
submitted to Akool, and how a job's ending reads in Celery's result backend and in
wait_for_job. Every call is made from a process of its own (tests/integration/contract_app.py),
next to the Procfile's workers. Cancelling is tests/integration/test_contract_cancel.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.integration.conftest import AUDIO_URL, Deployment, video_url
from tests.integration.contract_app import (
    RACE,
    RESULTS,
    akool_polls,
    answers_of,
    api,
    call,
    cancel,
    last_line,
    object_key,
    objects_under,
    start_api,
    start_python,
    stored_state,
    submit,
    value,
)
from tests.postsink import PostSink, post_sink
from worker.dev.simulator.handler import SUBMIT_PATH
from worker.dev.stack import BUCKET, SIM_API_KEY, wait_until
from worker.names import AKOOL_QUEUE
from worker.store import keys

pytestmark = pytest.mark.integration

RACERS = 20


@pytest.fixture
def sink() -> Iterator[tuple[str, type[PostSink]]]:
    """An application's notify_url on 127.0.0.1 (the stack's NOTIFY_ALLOWED_HOSTS)."""
    with post_sink("/lipsync-done") as endpoint:
        yield endpoint


def unique(word: str) -> str:
    """A name no other test uses (the deployment's Redis and bucket are shared)."""
    return f"{word}-{uuid.uuid4().hex[:12]}"


# --- idempotency keys ----------------------------------------------------------------------


def test_twenty_processes_submitting_under_one_key_at_once_get_one_job_and_one_akool_submit(
    deployment: Deployment,
) -> None:
    video, barrier = video_url(polls=1), unique("test:barrier")
    arguments = {"video_url": video, "audio_url": AUDIO_URL, "idempotency_key": unique("race")}
    before = stored_state(deployment)
    racers = [
        start_python(deployment, RACE, barrier, str(RACERS), json.dumps(arguments))
        for _ in range(RACERS)
    ]
    try:
        ids = [last_line(racer, timeout=120) for racer in racers]
    finally:
        for racer in racers:  # after a failure, the others still running
            if racer.poll() is None:
                racer.kill()
                racer.communicate()
        deployment.redis.delete(barrier)

    assert len(ids) == RACERS and len(set(ids)) == 1, ids
    job_id = ids[0]
    records, index, _ = stored_state(deployment)
    assert records - before[0] == {keys.job(job_id)}
    assert set(index) - set(before[1]) == {job_id.encode()}
    job = deployment.wait(job_id)
    assert job.status == "archived", job.error
    assert deployment.submits_for(video) == 1
    assert deployment.akool_jobs_for(video) == 1


def test_a_different_request_under_a_used_key_is_refused_naming_its_job_and_stores_nothing(
    deploy,
) -> None:
    deployment: Deployment = deploy(workers=False)  # the queue keeps what is enqueued
    video, key = video_url(polls=1), unique("order")
    first = submit(deployment, video, AUDIO_URL, idempotency_key=key)
    before = stored_state(deployment, AKOOL_QUEUE)
    assert before[2] == (1,)

    *refused, same = api(
        deployment,
        call("submit_lipsync", video_url(polls=1), AUDIO_URL, idempotency_key=key),
        call("submit_lipsync", video, AUDIO_URL, idempotency_key=key, metadata={"a": "b"}),
        call("submit_lipsync", video, AUDIO_URL, idempotency_key=key, archive_key="x/y.mp4"),
        call("archive_akool_job", "65f1c0ffee", idempotency_key=key),
        call("submit_lipsync", video, AUDIO_URL, idempotency_key=key),
    )

    for answer in refused:
        assert answer["raised"] == "IdempotencyConflict", answer
        assert (answer["key"], answer["job_id"]) == (key, first)
        assert key in answer["message"] and first in answer["message"]
    assert value(same) == first
    assert stored_state(deployment, AKOOL_QUEUE) == before
    assert not deployment.redis.exists(keys.archive_key("x/y.mp4"), keys.akool_index("65f1c0ffee"))


def test_a_failed_jobs_key_returns_the_failed_job_for_the_same_request_and_refuses_another(
    deployment: Deployment,
) -> None:
    video, key = video_url(final=4), unique("order")
    job_id = submit(deployment, video, AUDIO_URL, idempotency_key=key)
    failed = deployment.wait(job_id)
    assert failed.status == "failed"
    before = stored_state(deployment)

    same, found, other = api(
        deployment,
        call("submit_lipsync", video, AUDIO_URL, idempotency_key=key),
        call("find_job", key),
        call("submit_lipsync", video_url(polls=1), AUDIO_URL, idempotency_key=key),
    )

    assert value(same) == job_id
    assert value(found)["id"] == job_id and value(found)["status"] == "failed"
    assert other["raised"] == "IdempotencyConflict" and other["job_id"] == job_id
    assert stored_state(deployment) == before
    assert deployment.store.get(job_id).status == "failed"
    assert deployment.submits_for(video) == 1


def test_a_key_and_an_archive_key_are_free_again_once_the_record_holding_them_is_gone(
    deploy,
) -> None:
    deployment: Deployment = deploy(workers=False)
    key, name = unique("order"), f"{unique('contract')}/one.mp4"
    first = submit(deployment, video_url(), AUDIO_URL, idempotency_key=key, archive_key=name)
    deployment.redis.delete(keys.job(first))  # as once JOB_RETENTION_DAYS have passed

    second = submit(deployment, video_url(), AUDIO_URL, idempotency_key=key, archive_key=name)

    assert second != first
    assert value(api(deployment, call("find_job", key))[0])["id"] == second


# --- metadata --------------------------------------------------------------------------------


def head_metadata(deployment: Deployment, archive_uri: str | None) -> dict[str, str]:
    """The user metadata of the object at `archive_uri`."""
    assert archive_uri is not None
    key = archive_uri.removeprefix(f"s3://{BUCKET}/")
    head = deployment.stack.s3_client().head_object(Bucket=BUCKET, Key=key)
    return dict(head["Metadata"])


def posted(app: type[PostSink]) -> list[dict[str, Any]]:
    """The records POSTed to the sink, once there is one."""
    wait_until(lambda: len(app.bodies) >= 1, 30, "the record posted")
    return list(app.bodies)


def test_metadata_reaches_get_job_the_notify_post_and_the_s3_object(
    deployment: Deployment, sink: tuple[str, type[PostSink]]
) -> None:
    url, app = sink
    metadata = {"customer": "acme", "order-id": "17", "note": "take two, v2.1"}
    job_id = submit(deployment, video_url(polls=1), AUDIO_URL, notify_url=url, metadata=metadata)
    job = deployment.wait(job_id)
    assert job.status == "archived", job.error

    assert value(api(deployment, call("get_job", job_id))[0])["metadata"] == metadata
    assert [body["metadata"] for body in posted(app)] == [metadata]
    assert head_metadata(deployment, job.archive_uri) == {
        "job-id": job_id,
        "akool-id": job.akool_id,
        **metadata,
    }


def test_metadata_that_cannot_go_on_s3_stays_on_the_record_and_in_the_post_only(
    deployment: Deployment, sink: tuple[str, type[PostSink]]
) -> None:
    url, app = sink
    metadata = {"customer": "acme", "title": "Café crème — prise 2"}
    job_id = submit(deployment, video_url(polls=1), AUDIO_URL, notify_url=url, metadata=metadata)
    job = deployment.wait(job_id)
    assert job.status == "archived", job.error

    assert value(api(deployment, call("get_job", job_id))[0])["metadata"] == metadata
    assert [body["metadata"] for body in posted(app)] == [metadata]
    assert head_metadata(deployment, job.archive_uri) == {
        "job-id": job_id,
        "akool-id": job.akool_id,
    }


# --- archive keys ----------------------------------------------------------------------------


def test_an_archive_key_lands_at_exactly_the_prefix_plus_the_key_byte_exact(
    deployment: Deployment,
) -> None:
    folder = unique("contract")
    name = f"{folder}/clients/acme/take 1 (final).mp4"
    job_id = submit(deployment, video_url(polls=1), AUDIO_URL, archive_key=name)
    job = deployment.wait(job_id)
    assert job.status == "archived", job.error

    assert deployment.env["ARCHIVE_PREFIX"] == "lipsync/"
    assert job.archive_uri == f"s3://{BUCKET}/lipsync/{name}"
    assert objects_under(deployment, object_key(deployment, folder)) == [f"lipsync/{name}"]
    assert objects_under(deployment, object_key(deployment, job_id)) == []
    assert (
        deployment.stored_sha256(job)
        == deployment.stack.simulator.job(job.akool_id or "")["sha256"]
    )


def test_a_held_archive_key_is_refused_to_another_job_and_the_same_request_returns_the_first(
    deployment: Deployment,
) -> None:
    name, key = f"{unique('contract')}/one.mp4", unique("order")
    video = video_url(polls=1)
    first = submit(deployment, video, AUDIO_URL, archive_key=name, idempotency_key=key)
    before = stored_state(deployment)
    right_away = api(deployment, call("submit_lipsync", video_url(), AUDIO_URL, archive_key=name))
    job = deployment.wait(first)
    assert job.status == "archived", job.error

    archived, adopting, same = api(
        deployment,
        call("submit_lipsync", video_url(), AUDIO_URL, archive_key=name, idempotency_key="k2"),
        call("archive_akool_job", "65f1c0ffee", archive_key=name),
        call("submit_lipsync", video, AUDIO_URL, archive_key=name, idempotency_key=key),
    )

    for answer in (*right_away, archived, adopting):
        assert answer["raised"] == "ArchiveKeyTaken", answer
        assert (answer["key"], answer["job_id"]) == (name, first)
        assert first in answer["message"]
    assert value(same) == first
    records, index, _ = stored_state(deployment)
    assert (records, index) == before[:2]
    assert objects_under(deployment, object_key(deployment, name)) == [f"lipsync/{name}"]
    assert deployment.akool_jobs_for(video) == 1


# --- adopting a job other code submitted -----------------------------------------------------


def submit_as_other_code(deployment: Deployment, video: str) -> str:
    """POST a lip-sync job to Akool (the simulator) directly; Akool's id for it."""
    answer = requests.post(
        deployment.stack.simulator.url + SUBMIT_PATH,
        json={"video_url": video, "audio_url": AUDIO_URL},
        headers={"x-api-key": SIM_API_KEY},
        timeout=10,
    ).json()
    assert answer["code"] == 1000, answer
    return str(answer["data"]["_id"])


def test_an_akool_job_submitted_by_other_code_is_adopted_and_archived_without_a_submit_of_ours(
    deployment: Deployment,
) -> None:
    video = video_url(polls=1)
    akool_id = submit_as_other_code(deployment, video)

    adopted, again = api(
        deployment, call("archive_akool_job", akool_id), call("archive_akool_job", akool_id)
    )
    job_id = value(adopted)
    job = deployment.wait(job_id)

    assert job.status == "archived", job.error
    assert job.akool_id == akool_id and job.adopted_ts is not None
    assert deployment.stored_sha256(job) == deployment.stack.simulator.job(akool_id)["sha256"]
    assert deployment.submits_for(video) == 1
    assert deployment.akool_jobs_for(video) == 1
    assert akool_polls(deployment, akool_id) >= 1
    assert value(again) == job_id
    assert value(api(deployment, call("archive_akool_job", akool_id))[0]) == job_id


# --- how a job's ending reads: Celery's result backend, wait_for_job -------------------------


def test_celery_async_result_returns_for_an_archived_job_and_raises_for_failed_and_cancelled(
    deployment: Deployment,
) -> None:
    ids = [
        value(answer)
        for answer in api(
            deployment,
            call("submit_lipsync", video_url(polls=1), AUDIO_URL),
            call("submit_lipsync", video_url(final=4), AUDIO_URL),
            call("submit_lipsync", video_url(polls=10_000), AUDIO_URL),
        )
    ]
    # Asked as soon as the jobs are enqueued: get() waits for an ending still to come, or
    # reads one stored already.
    results = start_python(deployment, RESULTS, *ids)
    cancel(deployment, ids[2])
    jobs = [deployment.wait(job_id) for job_id in ids]

    answers = answers_of(results)
    assert [job.status for job in jobs] == ["archived", "failed", "cancelled"]
    assert answers[0] == {
        "value": {"job_id": ids[0], "status": "archived", "archive_uri": jobs[0].archive_uri}
    }
    assert answers[1] == {
        "raised": "JobFailed",
        "module": "worker.errors",
        "message": jobs[1].error,
    }
    assert answers[2] == {
        "raised": "JobCancelled",
        "module": "worker.errors",
        "message": jobs[2].error,
    }
    assert jobs[1].error and jobs[2].error


def test_wait_for_job_returns_the_final_record_of_a_job_that_fails(deployment: Deployment) -> None:
    job_id = submit(deployment, video_url(final=4), AUDIO_URL)

    (answer,) = api(deployment, call("wait_for_job", job_id, timeout=60))

    assert value(answer)["status"] == "failed"
    assert value(answer)["error"] == deployment.store.get(job_id).error


def test_wait_for_job_returns_the_cancelled_record_once_another_process_cancels_the_job(
    deployment: Deployment,
) -> None:
    job_id = submit(deployment, video_url(polls=10_000), AUDIO_URL)
    waiter = start_api(deployment, call("wait_for_job", job_id, timeout=60))
    channel = keys.result(job_id)
    # Cancelled once the waiter listens for the ending, so that it is told, not re-reading.
    wait_until(
        lambda: deployment.redis.pubsub_numsub(channel)[0][1] >= 1, 30, "the waiter to listen"
    )
    assert not deployment.store.get(job_id).is_final

    cancelled = cancel(deployment, job_id)
    (answer,) = answers_of(waiter)

    assert value(answer)["status"] == "cancelled"
    assert value(answer)["error"] == cancelled["error"]
