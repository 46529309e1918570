"""The third step of a job, as a plain function: copy its result into S3 once.

The Celery task (worker/tasks.py) calls `archive_step` with its dependencies; it is tested
without Celery. A copy that fails without proof that the video is lost (worker/waiting/proof.py:
the file host answering gone on every try for ARCHIVE_GONE_GRACE_SECONDS) makes the job
wait on the file, the download or S3, visibly (`Job.waiting`), and the archive is tried
again until the video's expires_at (`archive_deadline`, worker/waiting/schedule.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import NoReturn

from worker.akool import asset_for_field
from worker.archive import Archiver, ArchiveResult
from worker.clock import Clock, wall_clock
from worker.config import ARCHIVE_GONE_GRACE_SECONDS, STALL_SECONDS
from worker.errors import (
    ArchiveError,
    JobStateError,
    LipsyncError,
    SourceGoneError,
    StorageError,
    TransientError,
    VideoLost,
    WaitingOnArchive,
)
from worker.metrics import Metrics
from worker.status import JobStatus, Wait
from worker.store import Job, JobStore
from worker.waiting import proof

logger = logging.getLogger(__name__)

# While a video streams, tell the sweeper (and progress bars) this often that the archive is
# alive and how far it got.
HEARTBEAT_INTERVAL_SECONDS = 1.0


class _Copying:
    """What the heartbeat of a running copy shares with it: the bytes copied so far, and
    whether the job ended under it (cancelled: the copy must stop)."""

    def __init__(self) -> None:
        self.done: int | None = None
        self.total: int | None = None
        self.ended = threading.Event()

    def on_progress(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total

    def stopped(self) -> str | None:
        return "the job was cancelled" if self.ended.is_set() else None


@contextlib.contextmanager
def _kept_alive(store: JobStore, job_id: str, stall: float, clock: Clock) -> Iterator[_Copying]:
    """While an archive streams, push the job's due time forward every second from a thread
    of its own, with the bytes copied so far; yield what the copy reports to and checks.
    A heartbeat refused because the job ended (cancelled) tells the copy to stop.

    Time, not progress, drives it: reading one 8 MiB part from a slow host can take longer
    than STALL_SECONDS, and the sweeper must not take a slow copy for a dead one. A hung
    download still ends: its reads time out after DOWNLOAD_TIMEOUT_SECONDS, and a trickle
    is cut off by the rate floor (worker/download.py).
    """
    copying = _Copying()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_INTERVAL_SECONDS):
            try:
                due = clock() + stall
                alive = store.heartbeat(
                    job_id, due, progress_bytes=copying.done, total_bytes=copying.total
                )
            except (LipsyncError, KeyError):
                logger.debug("Job %s: heartbeat not recorded", job_id)
                continue
            if not alive:
                logger.warning("Job %s ended during its archive; stopping the copy", job_id)
                copying.ended.set()
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield copying
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_INTERVAL_SECONDS * 5)


def archive_step(
    store: JobStore,
    archiver: Archiver,
    job_id: str,
    *,
    clock: Clock = wall_clock,
    stall: float = STALL_SECONDS,
    metrics: Metrics | None = None,
    grace: float = ARCHIVE_GONE_GRACE_SECONDS,
) -> str | None:
    """Copy the result into S3 once; return its s3:// URI (None when the job failed).

    An object already stored for this job (a crash after the upload, before the record was
    updated) is adopted, not downloaded again. While streaming, the job's due time is pushed
    forward so the sweeper leaves a long copy alone. A failed copy makes the job wait
    (WaitingOnArchive, tried again), or fails it on proof that the video is gone (VideoLost:
    gone answers on every try for `grace` seconds).
    """
    job = store.get(job_id)
    if job.status == JobStatus.ARCHIVED and job.archive_uri:
        return job.archive_uri
    if job.is_final:
        return None
    if not job.result_url:
        raise JobStateError(f"job {job_id} has no result URL to archive")
    if not store.heartbeat(job_id, clock() + stall, archive_attempt=True):
        return None  # it ended since it was read
    try:
        result = _copy(store, archiver, job, stall=stall, metrics=metrics, clock=clock)
        assets = _copy_assets(store, archiver, job, stall=stall, clock=clock)
    except ArchiveError as e:
        if _ended(store, archiver, job):
            return None
        if not isinstance(e, TransientError):
            raise  # our own refusal (a host not allowed, too large): a decision, not an answer
        _wait(store, job, e, clock(), grace)
    stamp = clock()
    recorded = store.update(
        job_id,
        status=JobStatus.ARCHIVED,
        archive_uri=result.uri,
        archived_ts=stamp,
        archive_bytes=result.size,
        archive_progress_bytes=result.size,
        assets=assets or None,
        **proof.cleared(job),
    )
    if not recorded:
        # Cancelled as the upload completed: the object stays, and the record says where.
        store.note(job_id, archive_uri=result.uri, archive_bytes=result.size)
        logger.warning("Job %s ended as its copy completed; %s is kept", job_id, result.uri)
        return None
    return result.uri


def _ended(store: JobStore, archiver: Archiver, job: Job) -> bool:
    """True when the job ended while its copy ran (cancelled): the copy's multipart upload
    is aborted (s3transfer aborts its own; this catches one a killed attempt left)."""
    if not store.get(job.id).is_final:
        return False
    archiver.abort_pending_uploads(job.id, job.archive_key)
    logger.info("Job %s: its archive stopped, as the job ended", job.id)
    return True


def _copy(
    store: JobStore,
    archiver: Archiver,
    job: Job,
    *,
    stall: float,
    metrics: Metrics | None,
    clock: Clock,
) -> ArchiveResult:
    """The job's object in S3: adopted when already stored, else streamed from its URL."""
    result = archiver.existing(job.id, job.archive_key)
    if result is not None:
        return result
    if job.archive_attempts:
        # An earlier attempt was stopped (a worker killed, or cancelled at shutdown): its
        # multipart upload may still be pending in S3.
        archiver.abort_pending_uploads(job.id, job.archive_key)
    started = time.monotonic()
    with _kept_alive(store, job.id, stall, clock) as copying:
        result = archiver.archive(
            job.id,
            job.akool_id or "",
            job.result_url or "",
            name=job.archive_key,
            metadata=job.metadata,
            on_progress=copying.on_progress,
            stopped=copying.stopped,
        )
    if metrics is not None:
        lag = clock() - job.completed_ts if job.completed_ts else None
        metrics.archived(result.size, time.monotonic() - started, lag)
    return result


