"""A job's timeline: what happened to it and when, from its record alone.

The record keeps one time per step (created, submitted, completed, archived), the last
POLL_LOG_ENTRIES polls with Akool's status (`poll_log`), the archive's progress and the
final error; older polls are only counted. A failed or cancelled job's ending is dated by
its last write (`updated_ts`), which is the ending one.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.status import JobStatus
from worker.store import Job, poll_log_entries

# Akool's video_status values (worker/akool/client.py), as words.
AKOOL_STATUS_WORDS = {"1": "queued", "2": "processing", "3": "done", "4": "failed"}


@dataclass(frozen=True)
class Event:
    """One line of the timeline: when (epoch s), what, and a detail (may be empty). `kind`
    styles it: step, poll, progress, done, error or future."""

    ts: float
    what: str
    detail: str = ""
    kind: str = "step"


def akool_status_word(status: str) -> str:
    """Akool's status code as a word ("2 (processing)"); unknown codes shown as they are."""
    if not status:
        return "not known yet"
    word = AKOOL_STATUS_WORDS.get(status)
    return f"{status} ({word})" if word else status


def size_text(size: int | None) -> str:
    """Bytes in the unit that reads best (KiB, MiB, GiB), or "" when unknown."""
    if size is None:
        return ""
    value, unit = float(size), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def build_timeline(job: Job) -> list[Event]:
    """The job's events, oldest first."""
    events = [Event(job.created_ts, "created", "accepted and queued for Akool")]
    if job.submitted_ts is not None:
        events.append(Event(job.submitted_ts, "submitted", f"Akool id {job.akool_id or '?'}"))
    events += _polls(job)
    if job.completed_ts is not None:
        events.append(Event(job.completed_ts, "completed", "Akool finished the video", "done"))
    events += _archive(job)
    if job.waiting and job.wait_since_ts is not None:
        events.append(Event(job.wait_since_ts, "waiting", job.waiting, "error"))
    if job.status == JobStatus.FAILED:
        events.append(Event(job.updated_ts, "failed", job.error or "", "error"))
    if job.status == JobStatus.CANCELLED:
        events.append(Event(job.updated_ts, "cancelled", job.error or "", "error"))
    if job.expires_ts is not None and job.status != JobStatus.ARCHIVED:
        events.append(Event(job.expires_ts, "Akool deletes the video", "", "future"))
    return sorted(events, key=lambda e: e.ts)


def _polls(job: Job) -> list[Event]:
    """The logged polls, numbered. Their times are whole seconds after creation (rounded
    down), so none is shown before the submit it follows."""
    entries = poll_log_entries(job.poll_log)
    earliest = job.submitted_ts or job.created_ts
    first_number = job.polls - len(entries) + 1
    events = []
    if first_number > 1:
        kept = f"not kept: a record keeps its last {len(entries)} polls"
        first = max(job.created_ts + entries[0][0], earliest)
        events.append(Event(first, f"polls 1 to {first_number - 1}", kept, "poll"))
    for number, (offset, status) in enumerate(entries, start=max(first_number, 1)):
        detail = f"Akool status {akool_status_word(status)}"
        when = max(job.created_ts + offset, earliest)
        events.append(Event(when, f"poll {number}", detail, "poll"))
    return events


def _archive(job: Job) -> list[Event]:
    if job.status == JobStatus.ARCHIVING and job.archive_progress_bytes is not None:
        copied = size_text(job.archive_progress_bytes)
        total = size_text(job.archive_total_bytes) or "?"
        return [Event(job.updated_ts, "archiving", f"{copied} of {total} copied", "progress")]
    if job.archived_ts is not None:
        detail = f"{job.archive_uri or ''} ({size_text(job.archive_bytes)})".strip()
        return [Event(job.archived_ts, "archived", detail, "done")]
    return []
