"""cancel_job in each state a job can be in, from an application process, next to the
Procfile's workers: after the cancel nothing more goes to Akool, nothing stays in S3 (a
multipart upload under way is aborted), and the application hears of the ending once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.conftest import AUDIO_URL, Deployment, video_url
from tests.integration.contract_app import (
    akool_polls,
    cancel,
    lines,
    object_key,
    objects_under,
    pending_uploads,
    submit,
)
from tests.postsink import PostSink, post_sink
from worker.dev.stack import wait_until
from worker.names import AKOOL_QUEUE, MiB
from worker.store import keys

pytestmark = pytest.mark.integration

# The stack's POLL_MAX_SECONDS is 1: a job still polled is asked again within about this.
POLL_PERIOD_SECONDS = 1.5
# A video streamed at 2 MiB/s: its multipart upload starts after one 8 MiB part (4 s), and
# the whole copy would take 16 s.
SLOW_VIDEO = {"polls": 1, "size": 32 * MiB, "file_rate": 2 * MiB}
# A running copy sees the cancel at its next heartbeat (every second) and is cut off at the
# next check of its download (every second).
COPY_STOP_SECONDS = 15


@pytest.fixture
def sink() -> Iterator[tuple[str, type[PostSink]]]:
    """An application's notify_url on 127.0.0.1 (the stack's NOTIFY_ALLOWED_HOSTS)."""
    with post_sink("/lipsync-done") as endpoint:
        yield endpoint


def wait_for(
    check: Callable[[], object], what: str, timeout: float = 30, interval: float = 0.1
) -> None:
    wait_until(check, timeout, what, interval=interval)


def announced_once(app: type[PostSink], job_id: str) -> None:
    """The notify_url got the cancelled record, and no second POST follows."""
    wait_for(lambda: len(app.bodies) >= 1, "the cancel announced")
    time.sleep(1)  # time for a duplicate to show up, if there were one
    assert [(body["id"], body["status"]) for body in app.bodies] == [(job_id, "cancelled")]


def nothing_stored(deployment: Deployment, job_id: str) -> None:
    """No object and no pending upload at the job's key (`<job id>.mp4`)."""
    key = object_key(deployment, f"{job_id}.mp4")
    assert objects_under(deployment, key) == []
    assert pending_uploads(deployment, key) == []


def polls_stopped(deployment: Deployment, akool_id: str, at_cancel: int) -> None:
    """Akool is polled no more: at most the poll already on its way when the cancel came
    lands, then the count holds over a few poll periods."""
    time.sleep(POLL_PERIOD_SECONDS)
    settled = akool_polls(deployment, akool_id)
    assert settled <= at_cancel + 1, (at_cancel, settled)
    time.sleep(3 * POLL_PERIOD_SECONDS)
    assert akool_polls(deployment, akool_id) == settled


def archive_task_ended(deployment: Deployment, job_id: str) -> bool:
    """True once the worker's archive task of the job has ended, however it ended."""
    ends = (" succeeded in ", " ignored", " retry: ", " raised ")
    return any(
        any(end in line for end in ends)
        for line in lines(deployment, f"Task lipsync.archive[{job_id}]")
    )


def stopped_on_the_cancel(deployment: Deployment, job_id: str) -> None:
    """The archive saw the cancel and stopped for it, with no error of its own."""
    assert any(lines(deployment, f"Job {job_id}: its archive stopped, as the job ended"))
    assert not any(lines(deployment, job_id, "unexpected error"))


def cancelled(deployment: Deployment, job_id: str) -> None:
    """cancel_job from an application process answers the cancelled record."""
    record = cancel(deployment, job_id)
    assert record["status"] == "cancelled" and record["error"], record
    assert deployment.store.get(job_id).status == "cancelled"


# --- the four states -------------------------------------------------------------------------


