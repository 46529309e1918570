"""The WSGI app of the web process's internal port (METRICS_PORT): `/metrics`, and the jobs
dashboard when DASHBOARD_USER and DASHBOARD_PASSWORD are set (404 otherwise).

The handlers only speak HTTP: who may see a page is `auth`, what a job went through is
`timeline`, what is read from Redis is `reads`, a retry is `worker.tasks.retry_job` (the
rules of `lipsync retry`), a cancel is `worker.api.cancel_job`. Every page is rendered by
Jinja2 with autoescape, sent with a strict Content-Security-Policy and never cached.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import redis
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CollectorRegistry, make_wsgi_app

from worker import deps
from worker.akool import KINDS, Kind
from worker.api import cancel_job
from worker.archive import archive_key
from worker.clock import Clock, wall_clock
from worker.config import Settings
from worker.errors import LipsyncError
from worker.metrics import FleetCollector
from worker.names import UNKNOWN_KIND, Step
from worker.net import ascii_int
from worker.status import FILTER_WINDOW, JobStatus
from worker.store import Job, JobStore, is_job_id
from worker.sweeper import retry_step
from worker.web.dashboard import reads
from worker.web.dashboard.auth import CHALLENGE, CsrfTokens, authorized_user
from worker.web.dashboard.timeline import build_timeline, size_text

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

METRICS_PATH = "/metrics"
JOBS_PATH = "/jobs"
_JOB_PATH = re.compile(r"^/jobs/([^/]+)(?:/(retry|cancel))?$")
# The kinds the filter offers: every Akool kind, and an adopted job's.
FILTER_KINDS = (*KINDS, UNKNOWN_KIND)
# A prefix typed in the search box: hex digits, at most a whole id.
_ID_PREFIX = re.compile(r"^[0-9a-f]{0,32}$")
# The archived video's link on the job page: long enough to watch it, short enough that a
# copied link soon stops working.
PRESIGN_SECONDS = 5 * 60
# A running job's page renders itself again this often (a <meta> refresh: no script).
REFRESH_SECONDS = 3
# A retry or cancel form is one short field; anything larger is not ours.
MAX_FORM_BYTES = 4096
# Every page: no framing, no caching, scripts and everything else from nowhere but us;
# style only inline. media-src names the presigned video's origin on the job page.
_CSP = (
    "default-src 'self'; script-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; media-src {media}"
)


def security_headers(media_origin: str | None = None) -> list[tuple[str, str]]:
    """The headers of every dashboard answer; `media_origin` is where a <video> may load."""
    media = media_origin or "'none'"
    return [
        ("Content-Security-Policy", _CSP.format(media=media)),
        ("X-Frame-Options", "DENY"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        # A presigned URL or the credentials must never leave in a Referer.
        ("Referrer-Policy", "no-referrer"),
    ]


def origin_of(url: str) -> str | None:
    """scheme://host[:port] of a URL, for the CSP; None when it has none."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def when_text(epoch: float | None) -> str:
    """An epoch time as UTC, to the second; "" when unknown."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration_text(seconds: float) -> str:
    """A duration in its largest whole unit: 42 s, 5 min, 3 h, 2 d."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("worker.web.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters.update(when=when_text, duration=duration_text, size=size_text)
    return env


def presigner(s3: Any, seconds: int = PRESIGN_SECONDS) -> Callable[[str], str]:
    """A function giving a GET URL of an `s3://bucket/key` URI valid `seconds`, as `lipsync
    url` does (signed locally, no request to S3)."""

    def presign(uri: str) -> str:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        params = {"Bucket": bucket, "Key": key}
        return str(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds))

    return presign


@dataclass(frozen=True)
class Page:
    """An answer: status, HTML, and the origin a <video> may load from."""

    status: int
    html: str
    media_origin: str | None = None
    location: str | None = None


