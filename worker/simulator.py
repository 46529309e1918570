"""HTTP simulator of Akool's lip-sync API, for tests and local runs.

Standard library only. Each job's behaviour is scripted by ``sim_*`` query parameters on the
submitted ``video_url`` (the URL itself is never fetched). See ``Scenario`` for the list.

When a submit names a ``webhookUrl``, the simulator also POSTs Akool's encrypted, signed
callback to it (from a background thread, a few tries while the answer is not 200) once the
job's final status is reached: after ``sim_seconds`` plus ``sim_webhook_delay``, whatever
the polls answer, so ``?sim_polls=1000&sim_seconds=1`` is a job whose polls keep saying 2
while the callback says it is done. ``sim_webhook_progress=1`` also sends a status 2
callback at once; ``sim_webhook=0`` sends none. The payload is encrypted with the client
secret (16, 24 or 32 bytes; with another length no callback is sent) and the client id as
IV (see worker/webhook.py, imported only when a callback is sent).

Controls for tests, under ``/_sim``: ``GET /_sim/stats`` (counters), ``GET /_sim/jobs/<id>``,
``POST /_sim/reset``, ``POST /_sim/revoke-tokens`` and ``POST /_sim/rate-limit`` with
``{"per_second": N}`` (0 or null: off), which answers code 1005 to any submit or poll beyond
N in the current one-second window, as Akool does when requests come too often.

Run it standalone with ``python -m worker.simulator --port 8080``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
HASH_BLOCK = 32  # bytes produced by one sha256 digest
HTML_ERROR = b"<html><body>Bad gateway</body></html>"
GET_AUTH_PATH = "/api/open/v3/getToken"
SUBMIT_PATH = "/api/open/v3/content/video/lipsync"
POLL_PATH = "/api/open/v3/content/video/infobymodelid"
MSG_BAD_AUTH = "Invalid authorization or The request token has expired"
MSG_EMPTY_AUTH = "Authorization cannot be empty"
MSG_TOO_FREQUENT = "requests are being made too frequently"
CODE_TOO_FREQUENT = 1005
API_PATHS = (GET_AUTH_PATH, SUBMIT_PATH, POLL_PATH)
# Printable ASCII only: a scripted header value must not be able to split the answer.
_HEADER_SAFE = frozenset(chr(c) for c in range(0x20, 0x7F))
# A callback not answered 200 is sent again this many times in all, waiting longer each time.
WEBHOOK_ATTEMPTS = 5
WEBHOOK_FIRST_WAIT_SECONDS = 0.2
WEBHOOK_TIMEOUT_SECONDS = 5.0
FILE_ERRORS = {
    "expired": (410, b"expired"),
    "gone": (404, b"not found"),
    "forbidden": (403, b"forbidden"),
}


@dataclass
class SimulatorConfig:
    """Credentials and defaults of a simulator instance."""

    api_key: str = "sim-api-key"
    client_id: str = "sim-client-id"
    client_secret: str = "sim-client-secret"  # noqa: S105 - fake credential of the simulator
    default_size: int = 6 * 1024 * 1024 + 12345
    file_host: str | None = None


@dataclass
class Scenario:
    """Behaviour scripted by the ``sim_*`` query parameters of a submitted video_url."""

    polls: int = 2
    seconds: float = 0.0
    final: int = 3
    submit_code: int | None = None
    submit_code_times: int | None = None
    submit_http: int | None = None
    submit_http_times: int = 1
    submit_http_after_create: bool = False
    poll_code: int | None = None
    poll_code_times: int | None = None
    poll_http: int | None = None
    poll_http_times: int = 1
    size: int | None = None
    file: str = "ok"
    truncate_times: int = 0
    file_delay: float = 0.0
    submit_delay: float = 0.0
    retry_after: str | None = None
    redirect: str | None = None
    webhook: bool = True
    webhook_delay: float = 0.0
    webhook_progress: bool = False


_INT_PARAMS = {
    "sim_polls": "polls",
    "sim_final": "final",
    "sim_submit_code": "submit_code",
    "sim_submit_code_times": "submit_code_times",
    "sim_submit_http": "submit_http",
    "sim_submit_http_times": "submit_http_times",
    "sim_poll_code": "poll_code",
    "sim_poll_code_times": "poll_code_times",
    "sim_poll_http": "poll_http",
    "sim_poll_http_times": "poll_http_times",
    "sim_size": "size",
    "sim_truncate_times": "truncate_times",
}
_FLOAT_PARAMS = {
    "sim_seconds": "seconds",
    "sim_file_delay": "file_delay",
    "sim_submit_delay": "submit_delay",
    "sim_webhook_delay": "webhook_delay",
}
# On with 1, off with anything else.
_FLAG_PARAMS = {
    "sim_submit_http_after_create": "submit_http_after_create",
    "sim_webhook": "webhook",
    "sim_webhook_progress": "webhook_progress",
}


def parse_scenario(video_url: str) -> Scenario:
    """Read the ``sim_*`` query parameters of ``video_url``; malformed values are ignored."""
    scenario = Scenario()
    params = parse_qs(urlsplit(video_url).query)
    for name, values in params.items():
        value = values[-1]
        try:
            if name in _INT_PARAMS:
                setattr(scenario, _INT_PARAMS[name], int(value))
            elif name in _FLOAT_PARAMS:
                setattr(scenario, _FLOAT_PARAMS[name], float(value))
        except ValueError:
            logger.warning("ignoring malformed simulator parameter %s", name)
    if "sim_file" in params:
        scenario.file = params["sim_file"][-1]
    for name, attribute in _FLAG_PARAMS.items():
        if name in params:
            setattr(scenario, attribute, params[name][-1] == "1")
    if "sim_redirect" in params:
        # The file URL answers 302 to this URL (to test the archive's host checks).
        value = params["sim_redirect"][-1]
        scenario.redirect = value if set(value) <= _HEADER_SAFE else None
    if "sim_retry_after" in params:
        # Kept as text so a test can script an HTTP-date or garbage as well as seconds.
        value = params["sim_retry_after"][-1]
        scenario.retry_after = value if set(value) <= _HEADER_SAFE else None
    return scenario


def generate_content(job_id: str, size: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield ``size`` deterministic bytes derived from ``job_id``, ``chunk_size`` at a time.

    The stream is sha256(job_id + counter) blocks concatenated; only one chunk is in memory.
    """
    seed = job_id.encode()
    counter = 0
    remaining = size
    while remaining > 0:
        want = min(chunk_size, remaining)
        blocks = -(-want // HASH_BLOCK)
        parts = [
            hashlib.sha256(seed + (counter + i).to_bytes(8, "big")).digest() for i in range(blocks)
        ]
        counter += blocks
        remaining -= want
        yield b"".join(parts)[:want]


def content_sha256(job_id: str, size: int) -> str:
    """Hex sha256 of the full generated content of a job, computed by streaming."""
    digest = hashlib.sha256()
    for chunk in generate_content(job_id, size):
        digest.update(chunk)
    return digest.hexdigest()


def _within(count: int, times: int | None) -> bool:
    """True when the ``count``-th event (1-based) is among the first ``times`` (None: all)."""
    return times is None or count <= times


@dataclass
class Job:
    """One submitted lip-sync job and its counters."""

    job_id: str
    video_url: str
    audio_url: str
    webhook_url: str | None
    scenario: Scenario
    size: int
    video_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    task_id: str = field(default_factory=lambda: secrets.token_hex(12))
    create_time: int = field(default_factory=lambda: int(time.time() * 1000))
    created_at: float = field(default_factory=time.monotonic)
    polls: int = 0
    status_polls: int = 0
    downloads: int = 0
    sha256: str | None = None
    # HTTP status of each callback sent to webhookUrl (0: no answer), in order.
    webhook_answers: list[int] = field(default_factory=list)

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
        """The job record answered by the submit endpoint."""
        return {
            "_id": self.job_id,
            "video_id": self.video_id,
            "video_status": 1,
            "video": "",
            "create_time": self.create_time,
            "webhookUrl": self.webhook_url or "",
            "lipsync": True,
            "task_id": self.task_id,
            "input_audio": self.audio_url,
        }


class SimState:
    """All mutable simulator state, guarded by one lock."""

    def __init__(self, config: SimulatorConfig) -> None:
        """Create empty state for ``config``."""
        self.config = config
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.file_host = ""
        self.jobs: dict[str, Job] = {}
        self.submits = 0
        self.submits_by_video_url: dict[str, int] = {}
        self.jobs_by_video_url: dict[str, int] = {}
        self.polls = 0
        self.token_requests = 0
        self.downloads = 0
        self.rate_limit: int | None = None
        self.webhooks_delivered = 0
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
            self.polls = 0
            self.token_requests = 0
            self.downloads = 0
            self.rate_limit = None
            self.webhooks_delivered = 0
            self._reset_rate_counters()

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

    def count_submit(self, video_url: str | None) -> int:
        """Count one authorised submit; return the count for this video_url (0 if none)."""
        with self.lock:
            self.submits += 1
            if video_url is None:
                return 0
            count = self.submits_by_video_url.get(video_url, 0) + 1
            self.submits_by_video_url[video_url] = count
            return count

    def create_job(self, video_url: str, audio_url: str, webhook_url: str | None) -> Job:
        """Create and store a job scripted by ``video_url``."""
        scenario = parse_scenario(video_url)
        size = scenario.size if scenario.size is not None else self.config.default_size
        job = Job(secrets.token_hex(12), video_url, audio_url, webhook_url, scenario, size)
        with self.lock:
            self.jobs[job.job_id] = job
            self.jobs_by_video_url[video_url] = self.jobs_by_video_url.get(video_url, 0) + 1
        logger.info("simulator created job %s", job.job_id)
        if webhook_url and scenario.webhook:
            threading.Thread(
                target=_send_callbacks, args=(self, job), name="sim-webhook", daemon=True
            ).start()
        return job

    def file_url(self, job: Job) -> str:
        """Where the job's generated video is served."""
        return f"http://{self.file_host}/files/{job.job_id}.mp4"

    def get_job(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or None."""
        with self.lock:
            return self.jobs.get(job_id)

    def job_sha256(self, job: Job) -> str:
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
            }

    def job_info(self, job: Job) -> dict[str, Any]:
        """Inspection view of a job."""
        digest = self.job_sha256(job)
        with self.lock:
            return {
                "_id": job.job_id,
                "video_url": job.video_url,
                "audio_url": job.audio_url,
                "webhookUrl": job.webhook_url,
                "size": job.size,
                "sha256": digest,
                "polls": job.polls,
                "downloads": job.downloads,
                "status": job.status_for(job.status_polls),
                "webhook_answers": list(job.webhook_answers),
            }


def _sleep_submit_delay(scenario: Scenario) -> None:
    """Hold a submit's answer after its job exists: a slow Akool, during which a worker may
    be killed with the job created but its id unknown."""
    delay = scenario.submit_delay
    if math.isfinite(delay) and delay > 0:
        time.sleep(delay)


def _send_callbacks(state: SimState, job: Job) -> None:
    """Tell the job's webhookUrl about progress (if scripted) and its final status."""
    scenario = job.scenario
    if scenario.webhook_progress:
        _deliver_callback(state, job, 2)
    wait = scenario.seconds + scenario.webhook_delay - (time.monotonic() - job.created_at)
    if math.isfinite(wait) and state.stopping.wait(max(wait, 0.0)):
        return
    _deliver_callback(state, job, scenario.final)


def _callback_body(state: SimState, job: Job, status: int) -> bytes | None:
    """Akool's encrypted, signed callback body; None when the secret is no AES key."""
    from worker.webhook import WebhookKeyError, signed_callback

    payload = {
        "_id": job.job_id,
        "status": status,
        "type": "lipsync",
        "url": state.file_url(job) if status == 3 else "",
    }
    config = state.config
    try:
        body = signed_callback(payload, config.client_id, config.client_secret)
    except WebhookKeyError as e:
        logger.error("simulator cannot send the callback of job %s: %s", job.job_id, e)
        return None
    return json.dumps(body).encode()


def _deliver_callback(state: SimState, job: Job, status: int) -> None:
    """POST one callback until it is answered 200, at most WEBHOOK_ATTEMPTS times."""
    body = _callback_body(state, job, status)
    if body is None or job.webhook_url is None:
        return
    wait = WEBHOOK_FIRST_WAIT_SECONDS
    for _ in range(WEBHOOK_ATTEMPTS):
        answer = _post_json(job.webhook_url, body)
        with state.lock:
            job.webhook_answers.append(answer)
            state.webhooks_delivered += int(answer == 200)
        if answer == 200 or state.stopping.wait(wait):
            return
        wait *= 2


def _post_json(url: str, body: bytes) -> int:
    """POST ``body`` as JSON; the HTTP status of the answer, 0 when there was none."""
    if urlsplit(url).scheme not in ("http", "https"):
        return 0
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as e:
        with contextlib.closing(e):
            return int(e.code)
    except (OSError, ValueError):
        return 0


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying the simulator state."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: SimState) -> None:
        """Bind to ``address`` and keep ``state`` for the handlers."""
        super().__init__(address, _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a client that went away at debug level; other errors with a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logger.debug("simulator client %s went away: %s", client_address, error)
            return
        logger.exception("simulator error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Request handler implementing the Akool endpoints and the ``/_sim`` controls."""

    # Answer small requests at once: without this, Nagle's algorithm holds each reply
    # ~40 ms on loopback and every simulated Akool call looks slow.
    disable_nagle_algorithm = True

    protocol_version = "HTTP/1.1"
    server_version = "AkoolSimulator/1.0"

    @property
    def state(self) -> SimState:
        """The shared simulator state."""
        return cast(_Server, self.server).state

    def log_message(self, format: str, *args: Any) -> None:
        """Route per-request logging to debug level instead of stderr."""
        logger.debug("simulator: " + format, *args)

    # ---- low-level answers -------------------------------------------------------------

    def _send_bytes(self, status: int, body: bytes, content_type: str) -> None:
        """Answer with a complete body and its Content-Length."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, payload: dict[str, Any], status: int = 200) -> None:
        """Answer a JSON document."""
        self._send_bytes(status, json.dumps(payload).encode(), "application/json")

    def _send_code(self, code: int, msg: str, data: Any = None) -> None:
        """Answer an Akool envelope ``{code, msg, data}`` with HTTP 200."""
        self._send_json({"code": code, "msg": msg, "data": data})

    def _send_html_error(self, status: int, retry_after: str | None = None) -> None:
        """Answer a non-JSON gateway error page, with a Retry-After header when given."""
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(HTML_ERROR)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(HTML_ERROR)

    def _read_json(self) -> Any:
        """Read the request body and decode it as JSON; None when absent or invalid."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            return None

    # ---- dispatch ------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        """Dispatch GET requests."""
        parts = urlsplit(self.path)
        path = parts.path
        if path in API_PATHS:
            self.state.note_api_request()
        if path == POLL_PATH:
            self._handle_poll(parse_qs(parts.query))
        elif path.startswith("/files/") and path.endswith(".mp4"):
            self._handle_file(path[len("/files/") : -len(".mp4")])
        elif path.startswith("/_sim/jobs/"):
            self._handle_job_info(path[len("/_sim/jobs/") :])
        elif path == "/_sim/stats":
            self._send_json(self.state.stats())
        else:
            self._send_json({"code": 404, "msg": "not found", "data": None}, 404)

    def do_POST(self) -> None:  # noqa: N802
        """Dispatch POST requests."""
        path = urlsplit(self.path).path
        body = self._read_json()
        if path in API_PATHS:
            self.state.note_api_request()
        if path == GET_AUTH_PATH:
            self._handle_token(body)
        elif path == SUBMIT_PATH:
            self._handle_submit(body)
        elif path == "/_sim/revoke-tokens":
            self._send_json({"revoked": self.state.revoke_tokens()})
        elif path == "/_sim/reset":
            self.state.reset()
            self._send_json({"reset": True})
        elif path == "/_sim/rate-limit":
            self._handle_rate_limit(body)
        elif path == "/_sim/reset-window":
            with self.state.lock:
                self.state.max_requests_per_second = 0
            self._send_json({"reset": True})
        else:
            self._send_json({"code": 404, "msg": "not found", "data": None}, 404)

    # ---- auth ----------------------------------------------------------------------------

    def _auth_error(self) -> tuple[int, str] | None:
        """Check the request's credentials; return (code, msg) on failure, else None."""
        authorization = self.headers.get("Authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            with self.state.lock:
                valid = scheme.lower() == "bearer" and token.strip() in self.state.tokens
            return None if valid else (1101, MSG_BAD_AUTH)
        api_key = self.headers.get("x-api-key")
        if api_key is None or api_key == "":
            return (1102, MSG_EMPTY_AUTH)
        if not secrets.compare_digest(api_key, self.state.config.api_key):
            return (1101, MSG_BAD_AUTH)
        return None

    def _authorised(self) -> bool:
        """Answer an auth error and return False, or return True when authorised."""
        error = self._auth_error()
        if error is None:
            return True
        self._send_code(error[0], error[1])
        return False

    def _admitted(self) -> bool:
        """Answer an auth error or code 1005 and return False, or return True."""
        if not self._authorised():
            return False
        if self.state.over_rate_limit():
            self._send_code(CODE_TOO_FREQUENT, MSG_TOO_FREQUENT)
            return False
        return True

    # ---- endpoints -----------------------------------------------------------------------

    def _handle_token(self, body: Any) -> None:
        """POST getToken: issue a token for matching clientId/clientSecret."""
        with self.state.lock:
            self.state.token_requests += 1
        if not isinstance(body, dict):
            self._send_code(1003, "Parameter error or Parameter can not be empty")
            return
        config = self.state.config
        if (
            body.get("clientId") == config.client_id
            and body.get("clientSecret") == config.client_secret
        ):
            self._send_json({"code": 1000, "msg": "OK", "token": self.state.issue_token()})
            return
        self._send_code(1101, MSG_BAD_AUTH)

    def _handle_submit(self, body: Any) -> None:
        """POST lipsync: validate, apply the submit scenario, create a job."""
        if not self._admitted():
            return
        fields = body if isinstance(body, dict) else {}
        video_url, audio_url = fields.get("video_url"), fields.get("audio_url")
        valid_video = isinstance(video_url, str) and video_url != ""
        count = self.state.count_submit(video_url if valid_video else None)
        if not valid_video or not isinstance(audio_url, str) or not audio_url:
            self._send_code(1003, "Parameter error or Parameter can not be empty")
            return
        webhook = fields.get("webhookUrl")
        webhook_url = webhook if isinstance(webhook, str) and webhook else None
        self._submit_scripted(cast(str, video_url), audio_url, webhook_url, count)

    def _submit_scripted(
        self, video_url: str, audio_url: str, webhook_url: str | None, count: int
    ) -> None:
        """Answer a valid submit according to the video_url's scenario."""
        scenario = parse_scenario(video_url)
        if scenario.submit_http is not None and count <= scenario.submit_http_times:
            if scenario.submit_http_after_create:
                self.state.create_job(video_url, audio_url, webhook_url)
                _sleep_submit_delay(scenario)
            self._send_html_error(scenario.submit_http, scenario.retry_after)
            return
        if scenario.submit_code is not None and _within(count, scenario.submit_code_times):
            self._send_code(scenario.submit_code, f"simulated error {scenario.submit_code}")
            return
        job = self.state.create_job(video_url, audio_url, webhook_url)
        _sleep_submit_delay(scenario)
        self._send_code(1000, "OK", job.record())

    def _handle_poll(self, query: dict[str, list[str]]) -> None:
        """GET infobymodelid: answer the job's scripted status."""
        if not self._admitted():
            return
        with self.state.lock:
            self.state.polls += 1
        job_id = query.get("video_model_id", [""])[-1]
        job = self.state.get_job(job_id)
        if job is None:
            self._send_code(1008, "The content you get does not exist")
            return
        self._poll_scripted(job)

    def _poll_scripted(self, job: Job) -> None:
        """Answer one poll of a known job according to its scenario."""
        scenario = job.scenario
        with self.state.lock:
            job.polls += 1
            count = job.polls
        if scenario.poll_http is not None and count <= scenario.poll_http_times:
            self._send_html_error(scenario.poll_http, scenario.retry_after)
            return
        if scenario.poll_code is not None and _within(count, scenario.poll_code_times):
            self._send_code(scenario.poll_code, f"simulated error {scenario.poll_code}")
            return
        with self.state.lock:
            job.status_polls += 1
            status = job.status_for(job.status_polls)
        video = self.state.file_url(job) if status == 3 else ""
        data = {
            "_id": job.job_id,
            "video_id": job.video_id,
            "video_status": status,
            "video": video,
            "create_time": job.create_time,
        }
        self._send_code(1000, "OK", data)

    def _handle_rate_limit(self, body: Any) -> None:
        """POST /_sim/rate-limit ``{"per_second": N}``: set the limit (0 or null: off)."""
        # A body that is not a JSON object, or lacks the field, is refused like a bad value.
        value = body.get("per_second", -1) if isinstance(body, dict) else -1
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            self._send_json({"error": "per_second must be a whole number >= 0 or null"}, 400)
            return
        self.state.set_rate_limit(value)
        self._send_json({"per_second": value or None})

    def _handle_job_info(self, job_id: str) -> None:
        """GET /_sim/jobs/<id>: inspection view of one job."""
        job = self.state.get_job(job_id)
        if job is None:
            self._send_json({"error": "unknown job"}, 404)
            return
        self._send_json(self.state.job_info(job))

    def _handle_file(self, job_id: str) -> None:
        """GET /files/<id>.mp4: stream the job's generated video."""
        job = self.state.get_job(job_id)
        if job is None:
            self._send_bytes(404, b"not found", "text/plain")
            return
        with self.state.lock:
            job.downloads += 1
            self.state.downloads += 1
            count = job.downloads
        if job.scenario.redirect:
            self.send_response(302)
            self.send_header("Location", job.scenario.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if job.scenario.file in FILE_ERRORS:
            status, text = FILE_ERRORS[job.scenario.file]
            self._send_bytes(status, text, "text/plain")
            return
        self._stream_file(job, truncate=count <= job.scenario.truncate_times)

    def _stream_file(self, job: Job, truncate: bool) -> None:
        """Send the job's content in chunks; when ``truncate``, stop halfway and close."""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(job.size))
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        if job.scenario.file_delay > 0:
            time.sleep(job.scenario.file_delay)
        limit = job.size // 2 if truncate else job.size
        sent = 0
        for chunk in generate_content(job.job_id, job.size):
            piece = chunk[: limit - sent]
            self.wfile.write(piece)
            sent += len(piece)
            if sent >= limit:
                break
        self.wfile.flush()
        if truncate:
            logger.info("simulator truncated download of job %s at %s bytes", job.job_id, sent)
            self.close_connection = True


class Simulator:
    """An Akool lip-sync API simulator served from a background thread."""

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Bind the server (port 0 picks a free port); call ``start`` to serve."""
        self.config = config or SimulatorConfig()
        self.state = SimState(self.config)
        self._server = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None
        bound_host = str(self._server.server_address[0])
        self.host = "127.0.0.1" if bound_host in ("0.0.0.0", "", "::") else bound_host  # noqa: S104
        self.port = int(self._server.server_address[1])
        self.state.file_host = self.config.file_host or f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Base URL of the simulator, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Simulator:
        """Serve in a daemon thread and return self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="akool-simulator",
                daemon=True,
            )
            self._thread.start()
            logger.info("simulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving (and sending callbacks) and release the socket."""
        self.state.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line of ``python -m worker.simulator``."""
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(description="Simulator of Akool's lip-sync API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", default=defaults.api_key)
    parser.add_argument("--client-id", default=defaults.client_id)
    parser.add_argument("--client-secret", default=defaults.client_secret)
    parser.add_argument("--size", type=int, default=defaults.default_size)
    parser.add_argument("--file-host", default=None, help="host:port used in result URLs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until SIGTERM or SIGINT; print a READY line once listening."""
    args = _parse_args(argv)
    config = SimulatorConfig(
        api_key=args.api_key,
        client_id=args.client_id,
        client_secret=args.client_secret,
        default_size=args.size,
        file_host=args.file_host,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logger.info("simulator received signal %s, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    simulator = Simulator(config, host=args.host, port=args.port).start()
    print(f"SIMULATOR READY {simulator.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
