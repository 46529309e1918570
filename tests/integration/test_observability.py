"""Metrics in Prometheus format and JSON logs, from a real worker after real jobs."""

from __future__ import annotations

import json

import pytest
import requests

from tests.integration.conftest import Deployment, video_url
from worker.dev.stack import free_port, wait_until

pytestmark = pytest.mark.integration


def scrape(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample line, e.g. sample(text, "lipsync_jobs", status="archived")."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {prefix!r} in:\n{text}")


def test_worker_serves_fleet_metrics_after_jobs(deploy) -> None:
    port = free_port()
    deployment: Deployment = deploy(METRICS_PORT=str(port))
    archived = deployment.run(video_url(polls=1))
    deployment.run(video_url(final=4))
    wait_until(lambda: "lipsync_jobs" in scrape(port), 20, "the metrics endpoint")

    text = scrape(port)
    assert archived.status == "archived"
    assert sample(text, "lipsync_jobs", status="archived") == 1
    assert sample(text, "lipsync_jobs", status="failed") == 1
    assert sample(text, "lipsync_akool_calls_total", endpoint="submit", outcome="ok") == 2
    assert sample(text, "lipsync_akool_calls_total", endpoint="status", outcome="ok") >= 2
    assert sample(text, "lipsync_archive_bytes_total") == archived.archive_bytes
    assert sample(text, "lipsync_archives_total") == 1
    assert sample(text, "lipsync_completion_to_archived_seconds_count") == 1
    assert sample(text, "lipsync_jobs_at_risk") == 0
    assert sample(text, "lipsync_oldest_unarchived_finished_video_age_seconds") == 0
    # Both jobs ended: no poll waits, and the worker left nothing in its queues.
    assert sample(text, "lipsync_polls_waiting") == 0
    assert sample(text, "lipsync_queue_length", queue="lipsync.akool") == 0
    assert sample(text, "lipsync_queue_length", queue="lipsync.archive") == 0


def test_akool_errors_are_counted_by_code(deploy) -> None:
    port = free_port()
    deployment: Deployment = deploy(METRICS_PORT=str(port))
    deployment.run(video_url(submit_code=1204))
    wait_until(lambda: "lipsync_jobs" in scrape(port), 20, "the metrics endpoint")

    text = scrape(port)
    assert sample(text, "lipsync_akool_calls_total", endpoint="submit", outcome="code_1204") == 1


def test_json_logs_carry_the_job_id_on_every_line_of_a_job(deploy) -> None:
    deployment: Deployment = deploy(LOG_FORMAT="json")
    job = deployment.run(video_url(polls=2))

    lines = [
        json.loads(line) for line in deployment.log_text().splitlines() if line.startswith("{")
    ]
    mine = [line for line in lines if job.id in line["message"]]
    assert len(mine) >= 4  # submitted, polls, finished, archived
    assert all(line.get("job_id") == job.id for line in mine if "Task " not in line["message"])
    assert {"ts", "level", "logger", "message"} <= set(lines[0])