class Dashboard:
    """The dashboard's pages: GET /jobs, GET /jobs/<id>, POST /jobs/<id>/retry and
    POST /jobs/<id>/cancel. `retry` and `cancel` act on a job id (worker.tasks.retry_job,
    worker.api.cancel_job); given as functions, so the pages are tested without Celery."""

    def __init__(
        self,
        client: redis.Redis,
        store: JobStore,
        *,
        user: str,
        password: str,
        presign: Callable[[str], str],
        retry: Callable[[str], Step],
        cancel: Callable[[str], Job] = cancel_job,
        archive_prefix: str = "",
        csrf: CsrfTokens | None = None,
        clock: Clock = wall_clock,
    ) -> None:
        self._redis = client
        self._store = store
        self._user, self._password = user, password
        self._presign = presign
        self._retry = retry
        self._cancel = cancel
        self._archive_prefix = archive_prefix
        self._csrf = csrf or CsrfTokens()
        self._clock = clock
        self._templates = _environment()

    @functools.cached_property
    def _collector(self) -> FleetCollector:
        # Made on first use: it registers a script with Redis (the counts metrics keep).
        return FleetCollector(self._redis)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """Sign in, then route."""
        user = authorized_user(environ.get("HTTP_AUTHORIZATION"), self._user, self._password)
        if user is None:
            body = b"Sign in to see the lipsync dashboard.\n"
            headers = [("WWW-Authenticate", CHALLENGE), ("Content-Type", "text/plain")]
            return _send(start_response, 401, body, headers + security_headers())
        try:
            page = self.route(environ, user)
        except LipsyncError as e:  # Redis out of reach, for example
            logger.warning("Dashboard page failed: %s", e)
            page = self._message(user, 503, "Unavailable", str(e))
        headers = [("Content-Type", "text/html; charset=utf-8")]
        if page.location:
            headers.append(("Location", page.location))
        headers += security_headers(page.media_origin)
        return _send(start_response, page.status, page.html.encode(), headers)

    def route(self, environ: dict[str, Any], user: str) -> Page:
        """The page a request asks for."""
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        if path in ("", "/") and method in ("GET", "HEAD"):
            return Page(303, "", location=JOBS_PATH)
        if path == JOBS_PATH and method in ("GET", "HEAD"):
            return self.jobs_page(user, parse_qs(environ.get("QUERY_STRING", "")))
        match = _JOB_PATH.match(path)
        if match is None or not is_job_id(match.group(1)):
            return self._message(user, 404, "Not found", "There is no such page or job.")
        job_id, action = match.group(1), match.group(2)
        if action == "retry" and method == "POST":
            return self.retry(environ, user, job_id)
        if action == "cancel" and method == "POST":
            return self.cancel(environ, user, job_id)
        if action is None and method in ("GET", "HEAD"):
            query = parse_qs(environ.get("QUERY_STRING", ""))
            return self.job_page(user, job_id, flash=_flash(query))
        return self._message(user, 405, "Method not allowed", f"{method} is not used here.")

    def jobs_page(self, user: str, query: dict[str, list[str]]) -> Page:
        """Counts, jobs at risk, and the newest jobs (filtered by status, kind, id prefix
        and metadata `key=value`)."""
        status = query.get("status", [""])[0]
        status = status if status in {s.value for s in JobStatus} else ""
        kind = query.get("kind", [""])[0]
        kind = kind if kind in FILTER_KINDS else ""
        prefix = query.get("q", [""])[0].strip().lower()
        meta_text = query.get("meta", [""])[0].strip()
        error = ""
        if not _ID_PREFIX.match(prefix):
            error, prefix = "A job id is 32 hex digits (0-9, a-f): search by its first few.", ""
        meta = reads.metadata_filter(meta_text)
        if meta_text and meta is None:
            error = "A metadata filter is key=value (the key up to the first =)."
        now = self._clock()
        view = reads.overview(
            self._redis,
            self._collector,
            status=status or None,
            prefix=prefix,
            meta=meta,
            kind=kind or None,
            now=now,
        )
        html = self._render(
            "jobs.html",
            user=user,
            now=now,
            counts=view.counts,
            at_risk_total=view.at_risk_total,
            at_risk=view.at_risk,
            jobs=view.jobs if not error else [],
            window_full=view.window_full,
            statuses=[s.value for s in JobStatus],
            filter_status=status,
            kinds=FILTER_KINDS,
            filter_kind=kind,
            filter_prefix=prefix,
            filter_meta=meta_text,
            filter_error=error,
            page_rows=reads.PAGE_ROWS,
            window=FILTER_WINDOW,
        )
        return Page(200, html)

    def job_page(
        self, user: str, job_id: str, *, flash: str = "", bad: bool = False, status: int = 200
    ) -> Page:
        """One job: timeline, error, metadata, archived video, retry and cancel buttons.
        `flash` is a sentence shown on top (in red when `bad`)."""
        try:
            job = self._store.get(job_id)
        except KeyError:
            return self._message(user, 404, "Not found", f"No job {job_id} (unknown or expired).")
        video_url, presign_error = self._video_url(job)
        html = self._render(
            "job.html",
            user=user,
            job=job,
            kind=akool_kind(job),
            body=None if job.body is None else json.dumps(job.body, indent=2, sort_keys=True),
            timeline=build_timeline(job),
            flash=flash,
            flash_bad=bad,
            video_url=video_url,
            presign_error=presign_error,
            presign_minutes=PRESIGN_SECONDS // 60,
            can_retry=_can_retry(job),
            can_cancel=not job.is_final,
            object_key=archive_key(self._archive_prefix, job.id, job.archive_key),
            csrf=self._csrf.issue(user, self._clock()),
            refresh_seconds=None if job.is_final else REFRESH_SECONDS,
        )
        return Page(status, html, media_origin=origin_of(video_url) if video_url else None)

    def retry(self, environ: dict[str, Any], user: str, job_id: str) -> Page:
        """Re-drive the job as `lipsync retry` does, for a form carrying a valid token."""
        refused = self._refused_form(environ, user, job_id, "retry")
        if refused is not None:
            return refused
        try:
            step = self._retry(job_id)
        except KeyError:
            return self._message(user, 404, "Not found", f"No job {job_id} (unknown or expired).")
        except ValueError as e:
            return self.job_page(user, job_id, flash=str(e), bad=True, status=409)
        logger.warning("Dashboard: %s retried job %s from its %s step", user, job_id, step)
        return Page(303, "", location=f"{JOBS_PATH}/{job_id}?retried={quote(str(step))}")

    def cancel(self, environ: dict[str, Any], user: str, job_id: str) -> Page:
        """Cancel the job as `cancel_job` does, for a form carrying a valid token; a job that
        has ended is left as it is (409, its page says so)."""
        refused = self._refused_form(environ, user, job_id, "cancel")
        if refused is not None:
            return refused
        try:
            before = self._store.get(job_id)
            after = before if before.is_final else self._cancel(job_id)
        except KeyError:
            return self._message(user, 404, "Not found", f"No job {job_id} (unknown or expired).")
        if before.is_final or after.status != JobStatus.CANCELLED:
            flash = f"Not cancelled: the job had already ended ({after.status})."
            return self.job_page(user, job_id, flash=flash, bad=True, status=409)
        logger.warning("Dashboard: %s cancelled job %s (it was %s)", user, job_id, before.status)
        return Page(303, "", location=f"{JOBS_PATH}/{job_id}?cancelled=1")

    def _refused_form(
        self, environ: dict[str, Any], user: str, job_id: str, action: str
    ) -> Page | None:
        """The answer to a POST whose form is too large or has no valid CSRF token; None
        when the form may act."""
        form = _form(environ)
        if form is None:
            return self._message(user, 413, "Too large", f"A {action} form is a few bytes.")
        if not self._csrf.valid(form.get("csrf"), user, self._clock()):
            logger.warning(
                "Dashboard: a %s of %s without a valid CSRF token refused", action, job_id
            )
            message = "This form is stale or was not sent by the dashboard: reload the job's page."
            return self._message(user, 403, "Refused", message)
        return None

    def _video_url(self, job: Job) -> tuple[str | None, str]:
        if job.status != JobStatus.ARCHIVED or not job.archive_uri:
            return None, ""
        try:
            return self._presign(job.archive_uri), ""
        except Exception as e:  # no credentials, a bad endpoint: the page still shows
            logger.warning("No presigned URL for %s: %s", job.id, e)
            return None, f"{type(e).__name__} (see the web process's log)"

    def _message(self, user: str, status: int, heading: str, message: str) -> Page:
        html = self._render("message.html", user=user, heading=heading, message=message)
        return Page(status, html)

    def _render(self, template: str, **values: Any) -> str:
        values.setdefault("refresh_seconds", None)
        return self._templates.get_template(template).render(**values)


