"""Akool's webhook end to end: the simulator sends real encrypted, signed callbacks to the
receiver started from the Procfile's `web:` line, next to a real worker.

Polls are 30 s apart here and the simulated jobs keep answering status 2 to polls, so only
the callback can explain a job that completes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.conftest import Deployment, _deploy, procfile_worker_env, video_url
from worker.akool.crypto import signed_callback
from worker.akool.reconcile import callback_url
from worker.clock import wall_clock_ms
from worker.dev.demo import procfile_argv
from worker.dev.simulator import Simulator, SimulatorConfig
from worker.dev.stack import SIM_API_KEY, Process, Stack, free_port, wait_until
from worker.status import JobStatus
from worker.store import keys
from worker.web.app import CALLBACK_PATH, HEALTH_PATH

pytestmark = pytest.mark.integration

CLIENT_ID = "hook-client-id"  # 14 bytes: the IV is padded with spaces
CLIENT_SECRET = "0123456789abcdef0123456789abcdef"  # AES-256
SIZE = 300_000
# Far longer than any wait below: a job that completes did so through its callback.
NEVER_DONE_BY_POLLING = {"polls": 1000}


class Hooked:
    """A deployment whose Akool (an in-process simulator) calls back our receiver."""

    def __init__(
        self,
        deployment: Deployment,
        sim: Simulator,
        receiver: Process,
        url: str,
        metrics_port: int,
    ):
        self.deployment = deployment
        self.sim = sim
        self.receiver = receiver
        self.url = url
        # The web process's private metrics port (METRICS_PORT), on loopback.
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    @property
    def port(self) -> int:
        """The web process's public port ($PORT)."""
        return urlsplit(self.url).port or 0

    def post(self, body: dict[str, Any]) -> requests.Response:
        return requests.post(self.url, json=body, timeout=10)

    def callback(
        self, akool_id: str, status: int, callback_type: str = "lipsync", **extra: Any
    ) -> dict[str, Any]:
        """A correctly signed and encrypted callback, as Akool would send it."""
        payload = {"_id": akool_id, "status": status, "type": callback_type, "url": ""}
        if status == 3:
            payload["url"] = f"{self.sim.base_url}/files/{akool_id}.mp4"
        extra.setdefault("timestamp_ms", wall_clock_ms())
        return signed_callback(payload, CLIENT_ID, CLIENT_SECRET, **extra)

    def submitted(self, video: str, kind: str = "lipsync") -> tuple[str, str]:
        """Submit a job of `kind` (`video` scripts the simulator); return our id and Akool's
        once the webhook can find the job."""
        job_id = self.deployment.submit_kind(kind, video)
        redis = self.deployment.redis

        def indexed() -> bool:
            akool_id = self.deployment.store.get(job_id).akool_id
            return bool(akool_id and redis.get(keys.AKOOL_INDEX_PREFIX + akool_id))

        wait_until(indexed, 30, f"job {job_id} submitted")
        return job_id, self.deployment.store.get(job_id).akool_id or ""

    def sim_job(self, akool_id: str) -> dict[str, Any]:
        job = self.sim.state.get_job(akool_id)
        assert job is not None
        return self.sim.state.job_info(job)


def start_receiver(stack: Stack, env: dict[str, str], port: int) -> Process:
    """The Procfile's web line, on loopback only."""
    argv = procfile_argv("web")
    assert argv is not None, "the Procfile has no web line"
    log = stack.directory / f"webhook-{port}.log"
    process = Process("webhook", [*argv, "--host", "127.0.0.1"], log, env=env).start()
    health = f"http://127.0.0.1:{port}{HEALTH_PATH}"
    wait_until(lambda: requests.get(health, timeout=1).ok, 30, "the webhook receiver")
    return process


@contextlib.contextmanager
def hooked_deployment(stack: Stack, *, beat: bool = False, **overrides: str) -> Iterator[Hooked]:
    """A simulator, a worker (and beat, when asked) and the Procfile's web process (with
    METRICS_PORT) wired together on loopback, with settings `overrides`; all stopped at the
    end."""
    config = SimulatorConfig(
        api_key=SIM_API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, default_size=SIZE
    )
    sim = Simulator(config).start()
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
    deployment = _deploy(
        stack,
        beat=beat,
        AKOOL_BASE_URL=sim.base_url,
        AKOOL_CLIENT_ID=CLIENT_ID,
        AKOOL_CLIENT_SECRET=CLIENT_SECRET,
        AKOOL_WEBHOOK_URL=url,
        **{"POLL_INITIAL_SECONDS": "30", "POLL_MAX_SECONDS": "60", **overrides},
    )
    web_env = dict(deployment.env, PORT=str(port), METRICS_PORT=str(metrics_port))
    receiver = start_receiver(stack, procfile_worker_env(web_env), port)
    try:
        yield Hooked(deployment, sim, receiver, url, metrics_port)
    finally:
        receiver.stop()
        deployment.stop()
        sim.stop()


