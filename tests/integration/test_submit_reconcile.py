"""A submit whose answer was lost, reconciled through the webhook, end to end: the simulator
creates the job and then answers the submit 502, and calls back the submit's webhookUrl as
Akool would; a real worker, beat and the Procfile's web process do the rest.

The simulated jobs answer status 2 to a thousand polls, and a waiting job has no Akool id
to poll with anyway: only the callback can explain a job that completes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.integration.conftest import video_url
from tests.integration.test_webhooks import Hooked, hooked_deployment
from worker.akool.reconcile import callback_url
from worker.dev.stack import Stack, wait_until
from worker.status import JobStatus
from worker.store.jobs import Job

pytestmark = pytest.mark.integration

# Long enough for the happy path's callback (a second after the submit), short enough to
# watch the sweeper end a wait within the test.
WAIT_SECONDS = 8
# Akool created the job, then its gateway answered the submit 502.
CREATED_THEN_502 = {"submit_http": 502, "submit_http_after_create": 1, "polls": 1000}
WAIT_TIMEOUT_SECONDS = 60.0


@pytest.fixture(scope="module")
def hooked(stack: Stack) -> Iterator[Hooked]:
    with hooked_deployment(
        stack,
        beat=True,
        SUBMIT_UNKNOWN_WAIT_SECONDS=str(WAIT_SECONDS),
        SWEEP_INTERVAL_SECONDS="1",
        STALL_SECONDS="5",
    ) as running:
        yield running


def counts(hooked: Hooked, video: str) -> tuple[int, int]:
    """Submits the simulator received for `video`, and Akool jobs it created for it."""
    stats = hooked.sim.state.stats()
    return stats["submits_by_video_url"].get(video, 0), stats["jobs_by_video_url"].get(video, 0)


def sim_akool_id(hooked: Hooked, video: str) -> str:
    """The id the simulator gave the one job it created for `video`."""
    ids = [j.job_id for j in list(hooked.sim.state.jobs.values()) if j.video_url == video]
    assert len(ids) == 1, ids
    return ids[0]


def waiting_job(hooked: Hooked, video: str) -> Job:
    """Submit `video`; the job once it waits for a callback after its 502."""
    job_id = hooked.deployment.submit(video)
    store = hooked.deployment.store

    def waits() -> bool:
        return store.get(job_id).submit_unknown_ts is not None

    wait_until(waits, WAIT_TIMEOUT_SECONDS, f"job {job_id} waiting for its callback")
    return store.get(job_id)


def post_to(hooked: Hooked, job: Job, token: str, body: dict[str, Any]) -> requests.Response:
    """POST a callback to the receiver URL naming `job` with `token`."""
    return requests.post(callback_url(hooked.url, job.id, token), json=body, timeout=10)


def test_a_job_created_despite_a_502_is_archived_through_its_callback_with_one_submit(
    hooked: Hooked,
) -> None:
    video = video_url(seconds=1, **CREATED_THEN_502)

    job = hooked.deployment.run(video)

    assert job.status == JobStatus.ARCHIVED, job.error
    akool_id = sim_akool_id(hooked, video)
    assert job.akool_id == akool_id
    served = hooked.sim_job(akool_id)
    assert hooked.deployment.stored_sha256(job) == served["sha256"]
    assert served["webhook_answers"] == [200]
    assert served["webhookUrl"].startswith(hooked.url + "?job=" + job.id + "&token=")
    assert counts(hooked, video) == (1, 1)


def test_a_callback_with_a_wrong_token_is_refused_and_changes_nothing(hooked: Hooked) -> None:
    video = video_url(webhook=0, **CREATED_THEN_502)
    job = waiting_job(hooked, video)
    akool_id = sim_akool_id(hooked, video)

    answer = post_to(hooked, job, "x" * 32, hooked.callback(akool_id, 3))

    assert answer.status_code == 401
    after = hooked.deployment.store.get(job.id)
    assert (after.status, after.akool_id, after.result_url) == (JobStatus.SUBMITTED, None, None)
    assert hooked.deployment.redis.get(f"lipsync:akool:{akool_id}") is None
    assert "x" * 32 not in hooked.receiver.log_text()
    assert hooked.sim_job(akool_id)["downloads"] == 0
    assert counts(hooked, video) == (1, 1)


def test_the_wait_ends_in_failure_and_a_later_callback_changes_nothing(hooked: Hooked) -> None:
    video = video_url(webhook=0, **CREATED_THEN_502)
    job = waiting_job(hooked, video)
    akool_id = sim_akool_id(hooked, video)

    failed = hooked.deployment.wait(job.id, timeout=WAIT_SECONDS + WAIT_TIMEOUT_SECONDS)
    late = post_to(hooked, job, job.webhook_token or "", hooked.callback(akool_id, 3))

    assert failed.status == JobStatus.FAILED
    assert "502" in (failed.error or "") and "not sent again" in (failed.error or "")
    assert "SUBMIT_UNKNOWN_WAIT_SECONDS" in (failed.error or "")
    assert late.json() == {"ok": True, "outcome": "not-adopted"}
    after = hooked.deployment.store.get(job.id)
    assert (after.status, after.akool_id, after.error) == (JobStatus.FAILED, None, failed.error)
    assert hooked.sim_job(akool_id)["downloads"] == 0
    assert counts(hooked, video) == (1, 1)
