"""Job snapshots and a store of them, for unit tests of what reads job records."""

from __future__ import annotations

from typing import Any

from worker.status import JobStatus
from worker.store.jobs import Job, new_job_id

VIDEO = "https://example.invalid/v.mp4"
AUDIO = "https://example.invalid/a.wav"


def job(**values: Any) -> Job:
    """A processing job with a fresh id, unless `values` say otherwise."""
    values.setdefault("id", new_job_id())
    values.setdefault("status", JobStatus.PROCESSING)
    return Job(video_url=VIDEO, audio_url=AUDIO, **values)


def listed_job(**values: Any) -> Job:
    """A queued job with a fixed id and creation time, as the CLI lists and describes it."""
    values.setdefault("id", "a" * 32)
    values.setdefault("status", JobStatus.QUEUED)
    values.setdefault("created_ts", 1_700_000_000.0)
    return Job(video_url="https://v/x.mp4", audio_url="https://v/a.wav", **values)


class FakeStore:
    """get() answers each snapshot in turn, then the last one again."""

    def __init__(self, *snapshots: Job) -> None:
        self.snapshots = list(snapshots)
        self.reads = 0

    def get(self, job_id: str) -> Job:
        if not self.snapshots or self.snapshots[0].id != job_id:
            raise KeyError(job_id)
        self.reads += 1
        return self.snapshots[min(self.reads, len(self.snapshots)) - 1]
