"""The dashboard's plain parts: basic auth, CSRF tokens, the poll log, the timeline, and
the pages' routing and headers against a fake store (no Redis)."""

from __future__ import annotations

import base64
import io
from typing import Any, cast

import pytest

from worker.config.settings import ConfigError, Secret, load_settings
from worker.names import Step
from worker.status import JobStatus
from worker.store.jobs import JobStore
from worker.store.records import POLL_LOG_ENTRIES, Job, poll_log_entries, poll_log_with
from worker.web.dashboard import app as dashboard_app
from worker.web.dashboard.app import Dashboard, InternalApp, duration_text, origin_of
from worker.web.dashboard.auth import CsrfTokens, authorized_user, basic_credentials
from worker.web.dashboard.timeline import build_timeline, size_text

NOW = 1_800_000_000.0
JOB_ID = "0123456789abcdef0123456789abcdef"
USER, PASSWORD = "ops", "s3cret pass:word"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def job(**values: Any) -> Job:
    values.setdefault("id", JOB_ID)
    values.setdefault("status", JobStatus.PROCESSING)
    values.setdefault("video_url", "https://videos.example.com/in.mp4")
    values.setdefault("audio_url", "https://videos.example.com/voice.wav")
    values.setdefault("created_ts", NOW - 600)
    values.setdefault("updated_ts", NOW - 10)
    return Job(**values)


# --- basic auth ---------------------------------------------------------------------------


def test_the_right_user_and_password_sign_in() -> None:
    assert authorized_user(basic(USER, PASSWORD), USER, PASSWORD) == USER


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        basic("ops", "wrong"),
        basic("other", PASSWORD),
        basic("", ""),
        "Bearer abc",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    ],
)
def test_anything_else_is_refused(header: str | None) -> None:
    assert authorized_user(header, USER, PASSWORD) is None


def test_a_password_may_hold_colons_and_the_scheme_any_case() -> None:
    header = basic(USER, PASSWORD).replace("Basic", "bAsIc")
    assert basic_credentials(header) == (USER, PASSWORD)


# --- CSRF tokens --------------------------------------------------------------------------


def test_a_token_is_valid_for_the_user_it_was_issued_to_while_fresh() -> None:
    tokens = CsrfTokens(max_age=3600)
    token = tokens.issue(USER, NOW)

    assert tokens.valid(token, USER, NOW + 60)
    assert not tokens.valid(token, "someone-else", NOW + 60)
    assert not tokens.valid(token, USER, NOW + 3601)
    assert not tokens.valid(token, USER, NOW - 60)  # from the future


@pytest.mark.parametrize(
    "token", [None, "", "garbage", "123.", ".abc", "12x.ab", "1800000000.é", "9" * 40 + ".ab"]
)
def test_a_missing_or_malformed_token_is_refused(token: str | None) -> None:
    assert not CsrfTokens().valid(token, USER, NOW)


def test_a_tampered_token_or_one_from_before_a_restart_is_refused() -> None:
    tokens = CsrfTokens()
    issued, _, mac = tokens.issue(USER, NOW).partition(".")
    assert not tokens.valid(f"{int(issued) + 1}.{mac}", USER, NOW)
    assert not CsrfTokens().valid(tokens.issue(USER, NOW), USER, NOW)  # another key


# --- the poll log -------------------------------------------------------------------------


def test_the_poll_log_keeps_the_newest_entries_only() -> None:
    log = None
    for i in range(POLL_LOG_ENTRIES + 15):
        log = poll_log_with(log, i * 5.7, 2 if i else 1)
    entries = poll_log_entries(log)

    assert len(entries) == POLL_LOG_ENTRIES
    assert entries[-1] == (int((POLL_LOG_ENTRIES + 14) * 5.7), "2")
    assert entries[0] == (int(15 * 5.7), "2")
    # About 7 bytes a poll: the record stays small (2 hours of polls, 20 kept).
    assert len(poll_log_with(log, 7200, 3)) <= POLL_LOG_ENTRIES * 8


