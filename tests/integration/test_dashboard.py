"""The jobs dashboard over HTTP, served by the Procfile's web process on METRICS_PORT next to
a real worker, redis-server, S3 server and the simulator: sign-in, CSRF, where it answers
and where it does not; the caller's metadata on a job's page and as a filter, and Cancel;
and the poll log each job keeps, in a real Redis."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import requests

from tests.integration.conftest import (
    AUDIO_URL,
    Deployment,
    _deploy,
    procfile_worker_env,
    video_url,
)
from tests.integration.test_webhooks import start_receiver
from worker import messages
from worker.akool.client import AkoolStatus
from worker.contract import lipsync_request, queued_job
from worker.dev.stack import Process, RedisServer, Stack, free_port
from worker.pipeline import poll_step
from worker.status import JobStatus
from worker.store import keys
from worker.store.jobs import JobStore, new_job_id
from worker.store.records import POLL_LOG_ENTRIES, poll_log_entries
from worker.video_kinds import talking_photo_request

pytestmark = pytest.mark.integration

USER, PASSWORD = "ops", "dashboard-test-password"
# The CSRF token a job's page puts in its forms.
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
# The simulator refuses the submit with a permanent code once: the job fails, and a retry
# (which submits again: nothing was created at Akool) succeeds.
FAILS_ONCE = {"submit_code": 1204, "submit_code_times": 1}


@dataclass
class Dashboard:
    """A deployment and its web process, with the dashboard on METRICS_PORT."""

    deployment: Deployment
    web: Process
    port: int
    internal_port: int

    @property
    def base(self) -> str:
        """The internal port's root URL (no credentials)."""
        return f"http://127.0.0.1:{self.internal_port}"

    def get(self, path: str, auth: bool = True, **kwargs: Any) -> requests.Response:
        credentials = (USER, PASSWORD) if auth else None
        return requests.get(self.base + path, auth=credentials, timeout=10, **kwargs)

    def post(self, path: str, **form: str) -> requests.Response:
        """A signed-in form POST, its redirect not followed."""
        return requests.post(
            self.base + path, auth=(USER, PASSWORD), data=form, timeout=10, allow_redirects=False
        )


@contextlib.contextmanager
def dashboard_deployment(stack: Stack, **web_overrides: str) -> Iterator[Dashboard]:
    """A worker on a Redis database of its own and the Procfile's web process with PORT,
    METRICS_PORT and the dashboard's credentials (unless overridden); all stopped at the end."""
    deployment = _deploy(stack)
    port, internal_port = free_port(), free_port()
    env = dict(
        deployment.env,
        PORT=str(port),
        METRICS_PORT=str(internal_port),
        DASHBOARD_USER=USER,
        DASHBOARD_PASSWORD=PASSWORD,
    )
    env.update(web_overrides)
    env = {k: v for k, v in env.items() if v != ""}
    web = start_receiver(stack, procfile_worker_env(env), port)
    try:
        yield Dashboard(deployment, web, port, internal_port)
    finally:
        web.stop()
        deployment.stop()


@pytest.fixture(scope="module")
def dashboard(stack: Stack) -> Iterator[Dashboard]:
    with dashboard_deployment(stack) as running:
        yield running


@pytest.fixture(scope="module")
def failed_job(dashboard: Dashboard) -> str:
    job = dashboard.deployment.run(video_url(**FAILS_ONCE))
    assert job.status == JobStatus.FAILED, job
    return job.id


def test_without_credentials_the_pages_answer_401_with_a_basic_challenge(
    dashboard: Dashboard, failed_job: str
) -> None:
    for path in ("/jobs", f"/jobs/{failed_job}"):
        answer = dashboard.get(path, auth=False)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
        assert failed_job not in answer.text
    wrong = requests.get(dashboard.base + "/jobs", auth=(USER, "nope"), timeout=10)
    assert wrong.status_code == 401


def test_signed_in_the_jobs_page_lists_the_failed_job_with_its_error_and_strict_headers(
    dashboard: Dashboard, failed_job: str
) -> None:
    answer = dashboard.get("/jobs?status=failed")
    error = dashboard.deployment.store.get(failed_job).error or ""

    assert answer.status_code == 200
    assert failed_job in answer.text and "1204" in error
    assert error.replace("'", "&#39;") in answer.text or error in answer.text
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"
    assert dashboard.get(f"/jobs?q={failed_job[:6]}").text.count(failed_job) >= 1


def test_a_retry_without_the_csrf_token_is_refused_and_the_job_stays_failed(
    dashboard: Dashboard, failed_job: str
) -> None:
    url = f"{dashboard.base}/jobs/{failed_job}/retry"
    bare = requests.post(url, auth=(USER, PASSWORD), timeout=10, allow_redirects=False)
    forged = requests.post(
        url, auth=(USER, PASSWORD), data={"csrf": "1.abc"}, timeout=10, allow_redirects=False
    )

    assert bare.status_code == 403 and forged.status_code == 403
    time.sleep(1)
    assert dashboard.deployment.store.get(failed_job).status == JobStatus.FAILED


