"""The rule of proof (worker/waiting/proof.py): which waits are evidence that a video is lost."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.job_fakes import job
from worker.config.settings import AKOOL_FILE_LIFETIME_SECONDS
from worker.status import Wait
from worker.store.jobs import Job
from worker.waiting import proof

NOW = 1_700_000_000.0
GRACE = 3600.0


def after(start: Job, *tries: tuple[Wait, float]) -> Job:
    """The job after tries meeting (kind, time)."""
    current = start
    for kind, when in tries:
        _, current = proof.with_wait(current, kind, f"answer {kind}", when)
    return current


def test_a_first_try_starts_a_wait_and_the_next_ones_count_in_it() -> None:
    first = after(job(), (Wait.FILE, NOW))
    assert (first.wait_on, first.wait_since_ts, first.wait_tries) == (Wait.FILE, NOW, 1)
    third = after(first, (Wait.FILE, NOW + 5), (Wait.FILE, NOW + 20))
    assert (third.wait_since_ts, third.wait_tries) == (NOW, 3)
    assert third.wait_detail == "answer file"


def test_another_kind_of_answer_starts_a_new_wait() -> None:
    waited = after(job(), (Wait.FILE, NOW), (Wait.FILE, NOW + 10), (Wait.DOWNLOAD, NOW + 20))
    assert (waited.wait_on, waited.wait_since_ts, waited.wait_tries) == (Wait.DOWNLOAD, NOW + 20, 1)


@pytest.mark.parametrize("kind", [Wait.FILE, Wait.AKOOL_GONE])
def test_gone_answers_are_proof_only_once_every_try_said_so_for_the_grace(kind: Wait) -> None:
    one = after(job(), (kind, NOW))
    assert proof.verdict(one, NOW + 10 * GRACE, GRACE) is None  # one answer never is
    within = after(one, (kind, NOW + GRACE - 1))
    assert proof.verdict(within, NOW + GRACE - 1, GRACE) is None
    lasted = after(within, (kind, NOW + GRACE))
    sentence = proof.verdict(lasted, NOW + GRACE, GRACE)
    assert sentence is not None and "ARCHIVE_GONE_GRACE_SECONDS" in sentence


def test_a_gone_streak_broken_by_another_answer_starts_over() -> None:
    broken = after(
        job(), (Wait.FILE, NOW), (Wait.DOWNLOAD, NOW + 100), (Wait.FILE, NOW + GRACE + 1)
    )
    assert proof.verdict(broken, NOW + GRACE + 1, GRACE) is None


@pytest.mark.parametrize("kind", [Wait.AKOOL, Wait.AKOOL_URL, Wait.DOWNLOAD, Wait.STORAGE])
def test_no_other_wait_is_proof_within_the_grace(kind: Wait) -> None:
    long = after(job(), (kind, NOW), (kind, NOW + 5 * GRACE))
    assert proof.verdict(long, NOW + 5 * GRACE, GRACE) is None


@pytest.mark.parametrize("kind", [Wait.AKOOL, Wait.AKOOL_URL])
def test_akool_silent_for_its_file_lifetime_plus_the_grace_is_proof(kind: Wait) -> None:
    end = NOW + AKOOL_FILE_LIFETIME_SECONDS + GRACE
    almost = after(job(), (kind, NOW), (kind, end - 1))
    assert proof.verdict(almost, end - 1, GRACE) is None
    silent = after(almost, (kind, end))
    sentence = proof.verdict(silent, end, GRACE)
    assert sentence is not None and "7 days" in sentence


def test_archive_waits_are_bounded_by_the_videos_expiry_not_by_this_rule() -> None:
    end = NOW + AKOOL_FILE_LIFETIME_SECONDS + GRACE
    storage = after(job(), (Wait.STORAGE, NOW), (Wait.STORAGE, end))
    assert proof.verdict(storage, end, GRACE) is None


def test_a_wait_on_akool_moves_the_poll_deadline_on_by_its_length() -> None:
    waiting = after(job(poll_deadline_ts=NOW + 60), (Wait.AKOOL, NOW), (Wait.AKOOL, NOW + 30))
    assert proof.deadline_after_wait(waiting, NOW + 45) == NOW + 105
    assert proof.deadline_after_wait(job(poll_deadline_ts=NOW), NOW + 45) is None
    on_file = after(job(poll_deadline_ts=NOW), (Wait.FILE, NOW))
    assert proof.deadline_after_wait(on_file, NOW + 45) is None


def test_clearing_a_wait_empties_its_fields_and_nothing_is_cleared_twice() -> None:
    waiting = after(job(), (Wait.AKOOL, NOW))
    cleared = dataclasses.replace(waiting, **proof.cleared(waiting))
    assert (cleared.wait_on, cleared.wait_since_ts, cleared.wait_detail) == (None, None, None)
    assert proof.cleared(job()) == {}


def test_a_waits_detail_is_one_bounded_line() -> None:
    values = proof.waited(job(), Wait.AKOOL, "Akool answered error code 1 (a\nb" + "x" * 999, NOW)
    assert "\n" not in values["wait_detail"] and "\\x0a" in values["wait_detail"]
    assert len(values["wait_detail"]) == proof.MAX_DETAIL_CHARS
