"""How the CLI lists jobs: the jobs table (worker.cli.main.format_table)."""

from __future__ import annotations

from tests.unit.job_fakes import listed_job as job
from worker.cli.main import format_table


def test_jobs_table_has_a_header_and_one_row_per_job() -> None:
    table = format_table([job(), job(id="b" * 32, status="failed", error="gone")]).splitlines()
    assert table[0].split()[:2] == ["JOB", "STATUS"]
    assert len(table) == 3 and "gone" in table[2]
