"""The `lipsync` console script, run as a user would, against the real stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import AUDIO_URL, Deployment, video_url

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