def test_a_poll_log_entry_that_does_not_parse_is_skipped() -> None:
    assert poll_log_entries("5:1,bad,x:2,,12:2,٣:1") == [(5, "1"), (12, "2")]
    assert poll_log_entries(None) == []


def test_a_poll_logged_before_creation_by_a_skewed_clock_counts_from_zero() -> None:
    assert poll_log_with("", -3.2, 1) == "0:1"


# --- the timeline -------------------------------------------------------------------------


def test_the_timeline_of_an_archived_job_has_every_step_in_order() -> None:
    created = NOW - 600
    archived = job(
        status=JobStatus.ARCHIVED,
        submitted_ts=created + 1,
        akool_id="ak-1",
        poll_log="6:1,12:2,30:3",
        polls=3,
        completed_ts=created + 30,
        archived_ts=created + 33,
        archive_uri="s3://bucket/lipsync/x.mp4",
        archive_bytes=3 * 2**20,
        expires_ts=created + 7 * 86400,
    )
    events = build_timeline(archived)

    assert [e.what for e in events] == [
        "created",
        "submitted",
        "poll 1",
        "poll 2",
        "poll 3",
        "completed",
        "archived",
    ]
    assert events[2].detail == "Akool status 1 (queued)"
    assert events[4].detail == "Akool status 3 (done)"
    assert events[-1].detail == "s3://bucket/lipsync/x.mp4 (3.0 MiB)"
    assert [e.ts for e in events] == sorted(e.ts for e in events)


def test_the_timeline_of_a_failed_job_ends_with_its_error_and_the_deletion_ahead() -> None:
    failed = job(
        status=JobStatus.FAILED,
        error="Akool reported that the lip-sync failed (video_status 4)",
        submitted_ts=NOW - 590,
        poll_log="20:2,40:4",
        polls=2,
        expires_ts=NOW + 86400,
    )
    events = build_timeline(failed)

    assert events[-2].what == "failed" and events[-2].kind == "error"
    assert events[-2].detail == failed.error
    assert events[-1].kind == "future"


def test_a_poll_in_the_same_second_as_the_submit_is_shown_after_it() -> None:
    # The log keeps whole seconds after creation: 0 is up to a second before the submit.
    events = build_timeline(job(created_ts=NOW + 0.9, submitted_ts=NOW + 1.5, poll_log="0:1"))
    assert [e.what for e in events] == ["created", "submitted", "poll 1"]


def test_polls_older_than_the_log_are_summed_up_in_one_line() -> None:
    log = ",".join(f"{60 * i}:2" for i in range(1, POLL_LOG_ENTRIES + 1))
    events = build_timeline(job(poll_log=log, polls=50, submitted_ts=NOW - 599))
    polls = [e.what for e in events if e.kind == "poll"]

    assert polls[0] == "polls 1 to 30"
    assert polls[1] == "poll 31" and polls[-1] == "poll 50"


def test_a_running_archive_shows_its_progress() -> None:
    running = job(
        status=JobStatus.ARCHIVING, archive_progress_bytes=2**20, archive_total_bytes=4 * 2**20
    )
    progress = [e for e in build_timeline(running) if e.kind == "progress"]
    assert progress[0].detail == "1.0 MiB of 4.0 MiB copied"


def test_sizes_and_durations_read_in_their_unit() -> None:
    assert [size_text(n) for n in (None, 512, 2048, 5 * 2**30)] == [
        "",
        "512 B",
        "2.0 KiB",
        "5.0 GiB",
    ]
    assert [duration_text(s) for s in (-1, 42, 300, 7300, 200000)] == [
        "0 s",
        "42 s",
        "5 min",
        "2 h",
        "2 d",
    ]


