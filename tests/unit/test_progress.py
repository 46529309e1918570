"""How the CLI shows a job: status lines and the archive's progress bar (worker.progress)."""

from __future__ import annotations

from tests.unit.job_fakes import listed_job as job
from worker.names import MiB
from worker.progress import describe, progress_bar


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
