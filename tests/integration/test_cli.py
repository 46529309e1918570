"""The `lipsync` console script, run as a user would, against the real stack."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.bad_records import plant_bad_records
from tests.integration.conftest import AUDIO_URL, Deployment, video_url
from worker.celery_app import create_app
from worker.config.settings import load_settings
from worker.dev.stack import wait_until

pytestmark = pytest.mark.integration
LIPSYNC = str(Path(sys.executable).parent / "lipsync")


def lipsync(deployment: Deployment, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LIPSYNC, *args], env=deployment.env, capture_output=True, text=True, timeout=timeout
    )


def test_submit_wait_follows_the_job_and_exits_0_when_archived(deployment: Deployment) -> None:
    done = lipsync(deployment, "submit", video_url(polls=2), AUDIO_URL, "--wait")

    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0]
    assert f"{job_id}: archived to s3://" in done.stdout


def test_submit_wait_exits_1_when_the_job_fails(deployment: Deployment) -> None:
    done = lipsync(deployment, "submit", video_url(final=4), AUDIO_URL, "--wait")

    assert done.returncode == 1
    assert "failed: Akool reported that the lip-sync failed" in done.stdout


def test_status_json_prints_the_whole_record(deployment: Deployment) -> None:
    job = deployment.run(video_url())
    done = lipsync(deployment, "status", job.id, "--json")

    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "archived"
    assert record["archive_uri"] == job.archive_uri
    assert record["expires_at"].startswith("20")


def test_status_of_an_unknown_job_exits_1(deployment: Deployment) -> None:
    done = lipsync(deployment, "status", "f" * 32)

    assert done.returncode == 1
    assert "no job" in done.stderr


def test_submit_with_a_bad_url_exits_2_and_says_why(deployment: Deployment) -> None:
    done = lipsync(deployment, "submit", "ftp://example.com/v.mp4", AUDIO_URL)

    assert done.returncode == 2
    assert "video_url must be an http(s) URL" in done.stderr


def test_demo_archives_one_job_and_checks_its_bytes(deployment: Deployment) -> None:
    done = lipsync(deployment, "demo", timeout=180)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: the stored bytes match" in done.stdout
    assert "s3://lipsync-archive/lipsync/" in done.stdout


def test_jobs_lists_recent_jobs_and_filters_by_status(deployment: Deployment) -> None:
    failed = deployment.run(video_url(final=4))
    done = lipsync(deployment, "jobs", "--status", "failed")

    assert done.returncode == 0, done.stderr
    assert failed.id in done.stdout and "STATUS" in done.stdout
    assert "archived" not in done.stdout.split("\n", 1)[-1].split()


def test_jobs_at_risk_lists_a_finished_video_that_was_not_archived(deploy) -> None:
    deployment = deploy(ARCHIVE_ALLOWED_HOSTS="*.cloudfront.net")  # the archive will be refused
    job = deployment.run(video_url())
    assert job.status == "failed" and job.result_url
    # Pretend Akool deletes the video in an hour.
    soon = time.time() + 3600
    deployment.redis.hset(f"lipsync:job:{job.id}", "expires_ts", soon)
    deployment.redis.zadd("lipsync:expiry", {job.id: soon})

    done = lipsync(deployment, "jobs", "--at-risk")
    assert done.returncode == 0, done.stderr
    assert job.id in done.stdout

    app = create_app(load_settings(deployment.env))
    app.send_task("lipsync.expiry_guard", queue="lipsync.akool")
    wait_until(
        lambda: f"Job {job.id} is at risk" in deployment.worker.log_text(),
        30,
        "the expiry guard's ERROR line",
    )


def test_retry_resumes_a_timed_out_job_without_submitting_again(deploy) -> None:
    deployment = deploy(POLL_TIMEOUT_SECONDS="2")
    video = video_url(seconds=4, polls=1)
    job = deployment.run(video)
    assert job.status == "failed" and "POLL_TIMEOUT_SECONDS" in (job.error or "")
    time.sleep(2)  # Akool finishes meanwhile

    done = lipsync(deployment, "retry", job.id)

    assert done.returncode == 0, done.stderr
    assert "re-driven from its poll step" in done.stdout
    assert deployment.wait(job.id).status == "archived"
    assert deployment.akool_jobs_for(video) == 1


def test_url_prints_a_presigned_link_that_downloads_the_video(deployment: Deployment) -> None:
    import requests

    job = deployment.run(video_url())
    done = lipsync(deployment, "url", job.id, "--expires", "600")

    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    assert "X-Amz-Signature" in link or "Signature" in link
    assert requests.get(link, timeout=30).content[:16]  # streamed back from the S3 server


def test_submit_wait_prints_each_status_change_until_archived(deployment: Deployment) -> None:
    done = lipsync(deployment, "submit", video_url(polls=2), AUDIO_URL, "--wait")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(": processing" in line for line in lines)
    assert ": archived to s3://" in lines[-1]


def test_jobs_and_jobs_at_risk_skip_records_that_cannot_be_read(deploy) -> None:
    deployment: Deployment = deploy()
    plant_bad_records(deployment.redis)
    job = deployment.run(video_url())

    listed = lipsync(deployment, "jobs")
    at_risk = lipsync(deployment, "jobs", "--at-risk")

    assert listed.returncode == 0, listed.stderr
    assert job.id in listed.stdout
    assert at_risk.returncode == 0, at_risk.stderr
    assert "Traceback" not in listed.stderr + at_risk.stderr
