"""Being told when a job ends, waiting for it, and re-driving it: application code and the
operator's retry run in processes of their own, next to a real worker."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    AUDIO_URL,
    Deployment,
    procfile_worker_argv,
    procfile_worker_env,
    video_url,
)
from tests.postsink import PostSink, post_sink
from worker.dev.demo import WORKER_LINES
from worker.dev.stack import start_workers, wait_until
from worker.store import keys

ROOT = Path(__file__).resolve().parents[2]
# Sweeps every second, so a notification left by a dead worker goes out within seconds.
FAST_SWEEPS = {"SWEEP_INTERVAL_SECONDS": "1", "STALL_SECONDS": "3"}

pytestmark = pytest.mark.integration

SUBMIT_WITH_EXTRAS = """
import sys
from celery import signature
from worker import submit_lipsync
video, queue, notify_url = sys.argv[1:4]
on_complete = signature("app.done", args=("extra",), queue=queue) if queue else None
print(submit_lipsync(video, sys.argv[4], on_complete=on_complete, notify_url=notify_url or None))
"""
SUBMIT_AND_WAIT = """
import sys
from worker import submit_lipsync, wait_for_job
job = wait_for_job(submit_lipsync(sys.argv[1], sys.argv[2]), timeout=float(sys.argv[3]))
print(job.status)
"""
WAIT = """
import sys
from worker import wait_for_job
try:
    wait_for_job(sys.argv[1], timeout=float(sys.argv[2]))
except (TimeoutError, KeyError) as e:
    print(type(e).__name__, e)
"""
RETRY = """
import sys
from worker.tasks import retry_job
try:
    print(retry_job(sys.argv[1]))
except ValueError as e:
    print("ValueError", e)
"""


def python(deployment: Deployment, code: str, *args: str) -> str:
    """Run `code` in a process of its own with the deployment's settings; its last line."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def submit(deployment: Deployment, video: str, *, queue: str = "", notify_url: str = "") -> str:
    return python(deployment, SUBMIT_WITH_EXTRAS, video, queue, notify_url, AUDIO_URL)


@pytest.fixture
def endpoint() -> Iterator[tuple[str, type[PostSink]]]:
    with post_sink("/lipsync-done?token=t") as sink:
        yield sink


def messages(deployment: Deployment, queue: str, count: int) -> list[dict[str, Any]]:
    """The first `count` Celery messages published to `queue` (nobody consumes it)."""
    wait_until(lambda: deployment.redis.llen(queue) >= count, 30, f"{count} on {queue}")
    raw = deployment.redis.lrange(queue, 0, -1)
    out = []
    for item in raw:
        message = json.loads(item)
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        out.append({"task": message["headers"]["task"], "args": args, "kwargs": kwargs})
    return out


# --- wait_for_job ------------------------------------------------------------------------------


def test_wait_for_job_returns_once_the_job_is_archived(deployment: Deployment) -> None:
    assert python(deployment, SUBMIT_AND_WAIT, video_url(polls=2), AUDIO_URL, "60") == "archived"


def test_wait_for_job_raises_timeout_error_when_the_job_is_not_done_in_time(
    deployment: Deployment,
) -> None:
    job_id = deployment.submit(video_url(seconds=30))

    assert python(deployment, WAIT, job_id, "0.5").startswith("TimeoutError")


def test_wait_for_job_raises_key_error_for_an_unknown_job(deployment: Deployment) -> None:
    assert python(deployment, WAIT, uuid.uuid4().hex, "5").startswith("KeyError")


# --- on_complete and notify_url ------------------------------------------------------------------


def test_on_complete_signature_is_called_with_the_job_id_when_archived(
    deployment: Deployment,
) -> None:
    queue = f"app-events-{uuid.uuid4().hex}"
    job = deployment.wait(submit(deployment, video_url(polls=1), queue=queue))

    assert job.status == "archived", job.error
    assert messages(deployment, queue, 1) == [
        {"task": "app.done", "args": [job.id, "extra"], "kwargs": {}}
    ]


def test_notify_url_receives_the_archived_job_record_after_a_busy_answer(
    deployment: Deployment, endpoint: tuple[str, type[PostSink]]
) -> None:
    url, app = endpoint
    app.answers.append(503)
    job = deployment.wait(submit(deployment, video_url(polls=1), notify_url=url))

    wait_until(lambda: len(app.bodies) >= 2, 30, "the record posted twice")
    assert [r["id"] for r in app.bodies] == [job.id, job.id]
    assert app.bodies[-1]["status"] == "archived"
    assert app.bodies[-1]["archive_uri"] == job.archive_uri


def test_a_failed_job_is_announced_on_both_channels(
    deployment: Deployment, endpoint: tuple[str, type[PostSink]]
) -> None:
    url, app = endpoint
    queue = f"app-events-{uuid.uuid4().hex}"
    job = deployment.wait(submit(deployment, video_url(final=4), queue=queue, notify_url=url))

    assert job.status == "failed"
    assert messages(deployment, queue, 1)[0]["args"] == [job.id, "extra"]
    wait_until(lambda: len(app.bodies) >= 1, 30, "the record posted")
    assert app.bodies[0]["status"] == "failed"
    assert "video_status 4" in app.bodies[0]["error"]


# --- retry_job ---------------------------------------------------------------------------------


