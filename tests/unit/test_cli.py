"""How the CLI lists jobs: the jobs table (worker.cli.format_table)."""

from __future__ import annotations

from worker.cli import format_table
from worker.jobs import Job


def job(**values: object) -> Job:
    base: dict[str, object] = {
        "id": "a" * 32,
        "status": "queued",
        "video_url": "https://v/x.mp4",
        "audio_url": "https://v/a.wav",
        "created_ts": 1_700_000_000.0,
    }
    base.update(values)
    return Job(**base)  # type: ignore[arg-type]


def test_jobs_table_has_a_header_and_one_row_per_job() -> None:
    table = format_table([job(), job(id="b" * 32, status="failed", error="gone")]).splitlines()
    assert table[0].split()[:2] == ["JOB", "STATUS"]
    assert len(table) == 3 and "gone" in table[2]
