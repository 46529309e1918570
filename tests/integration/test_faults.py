"""The fault suite: crashes, outages and hostile input injected into real processes.

Every test ends by checking the promises: each job archived exactly once (one complete
object at its key, byte-exact) or failed with a clear reason; exactly one Akool job created
per job; no partial object and no pending multipart upload.

The crash, outage and duplicate-submit tests hold for every Akool kind: each runs with
lip-sync and character swap (`KINDS`), either once per kind or with jobs of both kinds side
by side, which costs no more time than jobs of one kind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
import requests

from tests.integration.bad_records import plant_bad_records
from tests.integration.conftest import Deployment, video_url
from worker import messages
from worker.dev.stack import BUCKET, wait_until
from worker.names import MiB
from worker.store import keys
from worker.store.jobs import Job

pytestmark = pytest.mark.integration

# Fast schedules so each fault plays out in seconds; the bounds scale with the defaults
# (see docs/guarantees.md).
FAST = {
    "POLL_INITIAL_SECONDS": "0.3",
    "POLL_MAX_SECONDS": "1",
    "STALL_SECONDS": "3",
    "SWEEP_INTERVAL_SECONDS": "1",
    "AKOOL_TIMEOUT_SECONDS": "5",
}
RECOVERY_TIMEOUT_SECONDS = 90.0
# Lip-sync, and the simplest call of another kind (its video URL scripts the simulator).
KINDS = ("lipsync", "character_swap")


def of_kinds(count: int) -> list[str]:
    """`count` kinds, taking turns through KINDS: jobs of every kind side by side."""
    return [KINDS[i % len(KINDS)] for i in range(count)]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    wait_until(check, timeout, what, interval=0.1)


def akool_polls(deployment: Deployment, job_id: str) -> int:
    """How many polls of this job reached the simulator."""
    akool_id = deployment.store.get(job_id).akool_id
    return int(deployment.stack.simulator.job(akool_id)["polls"]) if akool_id else 0


def assert_archived_once(deployment: Deployment, job: Job, video: str) -> None:
    """Archived, byte-exact, one Akool job, one object, no multipart upload left over."""
    assert job.status == "archived", job.error
    served = deployment.stack.simulator.job(job.akool_id or "")
    assert deployment.stored_sha256(job) == served["sha256"]
    assert deployment.akool_jobs_for(video) == 1
    s3 = deployment.stack.s3_client()
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"lipsync/{job.id}")
    assert listed["KeyCount"] == 1
    assert not s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"lipsync/{job.id}").get("Uploads")


def assert_failed_without_object(deployment: Deployment, job: Job, reason: str) -> None:
    assert job.status == "failed" and reason in (job.error or ""), job.error
    s3 = deployment.stack.s3_client()
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"lipsync/{job.id}")["KeyCount"] == 0
    assert not s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"lipsync/{job.id}").get("Uploads")


# --- crashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_worker_killed_between_polls_is_replaced_and_the_job_completes(deploy, kind: str) -> None:
    deployment: Deployment = deploy(beat=True, **FAST)
    video = video_url(seconds=6, polls=1)
    job_id = deployment.submit_kind(kind, video)
    wait_for(lambda: deployment.store.get(job_id).polls >= 2, "a few polls")

    deployment.kill_worker()
    deployment.restart_worker()

    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_archived_once(deployment, job, video)
    assert job.redrives >= 1 and job.kind == kind


def test_worker_killed_in_the_middle_of_an_archive_leaves_no_partial_object(deploy) -> None:
    deployment: Deployment = deploy(beat=True, **FAST)
    video = video_url(polls=1, size=12 * 1024 * 1024, file_delay=4)
    job_id = deployment.submit(video)
    wait_for(lambda: deployment.store.get(job_id).status == "archiving", "the archive")
    wait_for(
        lambda: (
            deployment.stack.simulator.job(deployment.store.get(job_id).akool_id or "")["downloads"]
            >= 1
        ),
        "the download",
    )

    deployment.kill_worker()
    deployment.restart_worker()

    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_archived_once(deployment, job, video)


@pytest.mark.parametrize("kind", KINDS)
def test_worker_killed_while_its_submit_is_in_flight_fails_the_job_saying_so(
    deploy, kind: str
) -> None:
    deployment: Deployment = deploy(beat=True, **FAST)
    video = video_url(submit_delay=5)
    job_id = deployment.submit_kind(kind, video)
    wait_for(lambda: deployment.submits_for(video) == 1, "the submit to reach Akool")

    deployment.kill_worker()
    deployment.restart_worker()

    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_failed_without_object(deployment, job, messages.SUBMIT_UNKNOWN)
    time.sleep(2)  # a late redelivery or re-drive would show up here
    assert deployment.submits_for(video) == 1 and deployment.akool_jobs_for(video) == 1


def test_a_poll_deadline_that_passed_while_no_worker_ran_asks_akool_first(deploy) -> None:
    deployment: Deployment = deploy(beat=True, POLL_TIMEOUT_SECONDS="4", **FAST)
    video = video_url(seconds=3, polls=0)
    job_id = deployment.submit(video)
    wait_for(lambda: akool_polls(deployment, job_id) >= 1, "the first poll to reach Akool")

    deployment.kill_worker()
    time.sleep(6)  # the deadline passes while nothing runs; Akool finishes meanwhile
    deployment.restart_worker()

    assert_archived_once(deployment, deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS), video)


# --- Redis ------------------------------------------------------------------------------


def test_redis_restart_with_aof_loses_no_job(deploy) -> None:
    deployment: Deployment = deploy(beat=True, **FAST)
    videos = [video_url(seconds=5, polls=1) for _ in range(4)]
    job_ids = [deployment.submit_kind(k, v) for k, v in zip(of_kinds(4), videos, strict=True)]
    wait_for(lambda: all(deployment.store.get(j).polls >= 1 for j in job_ids), "polling")

    deployment.stack.redis.restart()

    for job_id, video in zip(job_ids, videos, strict=True):
        assert_archived_once(deployment, deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS), video)
    assert all(w.alive for w in deployment.workers)


def test_redis_down_for_30_seconds_during_polling_loses_no_chain(deploy) -> None:
    deployment: Deployment = deploy(beat=True, **FAST)
    videos = [video_url(seconds=4, polls=1) for _ in range(3)]
    job_ids = [deployment.submit_kind(k, v) for k, v in zip(of_kinds(3), videos, strict=True)]
    wait_for(lambda: all(deployment.store.get(j).polls >= 1 for j in job_ids), "polling")

    deployment.stack.redis.restart(down_seconds=30)

    for job_id, video in zip(job_ids, videos, strict=True):
        assert_archived_once(deployment, deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS), video)
    assert all(w.alive for w in deployment.workers)


# --- S3 ---------------------------------------------------------------------------------


def test_s3_down_for_20_seconds_delays_the_archive_but_loses_nothing(deploy) -> None:
    deployment: Deployment = deploy(**FAST)
    s3 = deployment.stack.s3
    s3.stop()
    try:
        video = video_url(polls=1)
        job_id = deployment.submit(video)
        wait_for(lambda: deployment.store.get(job_id).status == "archiving", "the archive")
        time.sleep(20)
    finally:
        s3.start()  # moto keeps nothing: the bucket comes back empty
        deployment.stack.s3_client().create_bucket(Bucket=BUCKET)
    assert_archived_once(deployment, deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS), video)


# --- Akool rate limits and errors ------------------------------------------------------


def test_bursts_of_1005_429_and_5xx_are_absorbed_without_extra_akool_jobs(deploy) -> None:
    # Each 1005 or 429 halves the fleet's rate, which then climbs back 0.1 req/s a second:
    # from the default ceiling of 5 req/s, 27 such answers would leave these 12 jobs at the
    # 0.2 req/s floor for a minute. A higher ceiling keeps the test about the bursts.
    deployment: Deployment = deploy(AKOOL_MAX_RPS="50", **FAST)
    videos = (
        [video_url(submit_code=1005, submit_code_times=3) for _ in range(3)]
        + [video_url(poll_http=429, poll_http_times=3, retry_after=1) for _ in range(3)]
        + [video_url(poll_http=502, poll_http_times=3) for _ in range(3)]
        + [video_url(poll_code=1005, poll_code_times=3) for _ in range(3)]
    )
    kinds = of_kinds(len(videos))  # each burst's jobs take turns: lip-sync, swap, lip-sync
    job_ids = [deployment.submit_kind(k, v) for k, v in zip(kinds, videos, strict=True)]

    for job_id, video in zip(job_ids, videos, strict=True):
        assert_archived_once(deployment, deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS), video)


def test_akool_answering_503_to_everything_while_jobs_poll_delays_every_kind_losing_nothing(
    deploy,
) -> None:
    deployment: Deployment = deploy(**FAST)
    videos = [video_url(seconds=5, polls=0) for _ in KINDS]
    job_ids = [deployment.submit_kind(k, v) for k, v in zip(KINDS, videos, strict=True)]
    wait_for(lambda: all(akool_polls(deployment, j) >= 1 for j in job_ids), "the first polls")

    simulator = deployment.stack.simulator
    simulator.outage(6)
    try:  # the session's simulator: the outage ends with the test, whatever happens
        wait_for(
            lambda: all("503" in (deployment.store.get(j).waiting or "") for j in job_ids),
            "every job to say it waits on Akool's 503",
        )
        for job_id, video in zip(job_ids, videos, strict=True):
            job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
            assert_archived_once(deployment, job, video)
            assert not job.waiting
    finally:
        simulator.outage(0)


def test_the_fleet_stays_within_its_akool_request_budget(deploy) -> None:
    deployment: Deployment = deploy(AKOOL_MAX_RPS="4", **FAST)
    sim = deployment.stack.simulator
    requests.post(sim.url + "/_sim/reset-window", timeout=5)
    videos = [video_url(polls=2) for _ in range(8)]  # 32 calls: 8 s at 4 req/s
    job_ids = [deployment.submit(v) for v in videos]

    for job_id in job_ids:
        assert deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS).status == "archived"
    assert sim.stats()["max_requests_per_second"] <= 4 + 1  # one-second windows are not aligned


# --- hostile downloads ------------------------------------------------------------------


def test_redirect_to_a_host_not_allowed_is_refused(deploy) -> None:
    deployment: Deployment = deploy(**FAST)
    job = deployment.run(video_url(redirect="http://127.0.0.2:9/steal"))

    assert_failed_without_object(deployment, job, "not in ARCHIVE_ALLOWED_HOSTS")


def test_oversized_file_is_refused_while_streaming(deploy) -> None:
    deployment: Deployment = deploy(ARCHIVE_MAX_BYTES=str(1024 * 1024), **FAST)
    job = deployment.run(video_url(size=3 * 1024 * 1024))

    assert_failed_without_object(deployment, job, "ARCHIVE_MAX_BYTES")


def test_truncated_file_is_retried_and_never_stored_partially(deploy) -> None:
    deployment: Deployment = deploy(**FAST)
    video = video_url(truncate_times=2, size=11 * 1024 * 1024)
    job = deployment.run(video)

    assert_archived_once(deployment, job, video)
    assert deployment.stack.simulator.job(job.akool_id or "")["downloads"] == 3


def test_bad_records_among_real_jobs_stop_no_sweep_and_a_killed_poll_still_completes(
    deploy,
) -> None:
    deployment: Deployment = deploy(beat=True, **FAST)
    bad = plant_bad_records(deployment.redis)
    video = video_url(seconds=6, polls=1)
    job_id = deployment.submit(video)
    wait_for(lambda: deployment.store.get(job_id).polls >= 2, "a few polls")

    deployment.kill_worker()
    deployment.restart_worker()

    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_archived_once(deployment, job, video)
    log = deployment.worker.log_text()
    assert "lipsync.sweep" in log and "succeeded" in log
    assert "raised unexpected" not in log
    skipped = [line for line in log.splitlines() if "Skipping lipsync:job:" in line]
    assert len(skipped) == len(bad)
    assert int(deployment.redis.get(keys.METRICS_CORRUPT) or 0) == len(bad)


# --- shutdown --------------------------------------------------------------------------


def test_sigterm_mid_archive_exits_within_30_s_and_another_worker_finishes_the_job(
    deploy,
) -> None:
    deployment: Deployment = deploy(beat=True, **FAST)
    # 100 MiB at 2 MB/s: the first copy would take 52 s, far longer than 30 s.
    video = video_url(polls=1, size=100 * MiB, file_rate=2_000_000, file_rate_times=1)
    job_id = deployment.submit(video)
    key = f"lipsync/{job_id}.mp4"
    s3 = deployment.stack.s3_client()
    wait_for(
        lambda: bool(s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads")),
        "a multipart upload under way",
        timeout=60,
    )

    worker = deployment.archiver.proc  # the process copying the video
    assert worker is not None
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)  # the main process only, as a container stop does
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 30 s after SIGTERM:\n{deployment.archiver.log_text()[-3000:]}")
    assert time.monotonic() - started < 30
    assert "Soft Shutdown" in deployment.archiver.log_text()

    deployment.restart_worker()
    job = deployment.wait(job_id, RECOVERY_TIMEOUT_SECONDS)
    assert_archived_once(deployment, job, video)
