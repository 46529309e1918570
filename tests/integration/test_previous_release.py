"""Messages and records written by the previous release run on this one.

A fleet is upgraded with messages still queued: submits waiting in `lipsync.akool`, poll
countdowns, archives in `lipsync.archive`. Those messages name their tasks and queues by
string and carry the job id (and, on a retried submit or poll, `reserved_at`) as the
previous release sent them, and the job records they point to were written by it. Here they
are published by name from a process that never imports `worker.tasks`, so only the names,
the argument shapes and the record format tie them to this release.
"""

from __future__ import annotations

import json
import time

from tests.integration.conftest import AUDIO_URL, Deployment, video_url
from worker.status import QUEUED_STALL_SECONDS, JobStatus
from worker.store import new_job_id

# Publishes the chain the previous release's submit_lipsync enqueued, by names alone, from
# a Celery app that knows nothing of this package: only the broker and JSON messages.
PUBLISH_BY_NAME = """
import json, os, sys
from celery import Celery, chain, signature

app = Celery(broker=os.environ["REDIS_URL"], set_as_current=False)
app.conf.task_serializer = "json"
job_id, first_kwargs = sys.argv[1], json.loads(sys.argv[2])
chain(
    signature("lipsync.submit", args=[job_id], kwargs=first_kwargs, queue="lipsync.akool", app=app),
    signature("lipsync.poll", queue="lipsync.akool", app=app),
    signature("lipsync.archive", queue="lipsync.archive", app=app),
).apply_async()
assert not any(name == "worker" or name.startswith("worker.") for name in sys.modules)
"""


def stored_as_before(deployment: Deployment, video: str) -> str:
    """A queued job's record, written with the fields the previous release wrote."""
    job_id = new_job_id()
    deployment.store.create(job_id, video, AUDIO_URL, due=time.time() + QUEUED_STALL_SECONDS)
    return job_id


def test_a_submit_chain_enqueued_by_name_as_the_previous_release_did_archives_the_job(
    deployment: Deployment,
) -> None:
    video = video_url(seconds=1, polls=1)
    job_id = stored_as_before(deployment, video)
    deployment.python(PUBLISH_BY_NAME, job_id, json.dumps({}))
    job = deployment.wait(job_id)
    assert job.status == JobStatus.ARCHIVED, job.error
    assert deployment.akool_jobs_for(video) == 1
    served = deployment.stack.simulator.job(job.akool_id or "")
    assert deployment.stored_sha256(job) == served["sha256"]


def test_a_retried_submit_carrying_its_reserved_slot_as_before_still_runs(
    deployment: Deployment,
) -> None:
    video = video_url(seconds=1, polls=1)
    job_id = stored_as_before(deployment, video)
    deployment.python(PUBLISH_BY_NAME, job_id, json.dumps({"reserved_at": None}))
    job = deployment.wait(job_id)
    assert job.status == JobStatus.ARCHIVED, job.error
    assert deployment.akool_jobs_for(video) == 1
