"""The simulator's request handler: Akool's endpoints and the ``/_sim`` test controls.

``SimulatorHandler`` dispatches each request by path: getToken, each kind's submit (see
``kinds``: lip-sync, talking photo, video translation, talking avatar, character swap) and
the shared status poll (authorised by bearer token or x-api-key, rate limited on demand,
each answering what the job's scenario scripts), the video and extra-file downloads (see
``downloads``) and the controls under ``/_sim`` (stats, one job, reset, reset-window, token
revocation, rate limit).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from worker.dev.simulator.callbacks import start_callbacks
from worker.dev.simulator.downloads import DownloadHandler
from worker.dev.simulator.kinds import (
    KINDS,
    KINDS_BY_PATH,
    LIPSYNC,
    SimKind,
    body_ok,
    primary_url,
    webhook_url,
)
from worker.dev.simulator.scenario import Scenario, parse_scenario, within
from worker.dev.simulator.state import SimJob

GET_AUTH_PATH = "/api/open/v3/getToken"
SUBMIT_PATH = KINDS[LIPSYNC].path
POLL_PATH = "/api/open/v3/content/video/infobymodelid"
API_PATHS = (GET_AUTH_PATH, *KINDS_BY_PATH, POLL_PATH)
MSG_BAD_AUTH = "Invalid authorization or The request token has expired"
MSG_EMPTY_AUTH = "Authorization cannot be empty"
MSG_TOO_FREQUENT = "requests are being made too frequently"
CODE_TOO_FREQUENT = 1005
CODE_PARAMETER_ERROR = 1003
MSG_PARAMETER_ERROR = "Parameter error or Parameter can not be empty"


@dataclass(frozen=True)
class _Submit:
    """A valid submit of any kind: what its job is created from."""

    kind: str
    video_url: str  # the kind's scripting URL (kinds.primary_url)
    audio_url: str
    webhook_url: str | None


def _sleep_submit_delay(scenario: Scenario) -> None:
    """Hold a submit's answer after its job exists: a slow Akool, during which a worker may
    be killed with the job created but its id unknown."""
    delay = scenario.submit_delay
    if math.isfinite(delay) and delay > 0:
        time.sleep(delay)


def _progress(job: SimJob, status: int) -> int:
    """A lookup's progress (0-100): 0 while queued, 100 once done, rising in between."""
    if status == 3:
        return 100
    if status == 1:
        return 0
    return max(1, min(99, 100 * job.status_polls // (job.scenario.polls + 1)))


class SimulatorHandler(DownloadHandler):
    """Request handler implementing the Akool endpoints and the ``/_sim`` controls."""

    # ---- dispatch ------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        """Dispatch GET requests."""
        parts = urlsplit(self.path)
        path = parts.path
        if path in API_PATHS and self._in_outage():
            return
        if path == POLL_PATH:
            self._handle_poll(parse_qs(parts.query))
        elif path.startswith("/assets/") and path.count("/") == 3:
            job_id, _, name = path[len("/assets/") :].partition("/")
            self._handle_asset(job_id, name)
        elif path.startswith("/files/") and path.endswith(".mp4"):
            version = parse_qs(parts.query).get("v", [""])[-1]
            number = int(version) if version.isdigit() else None
            self._handle_file(path[len("/files/") : -len(".mp4")], number)
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
        if path in API_PATHS and self._in_outage():
            return
        if path == GET_AUTH_PATH:
            self._handle_token(body)
        elif path in KINDS_BY_PATH:
            self._handle_submit(KINDS_BY_PATH[path], body)
        elif path == "/_sim/revoke-tokens":
            self._send_json({"revoked": self.state.revoke_tokens()})
        elif path == "/_sim/reset":
            self.state.reset()
            self._send_json({"reset": True})
        elif path == "/_sim/rate-limit":
            self._handle_rate_limit(body)
        elif path == "/_sim/outage":
            self._handle_outage(body)
        elif path == "/_sim/reset-window":
            with self.state.lock:
                self.state.max_requests_per_second = 0
            self._send_json({"reset": True})
        else:
            self._send_json({"code": 404, "msg": "not found", "data": None}, 404)

    def _in_outage(self) -> bool:
        """Count an Akool request; answer it with the outage's status and return True while
        an outage lasts."""
        self.state.note_api_request()
        status = self.state.outage()
        if status is None:
            return False
        self._send_html_error(status)
        return True

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
            self._send_code(CODE_PARAMETER_ERROR, MSG_PARAMETER_ERROR)
            return
        config = self.state.config
        if (
            body.get("clientId") == config.client_id
            and body.get("clientSecret") == config.client_secret
        ):
            self._send_json({"code": 1000, "msg": "OK", "token": self.state.issue_token()})
            return
        self._send_code(1101, MSG_BAD_AUTH)

    def _handle_submit(self, kind: SimKind, body: Any) -> None:
        """POST a kind's submit: validate, apply the submit scenario, create a job."""
        if not self._admitted():
            return
        video_url = primary_url(kind, body)
        count = self.state.count_submit(video_url, kind.name)
        if video_url is None or not body_ok(kind, body):
            self._send_code(CODE_PARAMETER_ERROR, MSG_PARAMETER_ERROR)
            return
        audio = str(body.get(kind.audio_field, "")) if kind.audio_field else ""
        request = _Submit(kind.name, video_url, audio, webhook_url(kind, body))
        self._submit_scripted(request, count)

    def _submit_scripted(self, request: _Submit, count: int) -> None:
        """Answer a valid submit according to its scripting URL's scenario."""
        scenario = parse_scenario(request.video_url)
        if scenario.submit_http is not None and count <= scenario.submit_http_times:
            if scenario.submit_http_after_create:
                self._create_job(request)
                _sleep_submit_delay(scenario)
            self._send_html_error(scenario.submit_http, scenario.retry_after)
            return
        if scenario.submit_code is not None and within(count, scenario.submit_code_times):
            self._send_code(scenario.submit_code, f"simulated error {scenario.submit_code}")
            return
        job = self._create_job(request)
        _sleep_submit_delay(scenario)
        self._send_code(1000, "OK", job.record())

    def _create_job(self, request: _Submit) -> SimJob:
        """Create and store the job, and start sending its callbacks."""
        job = self.state.create_job(
            request.video_url, request.audio_url, request.webhook_url, request.kind
        )
        start_callbacks(self.state, job)
        return job

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

    def _poll_scripted(self, job: SimJob) -> None:
        """Answer one poll of a known job according to its scenario."""
        scenario = job.scenario
        with self.state.lock:
            job.polls += 1
            count = job.polls
        if scenario.poll_http is not None and count <= scenario.poll_http_times:
            self._send_html_error(scenario.poll_http, scenario.retry_after)
            return
        if scenario.poll_code is not None and within(count, scenario.poll_code_times):
            self._send_code(scenario.poll_code, f"simulated error {scenario.poll_code}")
            return
        with self.state.lock:
            job.status_polls += 1
            status = job.status_for(job.status_polls)
        video = self._result_video(job) if status == 3 else ""
        data = {
            "_id": job.job_id,
            "video_id": job.video_id,
            "video_status": status,
            "video": video,
            "create_time": job.create_time,
        }
        if KINDS[job.kind].detailed:
            data.update(self._details(job, status))
        self._send_code(1000, "OK", data)

    def _details(self, job: SimJob, status: int) -> dict[str, Any]:
        """What a detailed kind's lookup adds (video translation): progress, and the extra
        result files at status 3 or the scripted error at status 4."""
        details: dict[str, Any] = {"progress": _progress(job, status)}
        if status == 3:
            details["audio_splits"] = self.state.asset_urls(job)
        elif status == 4:
            details.update(
                error_code=job.scenario.error_code, error_reason=job.scenario.error_reason
            )
        return details

    def _result_video(self, job: SimJob) -> str:
        """The `video` of a completed answer: a new result URL, or the scripted bad text."""
        with self.state.lock:
            job.done_answers += 1
            count = job.done_answers
        bad = job.scenario.bad_video
        if bad is not None and count <= job.scenario.bad_video_times:
            return bad
        return self.state.file_url(job)

    def _handle_outage(self, body: Any) -> None:
        """POST /_sim/outage ``{"status": 503, "seconds": 40}``: every Akool endpoint answers
        that HTTP status for that long (``seconds`` 0 ends an outage)."""
        fields = body if isinstance(body, dict) else {}
        status, seconds = fields.get("status", 503), fields.get("seconds")
        valid = isinstance(status, int) and 400 <= status <= 599
        if not valid or not isinstance(seconds, int | float) or not 0 <= seconds <= 86400:
            self._send_json({"error": "status must be 400-599 and seconds 0-86400"}, 400)
            return
        self.state.start_outage(int(status), float(seconds))
        self._send_json({"status": status, "seconds": seconds})

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
