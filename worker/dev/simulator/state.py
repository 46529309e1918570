"""The simulator's shared state: its configuration, the submitted jobs and the counters.

``SimState`` is shared by every request thread and callback thread and guarded by one lock;
``SimJob`` is one submitted job with its scenario and per-job counters.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.clock import wall_clock_ms
from worker.dev.simulator.content import asset_sha256, content_sha256
from worker.dev.simulator.kinds import ASSET_FILES, KINDS, LIPSYNC
from worker.dev.simulator.scenario import Scenario, parse_scenario

logger = logging.getLogger(__name__)


@dataclass
class SimulatorConfig:
    """Credentials and defaults of a simulator instance."""

    api_key: str = "sim-api-key"
    client_id: str = "sim-client-id"
    client_secret: str = "sim-client-secret"  # noqa: S105 - fake credential of the simulator
    default_size: int = 6 * 1024 * 1024 + 12345
    file_host: str | None = None


@dataclass
class SimJob:
    """One submitted job of any kind and its counters (``video_url``: the URL scripting it,
    see ``kinds.primary_url``; ``audio_url``: "" for a kind without one)."""

    job_id: str
    video_url: str
    audio_url: str
    webhook_url: str | None
    scenario: Scenario
    size: int
    video_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    task_id: str = field(default_factory=lambda: secrets.token_hex(12))
    create_time: int = field(default_factory=wall_clock_ms)
    created_at: float = field(default_factory=time.monotonic)
    polls: int = 0
    status_polls: int = 0
    downloads: int = 0
    # Result URLs handed out (completed poll answers and callbacks); each carries its number.
    urls_given: int = 0
    # Completed poll answers so far (for sim_bad_video).
    done_answers: int = 0
    sha256: str | None = None
    # HTTP status of each callback sent to webhookUrl (0: no answer), in order.
    webhook_answers: list[int] = field(default_factory=list)
    kind: str = LIPSYNC

    def status_for(self, status_poll: int) -> int:
        """Status answered by the ``status_poll``-th normal poll (0: not polled yet)."""
        if status_poll == 0 or (status_poll == 1 and self.scenario.polls >= 1):
            return 1
        if status_poll <= self.scenario.polls:
            return 2
        if time.monotonic() - self.created_at < self.scenario.seconds:
            return 2
        return self.scenario.final

    def record(self) -> dict[str, Any]:
        """The job record answered by the submit endpoint, in its kind's spelling."""
        kind = KINDS[self.kind]
        record: dict[str, Any] = {
            "_id": self.job_id,
            "video_id": self.video_id,
            kind.submit_status_field: 1,
            "video": "",
            "create_time": self.create_time,
            kind.webhook_field: self.webhook_url or "",
        }
        if self.kind == LIPSYNC:
            # Only lip-sync's answer carries these (a task_id the client must not poll with).
            record.update(lipsync=True, task_id=self.task_id, input_audio=self.audio_url)
        return record