def _flash(query: dict[str, list[str]]) -> str:
    """The sentence a redirect after a retry or a cancel asks the job's page to show."""
    step = query.get("retried", [""])[0]
    if step:
        return f"Retried: the job is re-driven from its {step} step."
    if query.get("cancelled"):
        return "Cancelled: the job will not be submitted, polled or archived any more."
    return ""


def akool_kind(job: Job) -> Kind | None:
    """The job's row of the kinds table; None for an adopted job (its kind is unknown)."""
    return KINDS.get(job.kind)


def _can_retry(job: Job) -> bool:
    """True when `lipsync retry` would re-drive the job (worker/sweeper.py retry_step). A
    cancelled job is not offered a retry: someone meant it to stop."""
    if job.status == JobStatus.CANCELLED:
        return False
    try:
        retry_step(job)
    except ValueError:
        return False
    return True


def _form(environ: dict[str, Any]) -> dict[str, str] | None:
    """The urlencoded form of a POST (first value of each field); None when too large."""
    length = ascii_int(str(environ.get("CONTENT_LENGTH") or "0").strip(" \t")) or 0
    if length > MAX_FORM_BYTES:
        return None
    body = environ["wsgi.input"].read(length) if length else b""
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    return {name: values[0] for name, values in fields.items()}


def _send(
    start_response: StartResponse, status: int, body: bytes, headers: list[tuple[str, str]]
) -> list[bytes]:
    headers = [*headers, ("Content-Length", str(len(body)))]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [body]


