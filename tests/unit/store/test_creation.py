"""Tests of worker.store.creation's pure parts: the names a new job claims, the KEYS and ARGV
of CREATE_JOB, what its answers mean, and which jobs get a webhook token. The script itself
runs against a real Redis in the integration tier."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.contract import adopted_job, adoption_request, lipsync_request, queued_job
from worker.errors import ArchiveKeyTaken, IdempotencyConflict
from worker.store import keys, scripts
from worker.store.creation import WEBHOOK_TOKEN_BYTES, claims, created, creation, with_token
from worker.store.records import Job, decode

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
VIDEO = "https://videos.example.com/in.mp4"
AUDIO = "https://videos.example.com/voice.wav"
JOB_ID = "0123456789abcdef0123456789abcdef"
OTHER_ID = "fedcba9876543210fedcba9876543210"
NOW = 1_700_000_000.25
TTL = 40 * 86400
# CREATE_JOB's fixed KEYS and the ARGV before its claims' kinds (worker/store/scripts.py).
FIXED_KEYS = [keys.job(JOB_ID), keys.JOBS_INDEX, keys.DUE, keys.METRICS_JOBS_BY_STATUS]
HEAD = 6


def new_job(**arguments: Any) -> Job:
    """A queued lip-sync job made by `lipsync_request(VIDEO, AUDIO, **arguments)`."""
    return queued_job(lipsync_request(VIDEO, AUDIO, **arguments), JOB_ID, now=NOW)


def adoption(**arguments: Any) -> Job:
    request = adoption_request("akool-42", **arguments)
    return adopted_job(request, JOB_ID, now=NOW, poll_timeout=600.0, poll_owner="poll-1")


# --- claims ----------------------------------------------------------------------------------


def test_a_job_without_a_key_claims_nothing() -> None:
    assert claims(new_job()) == []
    assert claims(new_job(metadata={"a": "b"}, notify_url="https://hooks.example.com/x")) == []


def test_a_job_claims_its_idempotency_key_then_its_archive_key() -> None:
    assert claims(new_job(idempotency_key="order-7")) == [
        ("idempotency", keys.idempotency("order-7"))
    ]
    assert claims(new_job(archive_key="a/b.mp4")) == [("archive_key", keys.archive_key("a/b.mp4"))]
    assert claims(new_job(archive_key="a/b.mp4", idempotency_key="order-7")) == [
        ("idempotency", "lipsync:idempotency:order-7"),
        ("archive_key", "lipsync:archive_key:a/b.mp4"),
    ]


def test_an_adopted_job_claims_the_akool_id_it_adopts_last() -> None:
    assert claims(adoption()) == [("akool", keys.akool_index("akool-42"))]
    assert [kind for kind, _ in claims(adoption(idempotency_key="k", archive_key="x.mov"))] == [
        "idempotency",
        "archive_key",
        "akool",
    ]


def test_a_job_of_ours_with_an_akool_id_does_not_claim_it() -> None:
    # Our own submits index their Akool id when Akool answers, not at creation.
    submitted = Job(id=JOB_ID, status=new_job().status, video_url=VIDEO, audio_url=AUDIO)
    assert claims(submitted) == []
    assert claims(dataclasses.replace(submitted, akool_id="akool-42")) == []


# --- creation: the KEYS and ARGV of CREATE_JOB ------------------------------------------------

jobs = st.builds(
    new_job,
    idempotency_key=st.one_of(
        st.none(), st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=20)
    ),
    metadata=st.one_of(st.none(), st.dictionaries(st.text(min_size=1, max_size=8), st.text())),
    archive_key=st.one_of(st.none(), st.sampled_from(["a.mp4", "b/c.mp4"])),
    webhook_url=st.one_of(st.none(), st.just("https://hooks.example.com/akool")),
)


@PROPERTY
@given(jobs, st.floats(NOW, NOW + 1e6))
def test_creation_passes_the_fixed_keys_then_one_key_per_claim(job: Job, due: float) -> None:
    names, _ = creation(job, due=due, ttl=TTL)
    assert names == FIXED_KEYS + [key for _, key in claims(job)]


@PROPERTY
@given(jobs, st.floats(NOW, NOW + 1e6))
def test_creation_passes_ttl_id_times_digest_then_the_claims_kinds(job: Job, due: float) -> None:
    _, args = creation(job, due=due, ttl=TTL)
    kinds = [kind for kind, _ in claims(job)]
    assert args[:HEAD] == [TTL, JOB_ID, repr(NOW), repr(due), job.request_digest, len(kinds)]
    assert args[HEAD : HEAD + len(kinds)] == kinds
    # Times as repr, which Lua's tonumber reads back exactly.
    assert float(args[2]) == job.created_ts and float(args[3]) == due


@PROPERTY
@given(jobs)
def test_the_fields_passed_are_the_jobs_record_and_read_back_as_the_job(job: Job) -> None:
    _, args = creation(job, due=NOW, ttl=TTL)
    flat = args[HEAD + len(claims(job)) :]
    pairs = dict(zip(flat[::2], flat[1::2], strict=True))
    assert len(pairs) * 2 == len(flat)
    assert all(isinstance(v, str) and v != "" for v in pairs.values())  # None is left out
    assert "webhook_url" in pairs or job.webhook_url is None
    raw = {str(k).encode(): v.encode() for k, v in pairs.items()}
    assert decode(keys.job(JOB_ID), raw) == job


def test_a_job_without_a_digest_passes_an_empty_one() -> None:
    plain = Job(id=JOB_ID, status=new_job().status, video_url=VIDEO, audio_url=AUDIO)
    _, args = creation(plain, due=NOW, ttl=TTL)
    assert args[4] == ""


def test_the_layout_is_where_create_job_reads_it() -> None:
    """The script reads the claims' count at ARGV[6], their kinds from ARGV[7], their keys
    from KEYS[5] and the fields from ARGV[7 + n]: the same places as `creation` writes."""
    script = scripts.CREATE_JOB
    assert "local n = tonumber(ARGV[6])" in script
    assert "ARGV[6 + i]" in script and "KEYS[4 + i]" in script
    assert "redis.call('HSET', KEYS[1], unpack(ARGV, 7 + n))" in script
    assert len(FIXED_KEYS) == 4 and HEAD == 6


# --- created: what CREATE_JOB's answer means --------------------------------------------------


@pytest.mark.parametrize("encode", [str.encode, str], ids=["bytes", "str"])
def test_a_new_answer_is_the_new_jobs_id(encode: Any) -> None:
    job = new_job(idempotency_key="k")
    assert created([encode("new"), encode(JOB_ID)], job) == JOB_ID


@pytest.mark.parametrize("encode", [str.encode, str], ids=["bytes", "str"])
def test_a_same_answer_is_the_id_of_the_job_that_answers_it(encode: Any) -> None:
    job = new_job(idempotency_key="k")
    assert created([encode("same"), encode(OTHER_ID)], job) == OTHER_ID


def test_a_conflict_answer_raises_idempotency_conflict_naming_the_key_and_its_job() -> None:
    job = new_job(idempotency_key="order-7")
    with pytest.raises(IdempotencyConflict) as caught:
        created([b"conflict", OTHER_ID.encode()], job)
    assert isinstance(caught.value, ValueError)
    assert (caught.value.key, caught.value.job_id) == ("order-7", OTHER_ID)
    assert "order-7" in str(caught.value) and OTHER_ID in str(caught.value)


def test_a_taken_answer_raises_archive_key_taken_naming_the_key_and_its_holder() -> None:
    job = new_job(idempotency_key="order-7", archive_key="orders/7.mp4")
    with pytest.raises(ArchiveKeyTaken) as caught:
        created([b"taken", OTHER_ID.encode()], job)
    assert isinstance(caught.value, ValueError)
    assert (caught.value.key, caught.value.job_id) == ("orders/7.mp4", OTHER_ID)
    assert "orders/7.mp4" in str(caught.value) and OTHER_ID in str(caught.value)


# --- with_token ------------------------------------------------------------------------------


def test_a_job_our_receiver_hears_of_gets_an_unguessable_webhook_token() -> None:
    first, second = with_token(new_job()), with_token(new_job())
    assert first.webhook_token and second.webhook_token
    assert first.webhook_token != second.webhook_token
    assert len(first.webhook_token) == WEBHOOK_TOKEN_BYTES * 4 // 3 == 32
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", first.webhook_token)
    assert with_token(first) == first  # a token already given is kept


def test_no_token_when_akool_calls_the_callers_webhook_or_for_an_adopted_job() -> None:
    own = new_job(webhook_url="https://hooks.example.com/akool")
    assert with_token(own).webhook_token is None
    assert with_token(adoption()).webhook_token is None