def test_nothing_of_the_dashboard_answers_on_the_public_port(
    dashboard: Dashboard, failed_job: str
) -> None:
    public = f"http://127.0.0.1:{dashboard.port}"
    for path in ("/jobs", f"/jobs/{failed_job}", "/", "/metrics"):
        for auth in (None, (USER, PASSWORD)):
            answer = requests.get(public + path, auth=auth, timeout=10)
            assert answer.status_code == 404, path
    assert dashboard.get("/metrics", auth=False).status_code == 200  # Prometheus signs in not


def test_with_the_settings_unset_the_pages_are_404_and_metrics_still_served(
    stack: Stack,
) -> None:
    with dashboard_deployment(stack, DASHBOARD_USER="", DASHBOARD_PASSWORD="") as off:
        assert off.get("/jobs").status_code == 404
        assert off.get(f"/jobs/{new_job_id()}", auth=False).status_code == 404
        assert "lipsync_jobs" in off.get("/metrics", auth=False).text


# --- the poll log, in a real Redis ----------------------------------------------------------


class ScriptedAkool:
    """Answers polls with the statuses given, then the last one forever."""

    def __init__(self, *statuses: int) -> None:
        self._statuses = list(statuses)

    def status(self, akool_id: str) -> AkoolStatus:
        status = self._statuses.pop(0) if len(self._statuses) > 1 else self._statuses[0]
        url = "https://akool.example.com/out.mp4" if status == 3 else None
        return AkoolStatus(akool_id, status, url)


def commands(client: redis.Redis) -> dict[str, int]:
    return {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in client.info("commandstats").items()
    }


def test_each_poll_is_counted_logged_and_recorded_in_one_script_and_the_log_is_bounded(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis(port=redis_server.port)
    store = JobStore(client, retention_seconds=40 * 86400)
    job_id = new_job_id()
    store.create(job_id, "https://v.example.com/a.mp4", "https://v.example.com/a.wav", due=0)
    store.update(job_id, status=JobStatus.SUBMITTED, akool_id="ak-1", submitted_ts=time.time())
    akool: Any = ScriptedAkool(1, 1, *([2] * 40), 3)

    poll_step(store, akool, job_id)  # the first poll: Akool says 1 (queued)
    poll_step(store, akool, job_id)  # 1 again: nothing changes
    before = commands(client)
    poll_step(store, akool, job_id)  # 2: a new status, logged with the status change
    changed = commands(client)
    poll_step(store, akool, job_id)  # 2 again: the same cost
    unchanged = commands(client)
    for _ in range(POLL_LOG_ENTRIES + 5):
        poll_step(store, akool, job_id)
    log = store.get(job_id).poll_log
    while store.get(job_id).status != JobStatus.ARCHIVING:
        poll_step(store, akool, job_id)
    done = store.get(job_id)

    def delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: b[k] - a.get(k, 0) for k in b if b[k] != a.get(k, 0) and k != "info"}

    # One read and one script (which counts the poll, logs it with Akool's answer and
    # writes what changed; the commands inside the script are counted too), whether the
    # status changes or not.
    for poll in (delta(changed, unchanged), delta(before, changed)):
        assert poll["hgetall"] == 1 and poll["evalsha"] == 1
    entries = poll_log_entries(log)
    assert len(entries) == POLL_LOG_ENTRIES
    assert {status for _, status in entries} == {"2"}
    assert poll_log_entries(done.poll_log)[-1][1] == "3"
    assert len(poll_log_entries(done.poll_log)) == POLL_LOG_ENTRIES
    assert done.polls > POLL_LOG_ENTRIES
    # A full log costs its job about 7 bytes a poll.
    assert len(done.poll_log or "") <= POLL_LOG_ENTRIES * 8
    assert client.exists(keys.job(job_id))


def test_jobs_at_risk_come_first_and_in_red(dashboard: Dashboard) -> None:
    # A job record alone (no task: no beat runs here), whose video Akool deletes in an hour.
    store, job_id = dashboard.deployment.store, new_job_id()
    store.create(job_id, "https://v.example.com/r.mp4", "https://v.example.com/r.wav", due=0)
    store.update(job_id, status=JobStatus.PROCESSING, expires_ts=time.time() + 3600)
    page = dashboard.get("/jobs").text

    assert 'id="at-risk"' in page
    assert page.index(job_id) < page.index('id="jobs"')
    assert 'class="risk-table"' in page


# --- the caller's contract: metadata, and Cancel --------------------------------------------


