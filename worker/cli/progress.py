"""Where a job is, in one line: the status lines of `lipsync submit --wait`, `lipsync status`
and the demo, with a progress bar while an archive streams (and the bar of a batch's rows,
worker/cli/batch.py)."""

from __future__ import annotations

import sys
import time

from worker.api import get_job
from worker.names import MiB
from worker.status import JobStatus
from worker.store import Job

WAIT_INTERVAL_SECONDS = 0.5
BAR_WIDTH = 30


def bar(done: int, total: int) -> str:
    """`[=====>    ]  42%`: the share of `total` done (full, never more, at the end)."""
    share = min(done / total, 1.0) if total > 0 else 1.0
    filled = int(share * BAR_WIDTH)
    arrow = ">" if filled < BAR_WIDTH else ""
    return f"[{'=' * filled}{arrow}{' ' * (BAR_WIDTH - filled - len(arrow))}] {share:4.0%}"


def progress_bar(done: int, total: int | None) -> str:
    """`[=====>    ]  42%  12.0/28.6 MiB`, or just the MiB copied when the total is unknown."""
    if not total:
        return f"{done / MiB:.1f} MiB copied"
    return f"{bar(done, total)}  {done / MiB:.1f}/{total / MiB:.1f} MiB"


def describe(job: Job) -> str:
    """One line saying where the job is, and what it waits on if a fault holds it up."""
    if job.status == JobStatus.ARCHIVED:
        return f"{job.id}: archived to {job.archive_uri}"
    if job.status == JobStatus.FAILED:
        return f"{job.id}: failed: {job.error}"
    if job.status == JobStatus.CANCELLED:
        return f"{job.id}: cancelled" + (f" ({job.error})" if job.error else "")
    waiting = f"; waiting: {job.waiting}" if job.waiting else ""
    if job.status == JobStatus.ARCHIVING and job.archive_progress_bytes is not None:
        bar = progress_bar(job.archive_progress_bytes, job.archive_total_bytes)
        return f"{job.id}: archiving {bar}{waiting}"
    polls = f"{job.polls} poll{'' if job.polls == 1 else 's'}"
    akool = f" (Akool {job.akool_id}, {polls})" if job.akool_id else ""
    return f"{job.id}: {job.status}{akool}{waiting}"


def wait_for(job_id: str, *, timeout: float | None = None, live: bool = True) -> Job:
    """Follow the job until it is archived, failed or cancelled, printing a status line."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        job = get_job(job_id)
        line = describe(job)
        if line != last:
            _show(line, live=live, final=job.is_final)
            last = line
        if job.is_final or (deadline is not None and time.monotonic() > deadline):
            return job
        time.sleep(WAIT_INTERVAL_SECONDS)


def _show(line: str, *, live: bool, final: bool) -> None:
    if live and sys.stdout.isatty():
        sys.stdout.write("\r\033[K" + line + ("\n" if final else ""))
    else:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