def test_retry_submits_a_job_that_failed_before_akool_created_it(deployment: Deployment) -> None:
    video = video_url(submit_code=1204, submit_code_times=1)
    failed = deployment.run(video)
    assert failed.status == "failed" and "1204" in (failed.error or "")

    assert python(deployment, RETRY, failed.id) == "submit"
    job = deployment.wait(failed.id)

    assert job.status == "archived", job.error
    assert job.error is None
    assert deployment.akool_jobs_for(video) == 1


def test_retry_polls_a_job_that_failed_while_akool_worked_on_it_and_never_submits_again(
    deployment: Deployment, endpoint: tuple[str, type[PostSink]]
) -> None:
    url, app = endpoint
    video = video_url(seconds=3)
    job_id = submit(deployment, video, notify_url=url)
    wait_until(lambda: deployment.store.get(job_id).akool_id is not None, 30, "submitted")
    deployment.store.fail(job_id, "stopped by a test, as an outage would")
    # As if that failure had been announced: the retried job's ending must be announced anew.
    deployment.redis.hset(keys.job(job_id), "notified_ts", "1")

    assert python(deployment, RETRY, job_id) == "poll"
    job = deployment.wait(job_id)

    assert job.status == "archived", job.error
    assert job.error is None
    assert deployment.submits_for(video) == 1
    wait_until(lambda: len(app.bodies) >= 1, 30, "the archive announced")
    assert app.bodies[0]["status"] == "archived"


def test_retry_refuses_a_job_whose_submit_may_have_created_an_akool_job(
    deployment: Deployment,
) -> None:
    video = video_url(submit_http=502, submit_http_after_create=1)
    failed = deployment.run(video)

    answer = python(deployment, RETRY, failed.id)

    assert answer.startswith("ValueError") and "outcome is unknown" in answer
    assert deployment.store.get(failed.id).status == "failed"
    assert deployment.submits_for(video) == 1


# --- exactly one notification, whatever dies when ----------------------------------------------


def start_crashing_worker(deployment: Deployment, marker: Path) -> None:
    """Replace the deployment's workers with ones that die right after a final write (the
    archive's final write is the archive worker's)."""
    deployment.stop_workers()
    env = procfile_worker_env(
        {**deployment.env, "CRASH_MARKER": str(marker), "PYTHONPATH": str(ROOT)}
    )
    commands = {}
    for line in WORKER_LINES:
        node, argv = procfile_worker_argv(f"crash-{deployment.name}", line)
        commands[node] = [
            "tests.integration.crash_app" if a == "worker.celery_app" else a for a in argv
        ]
    deployment.workers = start_workers(deployment.stack.directory, env, commands)


@pytest.mark.parametrize(
    ("video", "ending"), [({"final": 4}, "failed"), ({"polls": 1}, "archived")]
)
def test_a_worker_killed_right_after_a_job_ends_still_announces_it_exactly_once(
    deploy, endpoint: tuple[str, type[PostSink]], tmp_path: Path, video: dict[str, Any], ending: str
) -> None:
    deployment: Deployment = deploy(beat=True, **FAST_SWEEPS)
    start_crashing_worker(deployment, tmp_path / "crashed")
    url, app = endpoint
    queue = f"app-events-{uuid.uuid4().hex}"

    job = deployment.wait(submit(deployment, video_url(**video), queue=queue, notify_url=url))

    assert job.status == ending
    wait_until(lambda: (tmp_path / "crashed").exists(), 30, "the worker to die")
    wait_until(lambda: len(app.bodies) >= 1, 60, "the ending posted")
    wait_until(lambda: deployment.redis.llen(queue) >= 1, 60, "on_complete sent")
    time.sleep(3)  # time for a duplicate to show up, if there were one
    assert [body["status"] for body in app.bodies] == [ending]
    assert [m["args"][0] for m in messages(deployment, queue, 1)] == [job.id]
    assert deployment.redis.llen(queue) == 1
    assert not deployment.store.outbox.pending(job.id)


def test_a_loopback_notify_url_is_refused_by_default_and_the_job_is_archived_anyway(
    deploy, endpoint: tuple[str, type[PostSink]]
) -> None:
    deployment: Deployment = deploy(NOTIFY_ALLOWED_HOSTS="*")
    url, app = endpoint

    job = deployment.wait(submit(deployment, video_url(polls=1), notify_url=url))

    assert job.status == "archived", job.error
    wait_until(lambda: deployment.store.get(job.id).notify_error, 30, "the refusal recorded")
    time.sleep(1)
    assert app.bodies == []
    assert "NOTIFY_ALLOWED_HOSTS" in (deployment.store.get(job.id).notify_error or "")
    assert not deployment.store.outbox.pending(job.id)


def test_a_loopback_notify_url_listed_exactly_gets_exactly_one_post(
    deploy, endpoint: tuple[str, type[PostSink]]
) -> None:
    deployment: Deployment = deploy(NOTIFY_ALLOWED_HOSTS="127.0.0.1")
    url, app = endpoint

    job = deployment.wait(submit(deployment, video_url(polls=1), notify_url=url))

    assert job.status == "archived", job.error
    wait_until(lambda: len(app.bodies) >= 1, 30, "the record posted")
    time.sleep(1)
    assert [body["id"] for body in app.bodies] == [job.id]
    assert deployment.store.get(job.id).notified_ts is not None