def test_the_media_origin_is_the_presigned_urls_scheme_host_and_port() -> None:
    assert origin_of("http://127.0.0.1:9000/b/k.mp4?X-Amz=1") == "http://127.0.0.1:9000"
    assert origin_of("https://b.s3.amazonaws.com/k") == "https://b.s3.amazonaws.com"
    assert origin_of("javascript:alert(1)") is None


# --- settings -----------------------------------------------------------------------------


def test_the_dashboard_settings_go_together_and_the_password_is_a_secret() -> None:
    on = load_settings({"DASHBOARD_USER": "ops", "DASHBOARD_PASSWORD": "pw"})
    assert on.dashboard_user == "ops" and on.dashboard_password == Secret("pw")
    assert "pw" not in repr(on)
    off = load_settings({})
    assert off.dashboard_user is None and off.dashboard_password is None
    with pytest.raises(ConfigError, match="DASHBOARD_PASSWORD"):
        load_settings({"DASHBOARD_USER": "ops"})
    with pytest.raises(ConfigError, match="DASHBOARD_USER"):
        load_settings({"DASHBOARD_PASSWORD": "pw"})


# --- the pages, against a fake store --------------------------------------------------------


class FakeStore:
    def __init__(self, *jobs: Job) -> None:
        self.jobs = {j.id: j for j in jobs}

    def get(self, job_id: str) -> Job:
        return self.jobs[job_id]


class Call:
    """One WSGI request's answer."""

    def __init__(self, app: Any, method: str, path: str, **headers: str) -> None:
        body = headers.pop("body", "").encode()
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path.partition("?")[0],
            "QUERY_STRING": path.partition("?")[2],
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            **headers,
        }
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            captured["status"], captured["headers"] = status, headers

        self.body = b"".join(app(environ, start_response)).decode()
        self.status = int(captured["status"].split()[0])
        self.headers = dict(captured["headers"])


def dashboard(*jobs: Job, retry: Any = None, tokens: CsrfTokens | None = None) -> Dashboard:
    return Dashboard(
        cast(Any, None),  # the jobs page's Redis is not used by these tests
        cast(JobStore, FakeStore(*jobs)),
        user=USER,
        password=PASSWORD,
        presign=lambda uri: "http://127.0.0.1:9000/bucket/key.mp4?X-Amz-Signature=abc",
        retry=retry or (lambda job_id: Step.POLL),
        csrf=tokens,
        clock=lambda: NOW,
    )


AUTH = {"HTTP_AUTHORIZATION": basic(USER, PASSWORD)}


def test_without_credentials_every_page_answers_401_with_a_challenge() -> None:
    app = dashboard(job())
    for path in ("/jobs", f"/jobs/{JOB_ID}", "/nowhere"):
        answer = Call(app, "GET", path)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith('Basic realm="lipsync dashboard"')
        assert answer.headers["Cache-Control"] == "no-store"


def test_a_job_page_is_escaped_and_sent_with_strict_headers() -> None:
    hostile = job(status=JobStatus.FAILED, error="<script>alert(1)</script>")
    answer = Call(dashboard(hostile), "GET", f"/jobs/{JOB_ID}", **AUTH)

    assert answer.status == 200
    assert "<script>alert(1)" not in answer.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.body
    csp = answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'none'" in csp
    assert "media-src 'none'" in csp
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"
    assert 'name="csrf"' in answer.body  # retryable: the form is there


def test_an_archived_jobs_page_plays_the_video_from_the_s3_origin_only() -> None:
    archived = job(status=JobStatus.ARCHIVED, archive_uri="s3://bucket/key.mp4", archive_bytes=9)
    answer = Call(dashboard(archived), "GET", f"/jobs/{JOB_ID}", **AUTH)

    assert '<video id="player"' in answer.body
    assert "X-Amz-Signature=abc" in answer.body
    assert "media-src http://127.0.0.1:9000" in answer.headers["Content-Security-Policy"]
    assert 'name="csrf"' not in answer.body  # nothing to retry
    assert 'http-equiv="refresh"' not in answer.body  # final: no reloading


