"""Tests of worker.web.callbacks without a network or Redis: reading and verifying a signed
callback, its payload, the Receiver (replays, handler failures, a bad secret) and what the
handler logs."""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import pytest

from tests.unit.callback_fakes import (
    CLIENT_ID,
    MAX_AGE,
    NOW,
    NOW_MS,
    PAYLOAD,
    SECRET_128,
    MemoryNonces,
    RecordingHandler,
    body_of,
    fresh,
    receiver,
    resigned,
)
from worker import messages
from worker.akool.crypto import encrypt_payload
from worker.akool.reconcile import (
    Route,
    adopt,
    adoption,
    callback_url,
    read_route,
    token_matches,
    without_token,
)
from worker.config.settings import Settings
from worker.errors import WebhookKeyError, WebhookRejected
from worker.status import JobStatus
from worker.store.jobs import Job, JobStore, new_job_id
from worker.web.callbacks import (
    Callback,
    CallbackHandler,
    Receiver,
    parse_callback,
    read_envelope,
    verify_envelope,
)

BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# A payload whose ciphertext (112 bytes) is no multiple of 3 bytes: its base64 ends in "==".
PADDED_PAYLOAD = {**PAYLOAD, "url": "https://x/" + "y" * 20}

# --- verification ------------------------------------------------------------------------------


def test_a_fresh_correctly_signed_callback_verifies() -> None:
    envelope = read_envelope(body_of(fresh()))
    verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)
    assert (envelope.timestamp, envelope.nonce) == (NOW_MS, "1529")


@pytest.mark.parametrize(
    "change",
    [
        {"dataEncrypt": encrypt_payload({"_id": "other", "status": 3}, CLIENT_ID, SECRET_128)},
        {"nonce": "1530"},
        {"timestamp": NOW_MS + 1},
        {"signature": "0" * 40},
    ],
)
def test_a_changed_field_breaks_the_signature(change: dict[str, Any]) -> None:
    envelope = read_envelope(body_of({**fresh(), **change}))
    with pytest.raises(WebhookRejected, match="signature") as caught:
        verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)
    assert caught.value.http_status == 401


def test_a_callback_signed_with_another_client_id_is_refused() -> None:
    envelope = read_envelope(body_of(fresh()))
    with pytest.raises(WebhookRejected, match="signature"):
        verify_envelope(envelope, "someone-else", max_age_seconds=MAX_AGE, now=NOW)


@pytest.mark.parametrize("offset_seconds", [-MAX_AGE - 1, MAX_AGE + 1])
def test_a_timestamp_older_or_newer_than_the_max_age_is_refused(offset_seconds: float) -> None:
    callback = fresh(timestamp_ms=NOW_MS + int(offset_seconds * 1000))
    envelope = read_envelope(body_of(callback))
    with pytest.raises(WebhookRejected, match="WEBHOOK_MAX_AGE_SECONDS") as caught:
        verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)
    assert caught.value.http_status == 401


def test_a_timestamp_just_within_the_max_age_is_accepted() -> None:
    envelope = read_envelope(body_of(fresh(timestamp_ms=NOW_MS - int(MAX_AGE * 1000) + 1)))
    verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)


