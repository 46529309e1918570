"""The dashboard and the caller's contract, against a fake store (no Redis): a job's
metadata, idempotency key, archive key and adoption on its page, escaped whatever they hold;
the Cancel button and its route (CSRF, 404, a job that has ended); the metadata filter's
parsing; a cancelled job's timeline."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, cast

import pytest

from tests.unit.web.test_dashboard import AUTH, JOB_ID, NOW, PASSWORD, USER, Call, FakeStore, job
from worker.names import Step
from worker.status import JobStatus
from worker.store.jobs import JobStore
from worker.store.records import Job
from worker.web.dashboard.app import Dashboard
from worker.web.dashboard.auth import CsrfTokens
from worker.web.dashboard.reads import has_metadata, metadata_filter
from worker.web.dashboard.timeline import build_timeline

CANCEL_PATH = f"/jobs/{JOB_ID}/cancel"
CANCELLED_ERROR = "cancelled by the application"
HOSTILE = {
    "<script>alert('k')</script>": "<script>alert('v')</script>",
    "order": '"><img src=x onerror=alert(1)>',
    "amp&": "a & b",
}


class CancellingStore(FakeStore):
    """The fake store, and `cancel_job`'s rule: a job that has not ended becomes cancelled,
    one that has is returned as it is; KeyError for an unknown id."""

    def __init__(self, *jobs: Job) -> None:
        super().__init__(*jobs)
        self.cancelled: list[str] = []

    def cancel_job(self, job_id: str) -> Job:
        current = self.jobs[job_id]
        if current.is_final:
            return current
        self.cancelled.append(job_id)
        ended = dataclasses.replace(current, status=JobStatus.CANCELLED, error=CANCELLED_ERROR)
        self.jobs[job_id] = ended
        return ended


def dashboard(
    store: CancellingStore, tokens: CsrfTokens | None = None, cancel: Any = None
) -> Dashboard:
    return Dashboard(
        cast(Any, None),  # the jobs page's Redis is not used by these tests
        cast(JobStore, store),
        user=USER,
        password=PASSWORD,
        presign=lambda uri: "http://127.0.0.1:9000/bucket/key.mp4?X-Amz-Signature=abc",
        retry=lambda job_id: Step.POLL,
        cancel=cancel or store.cancel_job,
        archive_prefix="lipsync/",
        csrf=tokens,
        clock=lambda: NOW,
    )


def page_of(*jobs: Job) -> str:
    answer = Call(dashboard(CancellingStore(*jobs)), "GET", f"/jobs/{JOB_ID}", **AUTH)
    assert answer.status == 200
    return answer.body


# --- the job page -------------------------------------------------------------------------


def test_hostile_metadata_keys_and_values_are_shown_escaped_in_the_metadata_table() -> None:
    body = page_of(job(metadata=HOSTILE, idempotency_key="<b>key</b>"))
    table = body.split('<table id="metadata">')[1].split("</table>")[0]

    assert "<script>" not in body and "<img" not in body and "<b>key" not in body
    assert "&lt;script&gt;alert(&#39;k&#39;)&lt;/script&gt;" in table
    assert "&lt;script&gt;alert(&#39;v&#39;)&lt;/script&gt;" in table
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in table
    assert "a &amp; b" in table
    assert table.count("<tr>") == 1 + len(HOSTILE)
    assert 'id="idempotency-key">&lt;b&gt;key&lt;/b&gt;</dd>' in body


def test_a_job_without_metadata_has_no_metadata_table_and_its_default_archive_key() -> None:
    body = page_of(job())

    assert 'id="metadata"' not in body and 'id="idempotency-key"' not in body
    assert f'<code id="archive-key">lipsync/{JOB_ID}.mp4</code>' in body
    assert "(the default: the job id)" in body
    assert 'id="adopted"' not in body


def test_the_archive_key_a_caller_chose_is_shown_under_the_prefix_escaped() -> None:
    body = page_of(job(archive_key="clients/<7>/take 1.mp4"))
    assert '<code id="archive-key">lipsync/clients/&lt;7&gt;/take 1.mp4</code>' in body
    assert "(the caller's archive_key)" in body


def test_an_adopted_job_says_so() -> None:
    body = page_of(job(adopted_ts=NOW - 60, video_url="", audio_url="", akool_id="ak-9"))
    assert '<span class="status" id="adopted">adopted</span>' in body
    assert "submitted to Akool by other code, never by us" in body


@pytest.mark.parametrize(
    "status", [JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.PROCESSING, JobStatus.ARCHIVING]
)
def test_a_job_that_has_not_ended_offers_a_cancel_form_with_the_csrf_token(
    status: JobStatus,
) -> None:
    body = page_of(job(status=status))
    form = body.split('<form method="post" action="/jobs/' + JOB_ID + '/cancel"')[1]
    assert 'name="csrf" value="' in form.split("</form>")[0]
    assert 'id="cancel"' in form


@pytest.mark.parametrize("status", [JobStatus.ARCHIVED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_job_that_has_ended_offers_no_cancel(status: JobStatus) -> None:
    assert 'id="cancel-form"' not in page_of(job(status=status, archive_uri="s3://b/k.mp4"))


def test_a_cancelled_job_shows_its_status_and_why_and_offers_no_retry() -> None:
    body = page_of(job(status=JobStatus.CANCELLED, error=CANCELLED_ERROR))
    assert 'class="status status-cancelled" id="status">cancelled</span>' in body
    assert f'<p class="error" id="error">{CANCELLED_ERROR}</p>' in body
    assert 'id="retry-form"' not in body
    assert 'http-equiv="refresh"' not in body  # final: no reloading


def test_a_cancelled_jobs_timeline_ends_with_its_cancel() -> None:
    cancelled = job(status=JobStatus.CANCELLED, error=CANCELLED_ERROR, updated_ts=NOW - 5)
    last = build_timeline(cancelled)[-1]
    assert (last.what, last.detail, last.kind, last.ts) == (
        "cancelled",
        CANCELLED_ERROR,
        "error",
        NOW - 5,
    )


# --- the cancel route ---------------------------------------------------------------------


def test_a_cancel_with_the_pages_token_cancels_the_job_and_redirects_to_its_page() -> None:
    tokens, store = CsrfTokens(), CancellingStore(job(status=JobStatus.PROCESSING))
    app = dashboard(store, tokens)
    answer = Call(app, "POST", CANCEL_PATH, body=f"csrf={tokens.issue(USER, NOW)}", **AUTH)

    assert answer.status == 303
    assert answer.headers["Location"] == f"/jobs/{JOB_ID}?cancelled=1"
    assert store.cancelled == [JOB_ID]
    after = Call(app, "GET", answer.headers["Location"], **AUTH).body
    assert 'id="flash">Cancelled: the job will not be submitted' in after
    assert ">cancelled</span>" in after


def test_a_cancel_without_a_valid_token_is_refused_403_logged_and_cancels_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CancellingStore(job(status=JobStatus.QUEUED))
    app = dashboard(store)
    stale = CsrfTokens().issue(USER, NOW)  # another server's key, as before a restart
    with caplog.at_level(logging.WARNING, logger="worker.web.dashboard.app"):
        answers = [
            Call(app, "POST", CANCEL_PATH, **AUTH),
            Call(app, "POST", CANCEL_PATH, body="csrf=123.abc", **AUTH),
            Call(app, "POST", CANCEL_PATH, body=f"csrf={stale}", **AUTH),
        ]

    assert [a.status for a in answers] == [403, 403, 403]
    assert store.cancelled == [] and store.jobs[JOB_ID].status == JobStatus.QUEUED
    refused = f"Dashboard: a cancel of {JOB_ID} without a valid CSRF token refused"
    assert caplog.messages.count(refused) == 3


def test_a_token_of_another_user_or_no_sign_in_cancels_nothing() -> None:
    tokens, store = CsrfTokens(), CancellingStore(job())
    app = dashboard(store, tokens)
    theirs = f"csrf={tokens.issue('someone-else', NOW)}"

    assert Call(app, "POST", CANCEL_PATH, body=theirs, **AUTH).status == 403
    mine = f"csrf={tokens.issue(USER, NOW)}"
    assert Call(app, "POST", CANCEL_PATH, body=mine).status == 401
    assert store.cancelled == []


def test_a_cancel_of_an_unknown_job_is_404() -> None:
    tokens = CsrfTokens()
    answer = Call(
        dashboard(CancellingStore(), tokens),
        "POST",
        CANCEL_PATH,
        body=f"csrf={tokens.issue(USER, NOW)}",
        **AUTH,
    )
    assert answer.status == 404


@pytest.mark.parametrize("status", [JobStatus.ARCHIVED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_cancel_of_a_job_that_has_ended_changes_nothing_and_says_so(status: JobStatus) -> None:
    tokens, ended = CsrfTokens(), job(status=status, error="it ended")
    store = CancellingStore(ended)
    answer = Call(
        dashboard(store, tokens),
        "POST",
        CANCEL_PATH,
        body=f"csrf={tokens.issue(USER, NOW)}",
        **AUTH,
    )

    assert answer.status == 409
    assert f"Not cancelled: the job had already ended ({status})." in answer.body
    assert store.cancelled == [] and store.jobs[JOB_ID] == ended


def test_a_job_that_ends_just_before_its_cancel_is_reported_as_ended() -> None:
    tokens, store = CsrfTokens(), CancellingStore(job(status=JobStatus.ARCHIVING))

    def archived_meanwhile(job_id: str) -> Job:
        store.jobs[job_id] = dataclasses.replace(store.jobs[job_id], status=JobStatus.ARCHIVED)
        return store.jobs[job_id]

    app = dashboard(store, tokens, cancel=archived_meanwhile)
    answer = Call(app, "POST", CANCEL_PATH, body=f"csrf={tokens.issue(USER, NOW)}", **AUTH)

    assert answer.status == 409
    assert "already ended (archived)" in answer.body


def test_a_cancel_is_posted_only_and_a_huge_form_is_refused() -> None:
    store = CancellingStore(job())
    app = dashboard(store)

    assert Call(app, "GET", CANCEL_PATH, **AUTH).status == 405
    assert Call(app, "POST", CANCEL_PATH, body="csrf=" + "x" * 5000, **AUTH).status == 413
    assert Call(app, "POST", f"/jobs/{JOB_ID}/cancel/", **AUTH).status == 404
    assert store.cancelled == []


# --- the metadata filter ------------------------------------------------------------------


def test_a_metadata_filter_is_split_at_the_first_equals_sign() -> None:
    assert metadata_filter("client=acme") == ("client", "acme")
    assert metadata_filter("q=a=b") == ("q", "a=b")
    assert metadata_filter("empty=") == ("empty", "")
    assert metadata_filter("<k>=<v>") == ("<k>", "<v>")
    for text in ("", "client", "=acme"):
        assert metadata_filter(text) is None


def test_a_records_metadata_matches_only_the_exact_key_and_value() -> None:
    stored = b'{"client": "acme", "n": "1"}'
    assert has_metadata(stored, "client", "acme")
    assert not has_metadata(stored, "client", "acm")
    assert not has_metadata(stored, "Client", "acme")
    for unreadable in (None, b"", b"not json", b"\xff", b'["client"]', Exception("down")):
        assert not has_metadata(unreadable, "client", "acme")