def queued_record(dashboard: Dashboard, **contract: Any) -> str:
    """A queued job's record as submit_lipsync stores it, alone: no task is enqueued (and no
    beat runs here), so it stays queued until something ends it."""
    request = lipsync_request(video_url(), AUDIO_URL, **contract)
    job = queued_job(request, new_job_id(), now=time.time())
    return dashboard.deployment.store.insert(job, due=time.time() + 3600)


def test_a_cancel_needs_the_pages_token_then_cancels_the_queued_job_once(
    dashboard: Dashboard,
) -> None:
    store, job_id = dashboard.deployment.store, queued_record(dashboard)
    path = f"/jobs/{job_id}/cancel"

    assert dashboard.post(path).status_code == 403
    assert dashboard.post(path, csrf="1.abc").status_code == 403
    assert store.get(job_id).status == JobStatus.QUEUED
    page = dashboard.get(f"/jobs/{job_id}").text
    assert 'id="cancel"' in page
    match = CSRF_FIELD.search(page)
    assert match is not None
    token = match.group(1)

    done = dashboard.post(path, csrf=token)
    assert done.status_code == 303
    assert done.headers["Location"] == f"/jobs/{job_id}?cancelled=1"
    cancelled = store.get(job_id)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.error == messages.CANCELLED
    # Its ending is in the result backend, as every ending is.
    meta = json.loads(dashboard.deployment.redis.get(keys.result(job_id)) or "{}")
    assert meta["status"] == "FAILURE" and meta["result"]["exc_type"] == "JobCancelled"
    shown = dashboard.get(done.headers["Location"]).text
    assert 'id="status">cancelled</span>' in shown and 'id="cancel"' not in shown
    assert job_id in dashboard.get("/jobs?status=cancelled").text

    again = dashboard.post(path, csrf=token)
    assert again.status_code == 409 and "already ended (cancelled)" in again.text
    left = store.get(job_id)  # a notification's bookkeeping may land meanwhile: not compared
    assert (left.status, left.error, left.updated_ts) == (
        JobStatus.CANCELLED,
        cancelled.error,
        cancelled.updated_ts,
    )
    assert dashboard.post(f"/jobs/{new_job_id()}/cancel", csrf=token).status_code == 404


def test_a_jobs_page_shows_its_callers_metadata_escaped_and_the_list_filters_by_it(
    dashboard: Dashboard,
) -> None:
    hostile = "<script>alert(1)</script>"
    batch = f"b-{new_job_id()[:8]}"
    mine = queued_record(
        dashboard,
        metadata={"client": hostile, "batch": batch},
        idempotency_key=f"order-{batch}",
        archive_key=f"clients/{batch}/take 1.mp4",
    )
    other = queued_record(dashboard, metadata={"client": "acme", "batch": batch})

    page = dashboard.get(f"/jobs/{mine}").text
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f'id="idempotency-key">order-{batch}</dd>' in page
    assert f'<code id="archive-key">lipsync/clients/{batch}/take 1.mp4</code>' in page

    def listed(meta: str) -> str:
        return dashboard.get("/jobs", params={"meta": meta}).text.split('id="jobs"')[1]

    assert mine in listed(f"client={hostile}") and other not in listed(f"client={hostile}")
    assert mine in listed(f"batch={batch}") and other in listed(f"batch={batch}")
    assert mine not in listed("client=acme") and other in listed("client=acme")
    assert "A metadata filter is key=value" in dashboard.get("/jobs?meta=client").text
    assert '<option value="cancelled"' in dashboard.get("/jobs").text


# --- Akool's video kinds ----------------------------------------------------------------------


def test_the_jobs_list_shows_and_filters_by_kind_and_a_jobs_page_shows_its_akool_body(
    dashboard: Dashboard,
) -> None:
    hostile = "<script>alert('prompt')</script>"
    request = talking_photo_request(video_url(), AUDIO_URL, prompt=hostile)
    photo = dashboard.deployment.store.insert(
        queued_job(request, new_job_id(), now=time.time()), due=time.time() + 3600
    )
    plain = queued_record(dashboard)

    def listed(**params: str) -> str:
        return dashboard.get("/jobs", params=params).text.split('id="jobs"')[1]

    everything = listed()
    assert photo in everything and plain in everything
    assert '<td class="kind">talking_photo</td>' in everything
    assert photo in listed(kind="talking_photo") and plain not in listed(kind="talking_photo")
    assert plain in listed(kind="lipsync") and photo not in listed(kind="lipsync")
    assert photo not in listed(kind="talking_photo", status="failed")
    assert plain in listed(kind="no-such-kind")  # an unknown kind filters nothing
    assert '<option value="character_swap"' in dashboard.get("/jobs").text

    page = dashboard.get(f"/jobs/{photo}").text
    assert '<span class="status" id="kind">talking_photo</span>' in page
    body = page.split('<pre id="akool-body">')[1].split("</pre>")[0]
    assert "talking_photo_url" in body and hostile not in page
    assert "&lt;script&gt;alert(&#39;prompt&#39;)&lt;/script&gt;" in body