def test_a_numeric_nonce_is_read_as_text() -> None:
    assert read_envelope(body_of(fresh(nonce=1529))).nonce == "1529"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        body_of({"signature": "a", "timestamp": 1, "nonce": "1"}),
        body_of({**fresh(), "timestamp": "soon"}),
        body_of({**fresh(), "nonce": "n" * 1000}),
        body_of({**fresh(), "nonce": True}),
        body_of({**fresh(), "signature": None}),
        body_of({**fresh(), "nonce": "\ud800"}),
        body_of({**fresh(), "signature": "\udfff" * 40}),
        body_of({**fresh(), "dataEncrypt": "\u00e9" + fresh()["dataEncrypt"]}),
    ],
)
def test_malformed_bodies_are_refused_as_bad_requests(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        read_envelope(body)
    assert caught.value.http_status == 400


@pytest.mark.parametrize("timestamp", ["\u00b2", "\u0661\u0667\u0661\u0660", "\uff11\uff17\uff11"])
def test_a_timestamp_in_digits_other_than_ascii_is_refused_as_a_bad_request(
    timestamp: str,
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        receiver(RecordingHandler()).receive(body_of({**fresh(), "timestamp": timestamp}))
    assert caught.value.http_status == 400


def test_a_timestamp_in_arabic_indic_digits_is_not_read_as_the_signed_number() -> None:
    # int() reads these digits as NOW_MS, which the body was signed with.
    arabic = "".join(chr(0x0660 + int(d)) for d in str(NOW_MS))
    with pytest.raises(WebhookRejected) as caught:
        receiver(RecordingHandler()).receive(body_of({**fresh(), "timestamp": arabic}))
    assert caught.value.http_status == 400


@pytest.mark.parametrize("body", [b"[" * 30_000, b'{"a": ' * 30_000], ids=["array", "object"])
def test_json_nested_30000_deep_is_refused_as_a_bad_request(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        receiver(RecordingHandler()).receive(body)
    assert caught.value.http_status == 400


def test_a_payload_nested_30000_deep_is_refused_as_a_bad_request() -> None:
    deep = {"dataEncrypt": encrypt_payload(b"[" * 30_000, CLIENT_ID, SECRET_128)}
    with pytest.raises(WebhookRejected) as caught:
        receiver(RecordingHandler()).receive(body_of(resigned(deep, nonce="1")))
    assert caught.value.http_status == 400


def test_the_decrypted_payload_becomes_a_callback() -> None:
    assert parse_callback(PAYLOAD) == Callback(PAYLOAD["_id"], 3, "lipsync", "https://x/y")
    assert parse_callback({"_id": "a", "status": 4, "url": ""}).url is None
    with pytest.raises(WebhookRejected):
        parse_callback({"_id": "a", "status": "3"})


@pytest.mark.parametrize("url", ["null", "/files/x.mp4", "ftp://h/x.mp4", 42, "https://"])
def test_a_completion_callback_without_a_usable_url_carries_no_url(url: object) -> None:
    # Then the job is not marked done: polling asks Akool for the URL (the rule of proof).
    assert parse_callback({"_id": "a", "status": 3, "url": url}).url is None


# --- the receiver -------------------------------------------------------------------------------


def test_an_accepted_callback_reaches_the_handler_decrypted() -> None:
    handler = RecordingHandler()
    assert receiver(handler).receive(body_of(fresh())) == "handled"
    assert handler.callbacks == [parse_callback(PAYLOAD)]


def test_a_replayed_callback_is_refused_and_not_handled_twice() -> None:
    handler = RecordingHandler()
    app = receiver(handler)
    body = body_of(fresh())
    app.receive(body)
    with pytest.raises(WebhookRejected, match="replay") as caught:
        app.receive(body)
    assert caught.value.http_status == 401
    assert len(handler.callbacks) == 1


def test_the_same_data_encrypt_re_signed_with_a_fresh_nonce_and_timestamp_is_a_replay() -> None:
    handler = RecordingHandler()
    app = receiver(handler)
    first = fresh()
    app.receive(body_of(first))
    again = resigned(first, nonce="7777", timestamp_ms=NOW_MS + 1000)
    with pytest.raises(WebhookRejected, match="replay") as caught:
        app.receive(body_of(again))
    assert caught.value.http_status == 401
    assert len(handler.callbacks) == 1


def respelled(data: str) -> str:
    """The same bytes in other base64 text: a spare low bit of the last character set."""
    text = data.rstrip("=")
    padding = data[len(text) :]
    assert padding, "only base64 that ends in padding has spare bits"
    last = BASE64_ALPHABET[BASE64_ALPHABET.index(text[-1]) | 1]
    return text[:-1] + last + padding


def test_a_data_encrypt_spelled_differently_in_base64_is_still_a_replay() -> None:
    first = fresh(PADDED_PAYLOAD)
    other_spelling = respelled(first["dataEncrypt"])
    assert other_spelling != first["dataEncrypt"]
    assert base64.b64decode(other_spelling) == base64.b64decode(first["dataEncrypt"])
    app = receiver(RecordingHandler())
    app.receive(body_of(first))
    again = resigned({"dataEncrypt": other_spelling}, nonce="7777", timestamp_ms=NOW_MS + 1)
    with pytest.raises(WebhookRejected, match="replay"):
        app.receive(body_of(again))


def same_body(callback: dict[str, Any]) -> dict[str, Any]:
    """Akool's retry as the very same body."""
    return callback


@pytest.mark.parametrize(
    "retry",
    [same_body, lambda callback: resigned(callback, nonce="7777", timestamp_ms=NOW_MS + 1000)],
    ids=["same-body", "re-signed"],
)
def test_a_handler_failure_lets_the_same_callback_through_on_akools_retry(
    retry: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    nonces = MemoryNonces()
    callback = fresh()
    with pytest.raises(RuntimeError):
        receiver(RecordingHandler(RuntimeError("redis down")), nonces).receive(body_of(callback))
    assert (nonces.seen, nonces.payloads) == (set(), set())
    handler = RecordingHandler()
    assert receiver(handler, nonces).receive(body_of(retry(callback))) == "handled"


def test_a_bad_signature_is_refused_before_the_nonce_is_remembered() -> None:
    nonces = MemoryNonces()
    with pytest.raises(WebhookRejected):
        receiver(RecordingHandler(), nonces).receive(body_of({**fresh(), "signature": "0" * 40}))
    assert nonces.seen == set()


def test_a_receiver_with_a_secret_that_is_no_aes_key_fails_at_start() -> None:
    with pytest.raises(WebhookKeyError):
        Receiver(
            client_id=CLIENT_ID,
            client_secret="sim-client-secret",
            max_age_seconds=MAX_AGE,
            nonces=MemoryNonces(),
            handler=RecordingHandler(),
        )


# --- what the handler logs -------------------------------------------------------------------


class NoJobs:
    """A JobStore that knows no Akool id."""

    def job_for_akool_id(self, akool_id: str) -> None:
        return None


def test_an_akool_id_with_control_characters_is_logged_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = CallbackHandler(
        cast(JobStore, NoJobs()),
        cast(Settings, None),
        enqueue_archive=lambda job_id: None,
        job_ended=lambda job_id: None,
    )
    forged = "65f8\n[2024-03-18 10:33:01,609: ERROR/MainProcess] forged\x1b[2J\x9b\x7f"
    with caplog.at_level(logging.INFO, logger="worker.web.callbacks"):
        assert handler.handle(Callback(forged, 3), NOW) == "unknown-job"
    message = caplog.records[-1].getMessage()
    assert not any(c in message for c in "\n\x1b\x9b\x7f")
    assert "65f8\\x0a[2024" in message and "forged\\x1b[2J\\x9b\\x7f" in message


# --- a callback naming its job by URL (worker/akool/reconcile.py) -----------------------------

TOKEN = "s3cr3t-token-0123456789abcdefghij"
SETTINGS = Settings(stall_seconds=30.0, poll_timeout_seconds=3600.0)
CLAIMED = NOW - 120


def a_job(**values: Any) -> Job:
    values.setdefault("id", new_job_id())
    values.setdefault("status", JobStatus.SUBMITTED)
    values.setdefault("webhook_token", TOKEN)
    values.setdefault("submit_claimed_ts", CLAIMED)
    values.setdefault("submit_unknown_ts", CLAIMED + 1)
    return Job(video_url="https://v.example/in.mp4", audio_url="https://v.example/a.wav", **values)


class JobsByRoute:
    """The JobStore methods the handler uses, in dicts; final jobs never change."""

    def __init__(self, *jobs: Job) -> None:
        self.jobs = {j.id: j for j in jobs}
        self.index: dict[str, str] = {}
        self.dues: dict[str, float] = {}
        self.archive_claims: set[str] = set()

    def get(self, job_id: str) -> Job:
        return self.jobs[job_id]

    def read(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def job_for_akool_id(self, akool_id: str) -> str | None:
        return self.index.get(akool_id)

    def remember_akool_id(self, job_id: str, akool_id: str) -> None:
        self.index[akool_id] = job_id

    def update(self, job_id: str, *, due: float | None = None, **values: Any) -> bool:
        if self.jobs[job_id].is_final:
            return False
        if due is not None:
            self.dues[job_id] = due
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], **values)
        return True

    def update_without_akool_id(self, job_id: str, **values: Any) -> bool:
        return not self.jobs[job_id].akool_id and self.update(job_id, **values)

    def fail(self, job_id: str, error: str) -> bool:
        return self.update(job_id, status=JobStatus.FAILED, error=error)

    def claim_archive(self, job_id: str) -> bool:
        first = job_id not in self.archive_claims
        self.archive_claims.add(job_id)
        return first


class Seen:
    """What the handler started: archives, polls, announcements."""

    def __init__(self) -> None:
        self.archives: list[str] = []
        self.polls: list[str] = []
        self.ended: list[str] = []

    def handler(self, store: JobsByRoute) -> CallbackHandler:
        return CallbackHandler(
            cast(JobStore, store),
            SETTINGS,
            enqueue_archive=self.archives.append,
            job_ended=self.ended.append,
            enqueue_poll=self.polls.append,
        )


AKOOL_ID = "65f8a1b2c3d4e5f6a7b8c9d0"


def routed(job: Job, status: int, token: str = TOKEN, url: str | None = None) -> Callback:
    if status == 3 and url is None:
        url = "https://d1.cloudfront.net/out.mp4"
    return Callback(AKOOL_ID, status, url=url, route=Route(job.id, token))


def test_the_receiver_url_round_trips_through_its_query() -> None:
    url = callback_url("https://hooks.example.com/webhooks/akool?src=akool", "ab" * 16, TOKEN)
    assert (
        url == f"https://hooks.example.com/webhooks/akool?src=akool&job={'ab' * 16}&token={TOKEN}"
    )
    assert read_route(urlsplit(url).query) == Route("ab" * 16, TOKEN)


@pytest.mark.parametrize("query", ["", "src=akool", "jobs=1&tokens=2"])
def test_a_query_that_names_no_job_is_the_plain_url(query: str) -> None:
    assert read_route(query) is None


@pytest.mark.parametrize(
    "query", ["job=ab", "token=t", "job=a&job=b&token=t", "job=a&token=t&token=u"]
)
def test_a_query_naming_a_job_without_one_token_is_a_bad_request(query: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        read_route(query)
    assert caught.value.http_status == 400


def test_the_token_is_masked_in_a_query_fit_for_the_log() -> None:
    assert without_token(f"job=ab&token={TOKEN}") == "job=ab&token=***"
    assert without_token(f"token={TOKEN}&x=1") == "token=***&x=1"
    assert without_token("x=1") == "x=1"


def test_a_token_matches_only_the_jobs_own() -> None:
    assert token_matches(a_job(), TOKEN)
    assert not token_matches(a_job(), TOKEN[:-1] + "X")
    assert not token_matches(a_job(), "")
    assert not token_matches(a_job(webhook_token=None), "")
    assert not token_matches(a_job(), "\udc80")


@pytest.mark.parametrize(
    ("values", "decision"),
    [
        ({}, "adopt"),
        ({"status": JobStatus.PROCESSING}, "adopt"),
        ({"akool_id": AKOOL_ID}, "known"),
        ({"akool_id": "another"}, "other"),
        ({"status": JobStatus.FAILED}, "final"),
        ({"status": JobStatus.ARCHIVED, "akool_id": AKOOL_ID}, "final"),
    ],
)
def test_a_job_adopts_akools_id_only_while_unfinished_and_without_one(
    values: dict[str, Any], decision: str
) -> None:
    assert adopt(a_job(**values), AKOOL_ID) == decision


def test_adopting_status_2_starts_akools_clocks_at_the_submits_claim() -> None:
    values = adoption(a_job(), AKOOL_ID, 2, None, SETTINGS, NOW)
    assert values == {
        "akool_id": AKOOL_ID,
        "submitted_ts": CLAIMED,
        "expires_ts": CLAIMED + 7 * 24 * 3600,
        "poll_deadline_ts": CLAIMED + 3600.0,
        "due": NOW + 30.0,
        "status": JobStatus.PROCESSING,
    }


def test_adopting_status_3_without_a_url_is_left_to_polling() -> None:
    assert adoption(a_job(), AKOOL_ID, 3, None, SETTINGS, NOW)["status"] == JobStatus.PROCESSING


def test_a_waiting_job_adopts_a_completion_and_archives_it_once() -> None:
    job = a_job()
    store, seen = JobsByRoute(job), Seen()

    assert seen.handler(store).handle(routed(job, 3), NOW) == "adopted-archiving"

    record = store.get(job.id)
    assert (record.status, record.akool_id) == (JobStatus.ARCHIVING, AKOOL_ID)
    assert record.result_url == "https://d1.cloudfront.net/out.mp4"
    assert store.index == {AKOOL_ID: job.id}
    assert seen.archives == [job.id] and seen.polls == []


def test_a_waiting_job_adopts_progress_and_is_polled_from_then_on() -> None:
    job = a_job()
    store, seen = JobsByRoute(job), Seen()

    assert seen.handler(store).handle(routed(job, 2), NOW) == "adopted-polling"

    assert store.get(job.id).status == JobStatus.PROCESSING
    assert store.get(job.id).akool_id == AKOOL_ID
    assert seen.polls == [job.id] and seen.archives == []


def test_a_waiting_job_adopts_a_failure_and_is_announced() -> None:
    job = a_job()
    store, seen = JobsByRoute(job), Seen()

    assert seen.handler(store).handle(routed(job, 4), NOW) == "adopted-failed"

    record = store.get(job.id)
    assert (record.status, record.error, record.akool_id) == (
        JobStatus.FAILED,
        messages.AKOOL_JOB_FAILED,
        AKOOL_ID,
    )
    assert seen.ended == [job.id]


@pytest.mark.parametrize(
    "route",
    [
        pytest.param(lambda job: Route(job.id, "wrong-token"), id="wrong-token"),
        pytest.param(lambda job: Route(new_job_id(), TOKEN), id="unknown-job"),
        pytest.param(lambda job: Route("../../x", TOKEN), id="not-a-job-id"),
    ],
)
def test_a_callback_whose_url_token_is_not_the_jobs_is_refused_and_changes_nothing(
    route: Callable[[Job], Route],
) -> None:
    job = a_job()
    store, seen = JobsByRoute(job), Seen()
    callback = Callback(AKOOL_ID, 3, url="https://d1.cloudfront.net/out.mp4", route=route(job))

    with pytest.raises(WebhookRejected) as caught:
        seen.handler(store).handle(callback, NOW)

    assert caught.value.http_status == 401
    assert "wrong-token" not in str(caught.value)
    assert store.get(job.id) == job and store.index == {}
    assert (seen.archives, seen.polls, seen.ended) == ([], [], [])


def test_a_callback_for_a_job_whose_wait_ended_changes_nothing() -> None:
    job = a_job(status=JobStatus.FAILED, error=messages.SUBMIT_UNKNOWN)
    store, seen = JobsByRoute(job), Seen()

    assert seen.handler(store).handle(routed(job, 3), NOW) == "not-adopted"

    assert store.get(job.id) == job and store.index == {}
    assert (seen.archives, seen.polls, seen.ended) == ([], [], [])


def test_a_callback_for_a_job_with_another_akool_id_changes_nothing() -> None:
    job = a_job(akool_id="another", status=JobStatus.PROCESSING)
    store, seen = JobsByRoute(job), Seen()

    assert seen.handler(store).handle(routed(job, 3), NOW) == "not-adopted"

    assert store.get(job.id) == job and seen.archives == []


def test_a_job_known_by_its_akool_id_goes_on_as_usual_when_its_url_token_is_right() -> None:
    job = a_job(akool_id=AKOOL_ID, status=JobStatus.PROCESSING, submit_unknown_ts=None)
    store, seen = JobsByRoute(job), Seen()
    store.index[AKOOL_ID] = job.id

    assert seen.handler(store).handle(routed(job, 3), NOW) == "archiving"
    assert seen.archives == [job.id]


def test_a_known_job_with_a_wrong_url_token_is_still_refused() -> None:
    job = a_job(akool_id=AKOOL_ID, status=JobStatus.PROCESSING)
    store, seen = JobsByRoute(job), Seen()
    store.index[AKOOL_ID] = job.id

    with pytest.raises(WebhookRejected):
        seen.handler(store).handle(routed(job, 3, token="nope"), NOW)
    assert seen.archives == []


def test_the_receiver_hands_the_route_of_the_url_on_with_the_callback() -> None:
    handler = RecordingHandler()

    receiver(handler).receive(body_of(fresh()), f"job=ab&token={TOKEN}")

    assert handler.callbacks[0].route == Route("ab", TOKEN)


def test_a_refused_token_leaves_no_replay_marker_so_the_right_one_gets_through() -> None:
    nonces = MemoryNonces()
    refusing = RecordingHandler(WebhookRejected("token", http_status=401))
    with pytest.raises(WebhookRejected):
        receiver(refusing, nonces).receive(body_of(fresh()), "job=ab&token=bad")

    accepting = RecordingHandler()
    receiver(accepting, nonces).receive(body_of(fresh()), f"job=ab&token={TOKEN}")
    assert len(accepting.callbacks) == 1
