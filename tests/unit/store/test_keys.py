"""Tests of worker.store.keys: every Redis key of ours starts with `lipsync:`, and no two kinds of
key can be mistaken for each other."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from worker.store import keys

JOB_ID = "0123456789abcdef0123456789abcdef"

CONSTANTS = {
    name: value
    for name, value in vars(keys).items()
    if name.isupper()
    and isinstance(value, str)
    and name != "PREFIX"
    # Celery's own key, where its result backend looks (see the test below).
    and not name.startswith("CELERY_")
}
BUILDERS: dict[str, Callable[..., str]] = {
    name: function
    for name, function in inspect.getmembers(keys, inspect.isfunction)
    if function.__module__ == keys.__name__ and name != "result"
}


def built(name: str) -> str:
    """The key a builder makes, with a sample value for each of its arguments."""
    function = BUILDERS[name]
    samples = {"str": JOB_ID, "int": 1_710_757_981_609}
    parameters = inspect.signature(function).parameters.values()
    return function(*(samples[str(p.annotation)] for p in parameters))


def test_the_prefix_is_lipsync_and_there_are_keys_to_check() -> None:
    assert keys.PREFIX == "lipsync:"
    assert len(CONSTANTS) >= 10
    assert set(BUILDERS) >= {"job", "akool_index", "archive_claim", "webhook_nonce"}


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_every_key_and_prefix_starts_with_lipsync(name: str) -> None:
    assert CONSTANTS[name].startswith("lipsync:")
    assert len(CONSTANTS[name]) > len("lipsync:")


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_built_key_starts_with_lipsync(name: str) -> None:
    assert built(name).startswith("lipsync:")


def test_each_built_key_ends_with_what_it_is_about() -> None:
    assert keys.job(JOB_ID) == keys.JOB_PREFIX + JOB_ID
    assert keys.akool_index("65f8a1") == keys.AKOOL_INDEX_PREFIX + "65f8a1"
    assert keys.archive_claim(JOB_ID) == keys.ARCHIVE_CLAIM_PREFIX + JOB_ID
    assert keys.lock("sweep") == keys.LOCK_PREFIX + "sweep"
    assert keys.webhook_nonce("1529", 1_710_757_981_609) == (
        keys.WEBHOOK_NONCE_PREFIX + "1710757981609:1529"
    )


def test_no_two_keys_are_the_same() -> None:
    assert len(set(CONSTANTS.values())) == len(CONSTANTS)
    made = [built(name) for name in BUILDERS]
    assert len(set(made)) == len(made)


def test_one_jobs_record_is_never_another_kind_of_key() -> None:
    # A job id is 32 hex digits, so no job's hash can be named like an index or a counter.
    others = set(CONSTANTS.values()) - {keys.JOB_PREFIX}
    assert not any(other.startswith(keys.JOB_PREFIX) for other in others)
    assert keys.job(JOB_ID) not in CONSTANTS.values()


def test_a_webhook_payload_key_ends_with_the_payloads_digest() -> None:
    digest = "ab" * 32  # sha256 hex
    assert keys.WEBHOOK_PAYLOAD_PREFIX == "lipsync:webhook:payload:"
    assert keys.webhook_payload(digest) == keys.WEBHOOK_PAYLOAD_PREFIX + digest


def test_a_jobs_result_is_where_celerys_result_backend_looks_for_its_task_id() -> None:
    from worker.celery_app import app

    assert app.backend.get_key_for_task(JOB_ID).decode() == keys.result(JOB_ID)
