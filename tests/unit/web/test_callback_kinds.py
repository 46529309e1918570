"""Callbacks of every Akool kind, without a network or Redis: a callback acts on a job only
when its `type` is the job's kind (or the job was adopted), and is logged and ignored
otherwise (worker/web/callback_kinds.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.unit.web.test_callbacks import AKOOL_ID, TOKEN, JobsByRoute, Seen, a_job, routed
from worker import contract, messages
from worker.akool import KINDS
from worker.names import UNKNOWN_KIND as ADOPTED_KIND
from worker.status import JobStatus
from worker.store.jobs import Job
from worker.web.callback_kinds import logged_type
from worker.web.callbacks import Callback, parse_callback

NOW = 1_710_757_981.609
RESULT = "https://d1.cloudfront.net/out.mp4"
LOGGER = "worker.web.callbacks"


def known(**values: Any) -> tuple[Job, JobsByRoute, Seen]:
    """A job Akool's id finds (its submit was answered), in a store of its own."""
    job = a_job(akool_id=AKOOL_ID, status=JobStatus.PROCESSING, submit_unknown_ts=None, **values)
    store = JobsByRoute(job)
    store.index[AKOOL_ID] = job.id
    return job, store, Seen()


def said(status: int, callback_type: str) -> Callback:
    url = RESULT if status == 3 else None
    return Callback(AKOOL_ID, status, callback_type, url)


@pytest.mark.parametrize("kind", sorted(k for k, row in KINDS.items() if not row.assets))
def test_a_completion_callback_of_each_kind_archives_a_job_of_that_kind(kind: str) -> None:
    job, store, seen = known(kind=kind)
    callback_type = KINDS[kind].callback_types[0]

    assert seen.handler(store).handle(said(3, callback_type), NOW) == "archiving"

    record = store.get(job.id)
    assert (record.status, record.result_url) == (JobStatus.ARCHIVING, RESULT)
    assert seen.archives == [job.id]


@pytest.mark.parametrize("spelling", ["Talking_Photo", "talking-photo", " TALKING  photo "])
def test_a_type_is_matched_however_akool_spells_its_case_and_separators(spelling: str) -> None:
    job, store, seen = known(kind="talking_photo")

    assert seen.handler(store).handle(said(3, spelling), NOW) == "archiving"


def test_a_failure_callback_of_another_kind_fails_its_job() -> None:
    job, store, seen = known(kind="character_swap")

    assert seen.handler(store).handle(said(4, "character swap"), NOW) == "failed"

    assert store.get(job.id).error == messages.AKOOL_JOB_FAILED
    assert seen.ended == [job.id]


@pytest.mark.parametrize("status", [3, 4])
def test_a_translation_that_ended_is_polled_at_once_for_what_its_callback_lacks(
    status: int,
) -> None:
    """Its extra result files and its failure reason are in the lookup's answer only."""
    job, store, seen = known(kind="video_translation")

    assert seen.handler(store).handle(said(status, "video translate"), NOW) == "polling"

    assert store.get(job.id) == job
    assert (seen.polls, seen.archives, seen.ended) == ([job.id], [], [])


@pytest.mark.parametrize(
    ("kind", "callback_type"),
    [
        ("lipsync", "talking photo"),
        ("talking_photo", "lipsync"),
        ("character_swap", "video translate"),
    ],
)
@pytest.mark.parametrize("status", [2, 3, 4])
def test_a_callback_whose_type_is_another_kinds_is_logged_and_leaves_the_job_as_it_was(
    kind: str, callback_type: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    job, store, seen = known(kind=kind)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        outcome = seen.handler(store).handle(said(status, callback_type), NOW)

    assert outcome == "unknown-job"  # answered 200, as a callback that is not ours
    assert store.get(job.id) == job and store.dues == {}
    assert (seen.archives, seen.polls, seen.ended) == ([], [], [])
    warning = caplog.records[-1]
    assert warning.levelno == logging.WARNING
    assert callback_type in warning.getMessage() and job.id in warning.getMessage()


def test_a_disagreeing_type_with_control_characters_is_logged_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job, store, seen = known()
    forged = "talking\n[ERROR] forged\x1b[2J photo"

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert seen.handler(store).handle(said(3, "talking\nphoto"), NOW) == "unknown-job"

    message = caplog.records[-1].getMessage()
    assert "talking\\x0aphoto" in message and "\n" not in message
    assert logged_type(forged) == "talking\\x0a[ERROR] forged\\x1b[2J photo"


def test_a_long_type_is_logged_cut_short() -> None:
    assert logged_type("x" * 10_000) == "x" * 64 + "..."


def test_a_type_no_kind_carries_is_ignored_as_a_callback_that_is_not_ours(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job, store, seen = known()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert seen.handler(store).handle(said(3, "face swap"), NOW) == "unknown-job"

    assert store.get(job.id) == job and seen.archives == []
    assert "not one of ours" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("callback_type", ["lipsync", "talking photo", "characterSwap"])
def test_an_adopted_job_takes_a_callback_of_any_known_kind(callback_type: str) -> None:
    job, store, seen = known(kind=ADOPTED_KIND)

    assert seen.handler(store).handle(said(3, callback_type), NOW) == "archiving"
    assert seen.archives == [job.id]


def test_the_adopted_kind_is_the_contracts() -> None:
    job = contract.adopted_job(
        contract.adoption_request("ak1"), "0" * 32, now=1.0, poll_timeout=1.0, poll_owner="t"
    )
    assert job.kind == ADOPTED_KIND


def test_a_record_of_an_earlier_release_takes_a_callback_without_a_type_as_before() -> None:
    job, store, seen = known()  # no kind given: "lipsync", as an earlier release's record
    callback = parse_callback({"_id": AKOOL_ID, "status": 3, "url": RESULT})

    assert seen.handler(store).handle(callback, NOW) == "archiving"
    assert seen.archives == [job.id]


def test_a_job_of_another_kind_named_by_its_url_adopts_a_callback_of_its_kind() -> None:
    job = a_job(kind="character_swap")
    store, seen = JobsByRoute(job), Seen()
    callback = Callback(AKOOL_ID, 3, "character swap", RESULT, routed(job, 3).route)

    assert seen.handler(store).handle(callback, NOW) == "adopted-archiving"

    assert store.get(job.id).akool_id == AKOOL_ID and seen.archives == [job.id]


def test_a_job_named_by_its_url_does_not_adopt_a_callback_of_another_kind() -> None:
    job = a_job(kind="character_swap")
    store, seen = JobsByRoute(job), Seen()
    callback = Callback(AKOOL_ID, 3, "lipsync", RESULT, routed(job, 3, TOKEN).route)

    assert seen.handler(store).handle(callback, NOW) == "unknown-job"

    assert store.get(job.id) == job and store.index == {}
    assert (seen.archives, seen.polls, seen.ended) == ([], [], [])


def test_a_callback_whose_job_record_is_gone_is_not_ours() -> None:
    job, store, seen = known()
    del store.jobs[job.id]

    assert seen.handler(store).handle(said(3, "lipsync"), NOW) == "unknown-job"
    assert seen.archives == []
