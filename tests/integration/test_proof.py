"""The rule of proof, against real processes: a passing fault never loses a finished video
and never pays for a request twice.

A job ends `failed` only on evidence that its video can never be archived. One answer (a
404, a 1008, a 503, a timeout, a refusal by the fleet's own request budget) is "not yet":
the job waits, shows what it waits on, and goes on when the fault passes. Each test injects
one fault into the Procfile's processes (the simulator stands in for Akool, moto for S3).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Deployment, video_url
from tests.integration.test_faults import (
    FAST,
    RECOVERY_TIMEOUT_SECONDS,
    akool_polls,
    assert_archived_once,
    assert_failed_without_object,
    wait_for,
)
from worker.names import MiB
from worker.store.jobs import Job

pytestmark = pytest.mark.integration


def lipsync(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """The `lipsync` command against the deployment, as an operator runs it."""
    command = [str(Path(sys.executable).parent / "lipsync"), *args]
    return subprocess.run(
        command, env=deployment.env, capture_output=True, text=True, timeout=60, check=False
    )


def waiting(deployment: Deployment, job_id: str) -> str:
    """What the job says it waits on ("" when it waits on nothing)."""
    return deployment.store.get(job_id).waiting or ""


def seen_waiting(deployment: Deployment, job_id: str, *words: str) -> None:
    """Wait until the job says it waits, in a sentence holding every one of `words`; fail at
    once if it ends instead."""

    def shown_or_ended() -> bool:
        job = deployment.store.get(job_id)
        return job.is_final or all(word in (job.waiting or "") for word in words)

    wait_for(shown_or_ended, f"the job to say it waits ({', '.join(words)})")
    job = deployment.store.get(job_id)
    assert not job.is_final, f"the job ended instead of waiting: {job.status}: {job.error}"


@pytest.fixture
def akool_outage(deployment: Deployment) -> Iterator[None]:
    """Ends any outage of the shared simulator after the test, whatever happened."""
    yield
    deployment.stack.simulator.outage(0)


# --- finished videos are never lost to one answer ---------------------------------------


def test_akool_unreachable_past_the_poll_deadline_still_archives_the_finished_video(
    deploy, akool_outage
) -> None:
    deployment: Deployment = deploy(beat=True, POLL_TIMEOUT_SECONDS="3", **FAST)
    video = video_url(seconds=2, polls=0)
    job_id = deployment.submit(video)
    wait_for(lambda: akool_polls(deployment, job_id) >= 1, "the first poll to reach Akool")

    # Akool finishes the job 2 s in, and answers 503 to everything from about 1 s to 8 s:
    # past the 3 s poll deadline, which time without an answer does not count towards.
    deployment.stack.simulator.outage(7)
    seen_waiting(deployment, job_id, "Akool", "HTTP 503")
    time.sleep(4)
    job = deployment.store.get(job_id)
    assert not job.is_final, job.error
    assert "since" in (job.waiting or "")

    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_archived_once(deployment, job, video)
    assert not job.waiting


def test_a_404_just_after_completion_is_not_taken_as_gone(deploy) -> None:
    deployment: Deployment = deploy(**FAST)
    video = video_url(polls=1, file="gone", file_times=4)
    job_id = deployment.submit(video)

    seen_waiting(deployment, job_id, "404")
    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_archived_once(deployment, job, video)
    assert deployment.stack.simulator.job(job.akool_id or "")["downloads"] == 5


def test_a_transient_1008_on_a_poll_is_not_taken_as_gone(deploy) -> None:
    deployment: Deployment = deploy(**FAST)
    video = video_url(polls=1, poll_code=1008, poll_code_times=3)
    job_id = deployment.submit(video)

    seen_waiting(deployment, job_id, "1008")
    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_archived_once(deployment, job, video)


def test_a_completed_answer_without_a_usable_url_is_asked_again(deploy) -> None:
    deployment: Deployment = deploy(**FAST)
    video = video_url(polls=1, bad_video="null", bad_video_times=3)
    job_id = deployment.submit(video)

    seen_waiting(deployment, job_id, "URL")
    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_archived_once(deployment, job, video)
    assert job.result_url and job.result_url.startswith("http://")


# --- what really is gone still ends -----------------------------------------------------


def test_a_video_gone_on_every_try_fails_once_the_grace_has_passed(deploy) -> None:
    deployment: Deployment = deploy(ARCHIVE_GONE_GRACE_SECONDS="3", **FAST)
    video = video_url(polls=1, file="gone")
    job_id = deployment.submit(video)
    seen_waiting(deployment, job_id, "404")
    since = time.time()

    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_failed_without_object(deployment, job, "ARCHIVE_GONE_GRACE_SECONDS")
    assert "404" in (job.error or "")
    assert time.time() - since >= 2
    assert deployment.stack.simulator.job(job.akool_id or "")["downloads"] >= 3


def test_retry_of_a_job_that_failed_in_the_archive_asks_akool_for_a_fresh_url(deploy) -> None:
    deployment: Deployment = deploy(ARCHIVE_GONE_GRACE_SECONDS="2", **FAST)
    # The first result URL Akool gives is a dead link (an expired signed URL); a fresh
    # answer gives a live one.
    video = video_url(polls=1, file_gone_urls=1)
    job = deployment.run(video)
    assert job.status == "failed", job
    polls_before = akool_polls(deployment, job.id)

    done = lipsync(deployment, "retry", job.id)
    assert done.returncode == 0, done.stderr

    job = deployment.wait(job.id, RECOVERY_TIMEOUT_SECONDS)
    assert_archived_once(deployment, job, video)
    assert akool_polls(deployment, job.id) > polls_before
    assert job.result_url and job.result_url.endswith("?v=2")


# --- one request, one paid Akool job ---------------------------------------------------


# Akool takes seconds to answer these submits: well within the call's timeout.
SLOW_SUBMIT = {**FAST, "AKOOL_TIMEOUT_SECONDS": "20"}
# A submit task of the job, enqueued as a redelivery or a re-drive would put it there.
ENQUEUE_SUBMIT = "import sys; from worker.tasks import submit; submit.delay(sys.argv[1])"


def _archived_with_one_akool_job(deployment: Deployment, job_id: str, video: str) -> Job:
    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    time.sleep(2)  # a second submit still on its way would show up here
    assert deployment.akool_jobs_for(video) == 1
    assert deployment.submits_for(video) == 1
    assert_archived_once(deployment, job, video)
    # The second task met the first one's claim while its submit was in flight.
    met = [
        line for line in deployment.log_text().splitlines() if f"Job {job_id}: another run" in line
    ]
    assert met and all("submit claim" in line and "nothing sent" in line for line in met)
    return job


def test_a_retry_of_a_queued_job_whose_task_meets_a_busy_budget_sends_no_second_submit(
    deploy,
) -> None:
    deployment: Deployment = deploy(beat=True, workers=False, **SLOW_SUBMIT)
    video = video_url(polls=1, submit_delay=3)
    job_id = deployment.submit(video)

    done = lipsync(deployment, "retry", job_id)  # accepted: the job is queued
    assert done.returncode == 0, done.stderr
    # Both submit tasks start together: the second is refused a slot by the fleet's
    # budget while the first one's slow submit is in flight.
    deployment.start_workers()

    _archived_with_one_akool_job(deployment, job_id, video)


def test_a_second_submit_task_arriving_while_the_first_is_in_flight_changes_nothing(
    deploy,
) -> None:
    deployment: Deployment = deploy(beat=True, **SLOW_SUBMIT)
    video = video_url(polls=1, submit_delay=4)
    job_id = deployment.submit(video)
    wait_for(lambda: deployment.submits_for(video) == 1, "the submit to reach Akool")

    # A duplicate of the job's submit task (a redelivery, a re-drive) gets a slot at once
    # and finds the claim of the submit in flight.
    deployment.python(ENQUEUE_SUBMIT, job_id)

    job = _archived_with_one_akool_job(deployment, job_id, video)
    assert not job.error


# --- archives cannot starve Akool calls ------------------------------------------------


def test_a_quick_job_archives_within_30_s_while_slow_downloads_hold_the_archive_pool(
    deploy,
) -> None:
    deployment: Deployment = deploy(DOWNLOAD_RATE_WINDOW_SECONDS="4", **FAST)
    # As many archives as the archive worker has pool processes, each from a host trickling
    # 32 KB/s (about 65 s a video), under the floor of DOWNLOAD_MIN_BYTES_PER_SECOND.
    pool = os.cpu_count() or 1  # Celery's default concurrency
    slow = [video_url(polls=0, size=2 * MiB, file_rate=32_000) for _ in range(pool)]
    slow_ids = [deployment.submit(v) for v in slow]
    wait_for(
        lambda: all(deployment.store.get(j).status == "archiving" for j in slow_ids),
        "the slow archives to start",
    )
    time.sleep(1)

    quick = video_url(polls=1)
    started = time.monotonic()
    job_id = deployment.submit(quick)
    wait_for(lambda: deployment.submits_for(quick) == 1, "the quick job's submit", timeout=10)

    job = deployment.wait(job_id, 30)
    assert time.monotonic() - started < 30
    assert_archived_once(deployment, job, quick)