@pytest.fixture(scope="module")
def hooked(stack: Stack) -> Iterator[Hooked]:
    with hooked_deployment(stack) as running:
        yield running


def test_completion_callback_archives_the_job_without_waiting_for_a_poll(
    hooked: Hooked,
) -> None:
    job = hooked.deployment.run(video_url(seconds=1, **NEVER_DONE_BY_POLLING))

    assert job.status == "archived", job.error
    served = hooked.sim_job(job.akool_id or "")
    assert served["status"] in (1, 2)  # what a poll would still say
    assert served["webhook_answers"] == [200]
    assert served["downloads"] == 1
    assert hooked.deployment.stored_sha256(job) == served["sha256"]
    sent = hooked.sim.state.get_job(job.akool_id or "")
    # Our receiver, naming the job and its token (see test_submit_reconcile.py).
    assert sent is not None and sent.webhook_url == callback_url(
        hooked.url, job.id, hooked.deployment.store.get(job.id).webhook_token or ""
    )


def test_status_4_callback_fails_the_job(hooked: Hooked) -> None:
    job = hooked.deployment.run(video_url(seconds=1, final=4, **NEVER_DONE_BY_POLLING))

    assert job.status == "failed"
    assert "video_status 4" in (job.error or "")
    assert hooked.sim_job(job.akool_id or "")["webhook_answers"] == [200]


def test_a_talking_photo_is_archived_from_its_callback_without_waiting_for_a_poll(
    hooked: Hooked,
) -> None:
    job_id = hooked.deployment.submit_kind(
        "talking_photo", video_url(seconds=1, **NEVER_DONE_BY_POLLING)
    )
    job = hooked.deployment.wait(job_id)

    assert job.status == "archived", job.error
    served = hooked.sim_job(job.akool_id or "")
    assert (served["kind"], job.kind) == ("talking_photo", "talking_photo")
    assert served["status"] in (1, 2)  # what a poll would still say
    assert served["webhook_answers"] == [200]  # its callback, of type "talking photo"
    assert served["downloads"] == 1
    assert hooked.deployment.stored_sha256(job) == served["sha256"]


@pytest.mark.parametrize("callback_type", ["lipsync", "character swap"])
def test_a_callback_whose_type_is_not_the_jobs_kind_leaves_the_job_as_it_was(
    hooked: Hooked, callback_type: str
) -> None:
    video = video_url(seconds=600, webhook=0, **NEVER_DONE_BY_POLLING)
    job_id, akool_id = hooked.submitted(video, "talking_photo")
    before = hooked.deployment.store.get(job_id)

    answer = hooked.post(hooked.callback(akool_id, 3, callback_type))

    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "outcome": "unknown-job"}
    after = hooked.deployment.store.get(job_id)
    assert after.status in (JobStatus.SUBMITTED, JobStatus.PROCESSING)
    assert (after.result_url, after.poll_owner) == (None, before.poll_owner)
    assert hooked.sim_job(akool_id)["downloads"] == 0
    assert f"callback of type {callback_type} for job {job_id}" in hooked.receiver.log_text()
    # The same news under the job's own type is taken: only the type was wrong.
    right = hooked.post(hooked.callback(akool_id, 3, "talking photo"))
    assert right.json() == {"ok": True, "outcome": "archiving"}
    assert hooked.deployment.wait(job_id).status == "archived"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body: {**body, "signature": "0" * 40}, id="bad-signature"),
        pytest.param(lambda body: {**body, "nonce": "other"}, id="nonce-changed"),
    ],
)
def test_a_forged_callback_is_refused_and_changes_nothing(hooked: Hooked, forge: Any) -> None:
    job_id, akool_id = hooked.submitted(video_url(seconds=600, webhook=0, **NEVER_DONE_BY_POLLING))
    before = hooked.deployment.store.get(job_id)

    answer = hooked.post(forge(hooked.callback(akool_id, 3)))

    assert answer.status_code == 401
    after = hooked.deployment.store.get(job_id)
    # Its polls go on meanwhile (a poll may see "processing"), but nothing is archived.
    assert after.status in (JobStatus.SUBMITTED, JobStatus.PROCESSING)
    assert (after.result_url, after.poll_owner) == (None, before.poll_owner)
    assert hooked.sim_job(akool_id)["downloads"] == 0