class InternalApp:
    """METRICS_PORT in the web process: /metrics for Prometheus (no sign-in, as before), and
    the dashboard's pages when it is configured; everything else 404."""

    def __init__(self, metrics_app: WSGIApp, dashboard: Dashboard | None) -> None:
        self._metrics = metrics_app
        self._dashboard = dashboard

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Route one request."""
        if environ.get("PATH_INFO") == METRICS_PATH:
            return self._metrics(environ, start_response)
        if self._dashboard is None:
            body = b"not found\n"
            return _send(start_response, 404, body, [("Content-Type", "text/plain")])
        return self._dashboard(environ, start_response)


def build_internal_app(settings: Settings, retry: Callable[[str], Step]) -> InternalApp:
    """METRICS_PORT's app from settings: /metrics, and the dashboard when DASHBOARD_USER and
    DASHBOARD_PASSWORD are set. `retry` re-drives a job (worker.tasks.retry_job); the
    dashboard cancels with worker.api.cancel_job."""
    client = deps.redis_client()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client))
    dashboard = None
    if settings.dashboard_user and settings.dashboard_password:
        dashboard = Dashboard(
            client,
            deps.job_store(),
            user=settings.dashboard_user,
            password=settings.dashboard_password.reveal(),
            presign=presigner(deps.s3_client(settings.s3_endpoint_url)),
            retry=retry,
            archive_prefix=settings.archive_prefix,
        )
    return InternalApp(make_wsgi_app(registry), dashboard)
