"""Tests of worker.status: a JobStatus is its string, and only archived, failed and
cancelled are final."""

from __future__ import annotations

import json

import pytest

from worker.status import FINAL_STATUSES, JobStatus

VALUES = ["queued", "submitted", "processing", "archiving", "archived", "failed", "cancelled"]


def test_the_statuses_are_the_seven_documented_strings_in_pipeline_order() -> None:
    assert [status.value for status in JobStatus] == VALUES


@pytest.mark.parametrize("value", VALUES)
def test_a_status_compares_equal_to_its_string_both_ways(value: str) -> None:
    status = JobStatus(value)
    assert status == value
    assert value == status
    assert str(status) == value
    assert f"{status}" == value
    assert hash(status) == hash(value)


def test_a_status_read_back_as_text_finds_its_member() -> None:
    assert JobStatus("failed") is JobStatus.FAILED
    assert json.dumps({"status": JobStatus.ARCHIVED}) == '{"status": "archived"}'
    assert {"archived": 1}[JobStatus.ARCHIVED] == 1


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError):
        JobStatus("done")


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (JobStatus.QUEUED, False),
        (JobStatus.SUBMITTED, False),
        (JobStatus.PROCESSING, False),
        (JobStatus.ARCHIVING, False),
        (JobStatus.ARCHIVED, True),
        (JobStatus.FAILED, True),
        (JobStatus.CANCELLED, True),
    ],
)
def test_only_archived_failed_and_cancelled_are_final(status: JobStatus, final: bool) -> None:
    assert status.is_final is final
    assert (status in FINAL_STATUSES) is final
    assert (status.value in FINAL_STATUSES) is final