def test_a_job_cancelled_while_queued_is_never_submitted_and_is_announced_once(
    deploy, sink: tuple[str, type[PostSink]]
) -> None:
    deployment: Deployment = deploy(workers=False)
    url, app = sink
    video = video_url(polls=1)
    job_id = submit(deployment, video, AUDIO_URL, notify_url=url)
    assert deployment.store.get(job_id).status == "queued"

    cancelled(deployment, job_id)
    deployment.start_workers()

    announced_once(app, job_id)
    wait_for(lambda: deployment.redis.llen(AKOOL_QUEUE) == 0, "the submit task taken")
    wait_for(lambda: any(lines(deployment, "lipsync.submit[", "ignored")), "the submit to stop")
    time.sleep(POLL_PERIOD_SECONDS)  # a submit on its way would reach Akool by now
    assert deployment.submits_for(video) == 0
    assert deployment.akool_jobs_for(video) == 0
    job = deployment.store.get(job_id)
    assert job.status == "cancelled" and job.akool_id is None and job.submit_claimed_ts is None
    nothing_stored(deployment, job_id)


@pytest.mark.parametrize(
    ("scripted", "state"),
    [
        # Every poll answers HTTP 503: Akool never says more than "submitted", and the job
        # is polled again every POLL_MAX_SECONDS.
        ({"poll_http": 503, "poll_http_times": 100_000}, "submitted"),
        # Akool says "processing" (video_status 2) for as long as the test lasts.
        ({"polls": 100_000}, "processing"),
    ],
)
def test_a_job_cancelled_while_akool_works_on_it_is_polled_no_more_and_is_announced_once(
    deployment: Deployment, sink: tuple[str, type[PostSink]], scripted: dict[str, int], state: str
) -> None:
    url, app = sink
    video = video_url(**scripted)
    job_id = submit(deployment, video, AUDIO_URL, notify_url=url)
    wait_for(lambda: deployment.store.get(job_id).polls >= 2, "the job polled")
    job = deployment.store.get(job_id)
    akool_id = job.akool_id or ""
    assert job.status == state and akool_id, job

    cancelled(deployment, job_id)
    polls_stopped(deployment, akool_id, akool_polls(deployment, akool_id))

    assert deployment.submits_for(video) == 1
    assert deployment.akool_jobs_for(video) == 1
    announced_once(app, job_id)
    nothing_stored(deployment, job_id)


def test_a_job_cancelled_while_its_copy_runs_stops_the_copy_and_aborts_its_upload(
    deployment: Deployment, sink: tuple[str, type[PostSink]]
) -> None:
    url, app = sink
    video = video_url(**SLOW_VIDEO)
    job_id = submit(deployment, video, AUDIO_URL, notify_url=url)
    key = object_key(deployment, f"{job_id}.mp4")
    wait_for(lambda: pending_uploads(deployment, key), "the upload started", 60, interval=0.3)
    job = deployment.store.get(job_id)
    assert job.status == "archiving" and job.archive_progress_bytes, job
    polls = akool_polls(deployment, job.akool_id or "")

    cancelled(deployment, job_id)

    wait_for(lambda: archive_task_ended(deployment, job_id), "the copy to stop", COPY_STOP_SECONDS)
    assert pending_uploads(deployment, key) == []
    assert objects_under(deployment, key) == []
    job = deployment.store.get(job_id)
    assert job.status == "cancelled" and job.archive_uri is None
    served = deployment.stack.simulator.job(job.akool_id or "")
    assert served["downloads"] == 1
    assert akool_polls(deployment, job.akool_id or "") == polls
    assert deployment.submits_for(video) == 1
    announced_once(app, job_id)
    nothing_stored(deployment, job_id)
    stopped_on_the_cancel(deployment, job_id)


def test_cancelling_an_archived_job_returns_it_unchanged(
    deployment: Deployment, sink: tuple[str, type[PostSink]]
) -> None:
    url, app = sink
    job_id = submit(deployment, video_url(polls=1), AUDIO_URL, notify_url=url)
    assert deployment.wait(job_id).status == "archived"
    wait_for(lambda: deployment.store.get(job_id).notified_ts is not None, "the ending told")
    before = json.loads(json.dumps(deployment.store.get(job_id).to_dict()))
    ending = deployment.redis.get(keys.result(job_id))

    record = cancel(deployment, job_id)

    assert record == before
    assert json.loads(json.dumps(deployment.store.get(job_id).to_dict())) == before
    assert deployment.redis.get(keys.result(job_id)) == ending
    time.sleep(1)
    assert [body["status"] for body in app.bodies] == ["archived"]