class SimState:
    """All mutable simulator state, guarded by one lock."""

    def __init__(self, config: SimulatorConfig) -> None:
        """Create empty state for ``config``."""
        self.config = config
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.file_host = ""
        self.jobs: dict[str, SimJob] = {}
        self.submits = 0
        self.submits_by_video_url: dict[str, int] = {}
        self.jobs_by_video_url: dict[str, int] = {}
        self.submits_by_kind: dict[str, int] = {}
        self.jobs_by_kind: dict[str, int] = {}
        self.polls = 0
        self.token_requests = 0
        self.downloads = 0
        # Downloads of extra result files (/assets/...), apart from the videos' downloads.
        self.asset_downloads = 0
        self.rate_limit: int | None = None
        self.webhooks_delivered = 0
        # An outage of the whole API (POST /_sim/outage): until then (self.clock's time),
        # every Akool endpoint answers this HTTP status.
        self.outage_until = 0.0
        self.outage_status = 503
        # Set when the simulator stops, so callback threads waiting for their time end.
        self.stopping = threading.Event()
        # The clock of the rate windows; tests may replace it to place requests exactly.
        self.clock: Callable[[], float] = time.monotonic
        self._reset_rate_counters()

    def _reset_rate_counters(self) -> None:
        """Forget the request-rate counters (the caller holds the lock, or is __init__)."""
        self.rate_limited = 0
        self.max_requests_per_second = 0
        self._recent_requests: deque[float] = deque()
        self._window = -1
        self._window_count = 0

    def reset(self) -> None:
        """Forget jobs and counters and turn the rate limit off (issued tokens stay valid)."""
        with self.lock:
            self.jobs = {}
            self.submits = 0
            self.submits_by_video_url = {}
            self.jobs_by_video_url = {}
            self.submits_by_kind = {}
            self.jobs_by_kind = {}
            self.polls = 0
            self.token_requests = 0
            self.downloads = 0
            self.asset_downloads = 0
            self.rate_limit = None
            self.webhooks_delivered = 0
            self.outage_until = 0.0
            self._reset_rate_counters()

    def start_outage(self, status: int, seconds: float) -> None:
        """Answer HTTP ``status`` to every Akool request for ``seconds`` from now (0: end)."""
        with self.lock:
            self.outage_status = status
            self.outage_until = self.clock() + max(0.0, seconds)

    def outage(self) -> int | None:
        """The HTTP status an outage answers now, or None when there is none."""
        with self.lock:
            return self.outage_status if self.clock() < self.outage_until else None

    def set_rate_limit(self, per_second: int | None) -> None:
        """Answer 1005 beyond ``per_second`` submits and polls a second (None or 0: off)."""
        with self.lock:
            self.rate_limit = per_second or None
            self._window = -1
            self._window_count = 0

    def note_api_request(self) -> None:
        """Count one request to an Akool endpoint towards the busiest one-second window."""
        now = self.clock()
        with self.lock:
            # A sliding window (the last second up to now) finds the true peak, which a
            # window aligned to whole seconds could split in two.
            self._recent_requests.append(now)
            while self._recent_requests[0] <= now - 1.0:
                self._recent_requests.popleft()
            self.max_requests_per_second = max(
                self.max_requests_per_second, len(self._recent_requests)
            )

    def over_rate_limit(self) -> bool:
        """Count one submit or poll in the current whole second; True when it is too many."""
        with self.lock:
            if self.rate_limit is None:
                return False
            second = int(self.clock())
            if second != self._window:
                self._window, self._window_count = second, 0
            self._window_count += 1
            if self._window_count <= self.rate_limit:
                return False
            self.rate_limited += 1
            return True

    def issue_token(self) -> str:
        """Issue and remember a new bearer token."""
        token = secrets.token_hex(24)
        with self.lock:
            self.tokens.add(token)
        return token

    def revoke_tokens(self) -> int:
        """Revoke all issued tokens; return how many there were."""
        with self.lock:
            count = len(self.tokens)
            self.tokens.clear()
        return count

    def count_submit(self, video_url: str | None, kind: str = LIPSYNC) -> int:
        """Count one authorised submit of ``kind``; return the count for this video_url (the
        kind's scripting URL; 0 if none)."""
        with self.lock:
            self.submits += 1
            self.submits_by_kind[kind] = self.submits_by_kind.get(kind, 0) + 1
            if video_url is None:
                return 0
            count = self.submits_by_video_url.get(video_url, 0) + 1
            self.submits_by_video_url[video_url] = count
            return count

    def create_job(
        self, video_url: str, audio_url: str, webhook_url: str | None, kind: str = LIPSYNC
    ) -> SimJob:
        """Create and store a job of ``kind`` scripted by ``video_url``; sending its
        callbacks is the caller's part (``callbacks.start_callbacks``), so the state starts
        no thread."""
        scenario = parse_scenario(video_url)
        size = scenario.size if scenario.size is not None else self.config.default_size
        job = SimJob(
            secrets.token_hex(12), video_url, audio_url, webhook_url, scenario, size, kind=kind
        )
        with self.lock:
            self.jobs[job.job_id] = job
            self.jobs_by_video_url[video_url] = self.jobs_by_video_url.get(video_url, 0) + 1
            self.jobs_by_kind[kind] = self.jobs_by_kind.get(kind, 0) + 1
        logger.info("simulator created job %s", job.job_id)
        return job

    def file_url(self, job: SimJob) -> str:
        """A new URL of the job's generated video, numbered (``?v=``) so that the links of
        the first ``sim_file_gone_urls`` can be dead."""
        with self.lock:
            job.urls_given += 1
            version = job.urls_given
        return f"http://{self.file_host}/files/{job.job_id}.mp4?v={version}"

    def asset_urls(self, job: SimJob) -> dict[str, str]:
        """The URLs of the job's extra result files (its kind's ``assets``), by field."""
        return {
            name: f"http://{self.file_host}/assets/{job.job_id}/{ASSET_FILES[name]}"
            for name in KINDS[job.kind].assets
        }

    def get_job(self, job_id: str) -> SimJob | None:
        """The job with ``job_id``, or None."""
        with self.lock:
            return self.jobs.get(job_id)

    def job_sha256(self, job: SimJob) -> str:
        """Hex sha256 of a job's content, computed once and cached."""
        if job.sha256 is None:
            digest = content_sha256(job.job_id, job.size)
            with self.lock:
                job.sha256 = digest
        return job.sha256

    def stats(self) -> dict[str, Any]:
        """Global counters."""
        with self.lock:
            return {
                "submits": self.submits,
                "submits_by_video_url": dict(self.submits_by_video_url),
                "jobs_by_video_url": dict(self.jobs_by_video_url),
                "polls": self.polls,
                "token_requests": self.token_requests,
                "downloads": self.downloads,
                "rate_limited": self.rate_limited,
                "max_requests_per_second": self.max_requests_per_second,
                "webhooks_delivered": self.webhooks_delivered,
                "submits_by_kind": dict(self.submits_by_kind),
                "jobs_by_kind": dict(self.jobs_by_kind),
                "asset_downloads": self.asset_downloads,
            }

    def job_info(self, job: SimJob) -> dict[str, Any]:
        """Inspection view of a job."""
        digest = self.job_sha256(job)
        assets = {
            ASSET_FILES[name]: asset_sha256(job.job_id, ASSET_FILES[name], job.size)
            for name in KINDS[job.kind].assets
        }
        with self.lock:
            return {
                "_id": job.job_id,
                "kind": job.kind,
                "video_url": job.video_url,
                "audio_url": job.audio_url,
                "webhookUrl": job.webhook_url,
                "size": job.size,
                "sha256": digest,
                "polls": job.polls,
                "downloads": job.downloads,
                "urls_given": job.urls_given,
                "status": job.status_for(job.status_polls),
                "webhook_answers": list(job.webhook_answers),
                # The sha256 of each extra result file, by its file name.
                "assets": assets,
            }