def test_a_waiting_jobs_page_says_what_it_waits_on_escaped_and_since_when() -> None:
    waiting = job(
        wait_on="file",
        wait_since_ts=NOW - 120,
        wait_tries=4,
        wait_detail="the result URL answers HTTP 404 <b>",
    )
    answer = Call(dashboard(waiting), "GET", f"/jobs/{JOB_ID}", **AUTH)

    assert 'id="waiting"' in answer.body
    assert "the result URL answers HTTP 404 &lt;b&gt;; tried 4 times since" in answer.body
    assert "<b>" not in answer.body.split('id="waiting"')[1].split("</p>")[0]


def test_a_running_jobs_page_reloads_itself() -> None:
    answer = Call(dashboard(job()), "GET", f"/jobs/{JOB_ID}", **AUTH)
    assert '<meta http-equiv="refresh" content="3">' in answer.body


@pytest.mark.parametrize("path", [f"/jobs/{JOB_ID.upper()}", "/jobs/../etc", "/jobs/x/retry"])
def test_an_id_that_is_not_a_job_id_is_404(path: str) -> None:
    assert Call(dashboard(job()), "GET", path, **AUTH).status == 404


def test_an_unknown_job_is_404() -> None:
    assert Call(dashboard(), "GET", f"/jobs/{JOB_ID}", **AUTH).status == 404


def test_a_retry_without_a_valid_token_is_refused_403_and_retries_nothing() -> None:
    retried: list[str] = []
    app = dashboard(job(status=JobStatus.FAILED), retry=lambda i: retried.append(i) or Step.POLL)
    path = f"/jobs/{JOB_ID}/retry"

    assert Call(app, "POST", path, **AUTH).status == 403
    assert Call(app, "POST", path, body="csrf=123.abc", **AUTH).status == 403
    assert retried == []


def test_a_retry_with_the_pages_token_re_drives_the_job_and_redirects_to_it() -> None:
    tokens = CsrfTokens()
    retried: list[str] = []
    app = dashboard(
        job(status=JobStatus.FAILED), retry=lambda i: retried.append(i) or Step.POLL, tokens=tokens
    )
    form = f"csrf={tokens.issue(USER, NOW)}"
    answer = Call(app, "POST", f"/jobs/{JOB_ID}/retry", body=form, **AUTH)

    assert answer.status == 303
    assert answer.headers["Location"] == f"/jobs/{JOB_ID}?retried=poll"
    assert retried == [JOB_ID]


def test_a_retry_that_lipsync_retry_would_refuse_shows_why_with_409() -> None:
    tokens = CsrfTokens()

    def refuse(job_id: str) -> Step:
        raise ValueError(f"job {job_id} is archived; there is nothing to retry")

    app = dashboard(job(status=JobStatus.FAILED), retry=refuse, tokens=tokens)
    form = f"csrf={tokens.issue(USER, NOW)}"
    answer = Call(app, "POST", f"/jobs/{JOB_ID}/retry", body=form, **AUTH)

    assert answer.status == 409
    assert "there is nothing to retry" in answer.body


def test_the_internal_port_serves_metrics_openly_and_the_dashboard_only_when_configured() -> None:
    def metrics(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"lipsync_jobs 1\n"]

    off = InternalApp(metrics, None)
    assert Call(off, "GET", "/metrics").body == "lipsync_jobs 1\n"
    assert Call(off, "GET", "/jobs", **AUTH).status == 404
    on = InternalApp(metrics, dashboard(job()))
    assert Call(on, "GET", "/metrics").status == 200
    assert Call(on, "GET", "/jobs").status == 401
    assert Call(on, "GET", f"/jobs/{JOB_ID}", **AUTH).status == 200


def test_the_templates_autoescape() -> None:
    env = dashboard_app._environment()
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert env.get_template("message.html").render(heading="<i>", message="", user="u")