def test_a_stale_callback_is_refused_and_changes_nothing(hooked: Hooked) -> None:
    job_id, akool_id = hooked.submitted(video_url(seconds=600, webhook=0, **NEVER_DONE_BY_POLLING))
    an_hour_ago = int((time.time() - 3600) * 1000)

    answer = hooked.post(hooked.callback(akool_id, 3, timestamp_ms=an_hour_ago))

    assert answer.status_code == 401
    assert "WEBHOOK_MAX_AGE_SECONDS" in answer.json()["error"]
    assert hooked.deployment.store.get(job_id).result_url is None
    assert hooked.sim_job(akool_id)["downloads"] == 0


def test_a_replayed_callback_is_refused(hooked: Hooked) -> None:
    job_id, akool_id = hooked.submitted(video_url(seconds=600, webhook=0, **NEVER_DONE_BY_POLLING))
    progress = hooked.callback(akool_id, 2)
    assert hooked.post(progress).json() == {"ok": True, "outcome": "noted"}
    assert hooked.post(progress).status_code == 401

    done = hooked.callback(akool_id, 3)
    assert hooked.post(done).json() == {"ok": True, "outcome": "archiving"}
    job = hooked.deployment.wait(job_id)
    assert hooked.post(done).status_code == 401

    assert job.status == "archived", job.error
    assert hooked.sim_job(akool_id)["downloads"] == 1


def test_a_second_completion_callback_starts_no_second_archive(hooked: Hooked) -> None:
    job_id, akool_id = hooked.submitted(video_url(seconds=600, webhook=0, **NEVER_DONE_BY_POLLING))
    assert hooked.post(hooked.callback(akool_id, 3)).json()["outcome"] == "archiving"
    # Akool encrypts the same payload to the same dataEncrypt: even freshly signed, a replay.
    assert hooked.post(hooked.callback(akool_id, 3)).status_code == 401
    url = f"{hooked.sim.base_url}/files/{akool_id}.mp4?again=1"
    other = {"_id": akool_id, "status": 3, "type": "lipsync", "url": url}
    answer = hooked.post(
        signed_callback(other, CLIENT_ID, CLIENT_SECRET, timestamp_ms=wall_clock_ms())
    )
    assert answer.json()["outcome"] == "already-known"

    job = hooked.deployment.wait(job_id)
    assert job.status == "archived", job.error
    assert hooked.sim_job(akool_id)["downloads"] == 1


def test_a_callback_for_a_job_that_is_not_ours_is_answered_200(hooked: Hooked) -> None:
    answer = hooked.post(hooked.callback("65f0000000000000000000ff", 3))

    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "outcome": "unknown-job"}


def test_a_body_over_64_kib_is_refused_with_413(hooked: Hooked) -> None:
    answer = requests.post(hooked.url, data=b"{" + b" " * 70_000 + b"}", timeout=10)

    assert answer.status_code == 413


def test_health_answers_ok_while_redis_is_reachable(hooked: Hooked) -> None:
    answer = requests.get(hooked.url.replace(CALLBACK_PATH, HEALTH_PATH), timeout=10)

    assert answer.json() == {"ok": True}


def test_the_web_process_serves_fleet_metrics_on_metrics_port_after_a_job(
    hooked: Hooked,
) -> None:
    video = video_url(seconds=1, polls=1000)
    job_id, _ = hooked.submitted(video)
    assert hooked.deployment.wait(job_id).status == "archived"

    text = requests.get(hooked.metrics_url, timeout=10).text

    assert 'lipsync_jobs{status="archived"}' in text
    assert 'lipsync_akool_calls_total{endpoint="submit",outcome="ok"}' in text
    assert "lipsync_completion_to_archived_seconds_bucket" in text
    assert 'lipsync_queue_length{queue="lipsync.akool"}' in text
    assert 'lipsync_queue_length{queue="lipsync.archive"}' in text
    assert "lipsync_polls_waiting " in text


def test_the_public_port_answers_metrics_404(hooked: Hooked) -> None:
    answer = requests.get(hooked.url.replace(CALLBACK_PATH, "/metrics"), timeout=10)

    assert answer.status_code == 404
    assert "lipsync_" not in answer.text