def asset_name(job: Job, suffix: str) -> str:
    """Where an extra result file goes, relative to ARCHIVE_PREFIX: beside the video, under
    the same key stem (the video's key without its ".mp4"), with the file's own suffix."""
    stem = job.archive_key or f"{job.id}.mp4"
    return stem.removesuffix(".mp4") + suffix


def _copy_assets(
    store: JobStore, archiver: Archiver, job: Job, *, stall: float, clock: Clock
) -> dict[str, str]:
    """Copy the job's extra result files beside its video (each adopted when already
    stored); their s3:// URIs by field. A failed copy raises as the video's does: the rules
    of proof are the same for every file that expires with the video."""
    uris: dict[str, str] = {}
    for field, url in sorted((job.asset_urls or {}).items()):
        asset = asset_for_field(field)
        if asset is None:
            continue
        name = asset_name(job, asset.suffix)
        done = archiver.existing(job.id, name)
        if done is None:
            with _kept_alive(store, job.id, stall, clock) as copying:
                done = archiver.archive(
                    job.id,
                    job.akool_id or "",
                    url,
                    name=name,
                    metadata=job.metadata,
                    stopped=copying.stopped,
                    content_type=asset.content_type,
                )
        uris[field] = done.uri
    return uris


def _wait_kind(error: ArchiveError) -> Wait:
    """What a copy that failed waits on."""
    if isinstance(error, SourceGoneError):
        return Wait.FILE
    if isinstance(error, StorageError):
        return Wait.STORAGE
    return Wait.DOWNLOAD


def _wait(store: JobStore, job: Job, error: ArchiveError, now: float, grace: float) -> NoReturn:
    """Record what the failed copy waits on; VideoLost when that is proof, else
    WaitingOnArchive (try again)."""
    values, waiting = proof.with_wait(job, _wait_kind(error), str(error), now)
    store.update(job.id, **values)
    lost = proof.verdict(waiting, now, grace)
    if lost is not None:
        raise VideoLost(lost) from error
    sentence = waiting.waiting or str(error)
    raise WaitingOnArchive(sentence, quiet=waiting.wait_tries > 1) from error
