"""How the CLI shows a job: status lines and the archive's progress bar (worker.cli.progress)."""

from __future__ import annotations

from tests.unit.job_fakes import listed_job as job
from worker.cli.progress import describe, progress_bar
from worker.names import MiB


def test_progress_bar_shows_share_and_mib_copied() -> None:
    assert (
        progress_bar(15 * MiB, 30 * MiB) == "[===============>              ]  50%  15.0/30.0 MiB"
    )


def test_progress_bar_is_full_at_the_end_and_never_overflows() -> None:
    assert progress_bar(40 * MiB, 30 * MiB).startswith("[" + "=" * 30 + "] 100%")


def test_progress_without_a_known_total_shows_mib_copied() -> None:
    assert progress_bar(3 * MiB, None) == "3.0 MiB copied"


def test_an_archiving_job_is_described_with_its_progress_bar() -> None:
    line = describe(
        job(status="archiving", archive_progress_bytes=MiB, archive_total_bytes=4 * MiB)
    )
    assert line.endswith("archiving [=======>                      ]  25%  1.0/4.0 MiB")


def test_final_jobs_are_described_by_their_uri_or_their_error() -> None:
    assert describe(job(status="archived", archive_uri="s3://b/k.mp4")).endswith(
        "archived to s3://b/k.mp4"
    )
    assert describe(job(status="failed", error="Akool said no")).endswith("failed: Akool said no")


def test_a_waiting_job_says_what_it_waits_on() -> None:
    waiting = job(
        status="processing",
        akool_id="ak1",
        polls=7,
        wait_on="akool",
        wait_since_ts=1_700_000_000.0,
        wait_tries=3,
        wait_detail="Akool answered HTTP 503",
    )
    assert describe(waiting) == (
        f"{waiting.id}: processing (Akool ak1, 7 polls); waiting: Akool unreachable since "
        "2023-11-14 22:13:20 UTC: Akool answered HTTP 503; tried 3 times"
    )


def test_a_failed_job_shows_its_error_not_its_last_wait() -> None:
    failed = job(status="failed", error="gone", wait_on="file", wait_since_ts=1.0, wait_tries=2)
    assert describe(failed) == f"{failed.id}: failed: gone"
    assert failed.waiting is None


def test_a_cancelled_job_is_described_with_the_reason() -> None:
    assert describe(job(status="cancelled", error="cancelled by the application")).endswith(
        ": cancelled (cancelled by the application)"
    )
