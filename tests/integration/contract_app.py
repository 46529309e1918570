"""Application code for the caller's contract tests: the public API (`worker`) called from
processes of their own with a deployment's environment, as an application would call it,
and what those calls answered, as JSON.

Only tests/integration/test_contract*.py use it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from tests.integration.conftest import Deployment
from worker.dev.stack import BUCKET
from worker.store import keys

# Runs each call of its JSON argument ([name, args, kwargs]) on the `worker` package in
# order and prints one answer per call: {"value": ...}, {"job": record} for a Job, or
# {"raised": class name, "message": ..., "key": ..., "job_id": ...} for an exception.
CALLS = """
import json, sys
import worker

def answer(name, args, kwargs):
    try:
        value = getattr(worker, name)(*args, **kwargs)
    except Exception as e:
        return {"raised": type(e).__name__, "message": str(e),
                "key": getattr(e, "key", None), "job_id": getattr(e, "job_id", None)}
    return {"job": value.to_dict()} if hasattr(value, "to_dict") else {"value": value}

print(json.dumps([answer(*call) for call in json.loads(sys.argv[1])]))
"""

# Waits until every one of N processes is ready (a Redis counter), then submits at once:
# argv is the barrier's key, N, then submit_lipsync's keyword arguments as JSON. A bounded
# wait (60 s): twenty interpreters starting on a busy machine take a while.
RACE = """
import json, sys, time
from worker import deps, submit_lipsync
barrier, count, kwargs = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
client = deps.redis_client()
deps.job_store()  # connected and ready: only the submit is left for after the barrier
client.incr(barrier)
for _ in range(12000):
    if int(client.get(barrier) or 0) >= count:
        break
    time.sleep(0.005)
print(submit_lipsync(**kwargs))
"""

# How each job ended as Celery's result backend tells it: argv holds job ids; one answer
# per job, {"value": the result} or {"raised": class, "module": ..., "message": ...}.
RESULTS = """
import json, sys
from worker.celery_app import app

def answer(job_id):
    try:
        return {"value": app.AsyncResult(job_id).get(timeout=60)}
    except Exception as e:
        kind = type(e)
        return {"raised": kind.__name__, "module": kind.__module__, "message": str(e)}

print(json.dumps([answer(job_id) for job_id in sys.argv[1:]]))
"""

Call = tuple[str, list[Any], dict[str, Any]]


def call(name: str, *args: Any, **kwargs: Any) -> Call:
    """One call of the public API, e.g. call("cancel_job", job_id)."""
    return (name, list(args), kwargs)


def start_python(deployment: Deployment, code: str, *args: str) -> subprocess.Popen[str]:
    """`code` in a process of its own with the deployment's environment, left running (a
    call that waits); read its output with `last_line`."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=deployment.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def last_line(process: subprocess.Popen[str], timeout: float = 90) -> str:
    """The last line a process `start_python` started printed, once it exited with 0."""
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err[-3000:]
    return out.strip().splitlines()[-1]


def run_python(deployment: Deployment, code: str, *args: str) -> str:
    """Run `code` in a process of its own with the deployment's environment; its last line
    of output."""
    return last_line(start_python(deployment, code, *args))


def api(deployment: Deployment, *calls: Call) -> list[dict[str, Any]]:
    """What each call answered, made in order by one application process."""
    answers = json.loads(run_python(deployment, CALLS, json.dumps(calls)))
    assert isinstance(answers, list)
    return answers


def value(answer: dict[str, Any]) -> Any:
    """The value an answer holds (a job id, a record); fails the test if the call raised."""
    assert "raised" not in answer, answer
    return answer["job"] if "job" in answer else answer["value"]


def submit(deployment: Deployment, video: str, audio: str, **kwargs: Any) -> str:
    """submit_lipsync from an application process; the job id."""
    job_id = value(api(deployment, call("submit_lipsync", video, audio, **kwargs))[0])
    assert isinstance(job_id, str)
    return job_id


def cancel(deployment: Deployment, job_id: str) -> dict[str, Any]:
    """cancel_job from an application process; the record it returned."""
    record = value(api(deployment, call("cancel_job", job_id))[0])
    assert isinstance(record, dict)
    return record


def job_records(deployment: Deployment) -> set[str]:
    """The keys of every job record in the deployment's Redis."""
    return {k.decode() for k in deployment.redis.scan_iter(match=keys.JOB_PREFIX + "*")}


def stored_state(deployment: Deployment, *queues: str) -> tuple[Any, ...]:
    """What creating a job changes: the job records, the jobs index and the given queues."""
    index = deployment.redis.zrange(keys.JOBS_INDEX, 0, -1)
    lengths = tuple(deployment.redis.llen(queue) for queue in queues)
    return (job_records(deployment), tuple(index), lengths)


def object_key(deployment: Deployment, name: str) -> str:
    """The S3 key of an archive_key under the deployment's ARCHIVE_PREFIX."""
    return deployment.env["ARCHIVE_PREFIX"] + name


def objects_under(deployment: Deployment, prefix: str) -> list[str]:
    """The keys of the S3 objects under `prefix` in the archive bucket."""
    listed = deployment.stack.s3_client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def pending_uploads(deployment: Deployment, key: str) -> list[str]:
    """The ids of the multipart uploads still pending under `key`."""
    listed = deployment.stack.s3_client().list_multipart_uploads(Bucket=BUCKET, Prefix=key)
    return [u["UploadId"] for u in listed.get("Uploads", []) if u.get("Key") == key]


def akool_polls(deployment: Deployment, akool_id: str) -> int:
    """Polls of that Akool job the simulator answered (errors scripted for it included)."""
    return int(deployment.stack.simulator.job(akool_id)["polls"])


def lines(deployment: Deployment, *words: str) -> Iterator[str]:
    """The deployment's log lines holding every one of `words`."""
    for line in deployment.log_text().splitlines():
        if all(word in line for word in words):
            yield line


def start_api(deployment: Deployment, *calls: Call) -> subprocess.Popen[str]:
    """`api` in a process left running, read with `answers_of`."""
    return start_python(deployment, CALLS, json.dumps(calls))


def answers_of(process: subprocess.Popen[str], timeout: float = 90) -> list[dict[str, Any]]:
    """What the calls of a process `start_api` (or `start_python` of RESULTS) answered."""
    answers = json.loads(last_line(process, timeout))
    assert isinstance(answers, list)
    return answers
