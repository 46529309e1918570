"""A job's record: the `Job` snapshot, and how it is written to and read from a Redis hash.

A record is whole or it is not a job: a hash without its required fields (a step that wrote
to an expired record, a manual edit), a field that does not parse, or a key of another type
reads as `CorruptRecord`, a KeyError, never as a half-filled Job.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import redis

from worker import messages
from worker.errors import CorruptRecord, LipsyncError, StoreUnavailable
from worker.names import LIPSYNC_KIND
from worker.status import FINAL_STATUSES, JobStatus
from worker.store import keys

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# Written by create() and never removed: a record without one of these is not whole.
REQUIRED_FIELDS = ("id", "status", "video_url", "audio_url", "created_ts")
# Polls a job's record remembers (`poll_log`), newest last: each "seconds since the job was
# created:Akool's status", comma-separated, about 7 bytes an entry, so the record stays small
# however long Akool takes (older polls are only counted, in `polls`).
POLL_LOG_ENTRIES = 20


def new_job_id() -> str:
    """An unguessable job id: 128 random bits as 32 lowercase hex digits."""
    return secrets.token_hex(16)


def is_job_id(value: str) -> bool:
    """True for a string shaped like our job ids (and so safe inside keys)."""
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


@dataclass(frozen=True)
class Job:
    """A snapshot of one job's record."""

    id: str
    status: JobStatus
    video_url: str
    audio_url: str
    webhook_url: str | None = None
    akool_id: str | None = None
    result_url: str | None = None
    archive_uri: str | None = None
    error: str | None = None
    created_ts: float = 0.0
    updated_ts: float = 0.0
    submitted_ts: float | None = None
    completed_ts: float | None = None
    archived_ts: float | None = None
    expires_ts: float | None = None
    poll_deadline_ts: float | None = None
    submit_claimed_ts: float | None = None
    polls: int = 0
    archive_bytes: int | None = None
    # Archive attempts started: after a first one, a new attempt first clears the pending
    # multipart upload a killed one may have left in S3.
    archive_attempts: int = 0
    poll_owner: str | None = None
    redrives: int = 0
    # Where to tell the application that the job ended: an HTTP URL to POST the record to,
    # and/or a Celery signature (JSON) to call with the job id.
    notify_url: str | None = None
    on_complete: str | None = None
    # The notification's progress: when on_complete was sent and the notify_url answered
    # 2xx, the delivery task holding it, and the last reason it failed (it never fails the
    # job).
    on_complete_sent_ts: float | None = None
    notified_ts: float | None = None
    notify_owner: str | None = None
    notify_error: str | None = None
    # Bytes copied so far by a running archive (for progress bars).
    archive_progress_bytes: int | None = None
    archive_total_bytes: int | None = None
    # Our receiver's secret for this job: the webhookUrl Akool is given carries it, so a
    # callback can name the job even when the submit's answer was lost. Never shown.
    webhook_token: str | None = field(default=None, repr=False)
    # An ambiguous submit (5xx, timeout, a worker lost mid-submit) waiting for Akool's callback
    # to name the job: since when, and the sentence it fails with if none comes in time.
    submit_unknown_ts: float | None = None
    submit_unknown_reason: str | None = None
    # The last POLL_LOG_ENTRIES polls (see POLL_LOG_ENTRIES), for the dashboard's timeline.
    poll_log: str | None = None
    # What the job waits on while a fault passes (a `Wait`, worker/waiting/proof.py): since when,
    # after how many tries, and our sentence for the last answer; None when it waits on
    # nothing. `waiting` says it in words.
    wait_on: str | None = None
    wait_since_ts: float | None = None
    wait_tries: int = 0
    wait_detail: str | None = None
    # The token of the one step run holding the submit claim: only it gives the claim back.
    submit_claim: str | None = field(default=None, repr=False)
    # The caller's contract (worker/contract.py): its idempotency key and the digest of the
    # request made under it, its own metadata, and the object key it chose under
    # ARCHIVE_PREFIX (None: `<job id>.mp4`).
    idempotency_key: str | None = None
    request_digest: str | None = field(default=None, repr=False)
    metadata: dict[str, str] | None = None
    archive_key: str | None = None
    # When the job was adopted (`archive_akool_job`): submitted by other code, never by us.
    # Such a job has no video_url or audio_url ("").
    adopted_ts: float | None = None
    # The kind of Akool video job (worker/akool/kinds.py): "lipsync" (also every record of an
    # earlier release), another kind's name, or "unknown" for an adopted job (Akool's lookup
    # does not say). A kind other than lip-sync keeps its Akool body, exactly as it is
    # submitted (without the webhook field), in `body`, and has no video_url or audio_url.
    kind: str = LIPSYNC_KIND
    body: dict[str, Any] | None = None
    # A kind's extra result files (worker/akool/kinds.py `assets`): where Akool serves each,
    # by its field, once done; and where each was archived (s3:// URIs), once archived.
    asset_urls: dict[str, str] | None = None
    assets: dict[str, str] | None = None

    @property
    def created_at(self) -> datetime:
        """When the job was accepted (UTC)."""
        return datetime.fromtimestamp(self.created_ts, tz=UTC)

    @property
    def expires_at(self) -> datetime | None:
        """When Akool deletes the result (UTC); counted from submission, so never late."""
        return _when(self.expires_ts)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def waiting(self) -> str | None:
        """What the job waits on, in a sentence ("Akool unreachable since ...: HTTP 503;
        tried 4 times"); None when it waits on nothing."""
        if self.is_final or not self.wait_on or self.wait_since_ts is None:
            return None
        since = datetime.fromtimestamp(self.wait_since_ts, tz=UTC)
        return messages.waiting(self.wait_on, since, self.wait_tries, self.wait_detail or "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, with ISO timestamps."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        # Bookkeeping, not the job's story.
        for secret in ("webhook_token", "submit_claim", "request_digest"):
            del out[secret]
        out["created_at"] = self.created_at.isoformat()
        out["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        out["waiting"] = self.waiting
        return out


def poll_log_entries(log: str | None) -> list[tuple[int, str]]:
    """The (seconds since created, Akool status) pairs of a poll log, oldest first; an entry
    that does not parse is skipped."""
    entries = []
    for entry in (log or "").split(","):
        offset, sep, status = entry.partition(":")
        if sep and offset.lstrip("-").isdigit() and offset.isascii():
            entries.append((int(offset), status))
    return entries


def poll_log_with(
    log: str | None, offset_seconds: float, status: int, limit: int = POLL_LOG_ENTRIES
) -> str:
    """`log` with one poll more (`offset_seconds` after creation, Akool's `status`), keeping
    the newest `limit` entries (as job_scripts.COUNT_POLL does)."""
    entries = [e for e in (log or "").split(",") if e]
    entries.append(f"{max(0, int(offset_seconds))}:{status}")
    return ",".join(entries[-limit:])


_FLOAT_FIELDS = {f.name for f in fields(Job) if f.name.endswith("_ts")}
_INT_FIELDS = {
    "polls",
    "wait_tries",
    "archive_bytes",
    "archive_attempts",
    "redrives",
    "archive_progress_bytes",
    "archive_total_bytes",
}


def decode(key: str, raw: dict[bytes, bytes]) -> Job:
    """The Job a whole record holds; CorruptRecord naming the key when it is not whole."""
    try:
        values = _decode(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptRecord(key, f"a field does not parse ({type(e).__name__})") from None
    if "adopted_ts" in values or values.get("kind", LIPSYNC_KIND) != LIPSYNC_KIND:
        # Submitted by other code, or of a kind whose inputs are in its body: no such URLs.
        values.setdefault("video_url", "")
        values.setdefault("audio_url", "")
    missing = [name for name in REQUIRED_FIELDS if name not in values]
    if missing:
        raise CorruptRecord(key, f"fields missing: {', '.join(missing)}")
    return Job(**values)


def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name, text = k.decode(), v.decode()
        if name not in Job.__dataclass_fields__ or text == "":
            continue
        if name in _FLOAT_FIELDS:
            out[name] = float(text)
        elif name in _INT_FIELDS:
            out[name] = int(text)
        elif name == "status":
            out[name] = JobStatus(text)
        elif name in ("metadata", "asset_urls", "assets"):
            out[name] = _metadata(text)
        elif name == "body":
            out[name] = _body(text)
        else:
            out[name] = text
    return out


def _metadata(text: str) -> dict[str, str]:
    """A dict of strings a record holds as JSON (the metadata, the extra files' URLs and
    URIs); ValueError when it is not one."""
    value = json.loads(text)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("not a dict of strings")
    return value


def _body(text: str) -> dict[str, Any]:
    """A kind's Akool body as a record holds it (JSON); ValueError when it is not a dict."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("body is not a JSON object")
    return value


def _text(value: Any) -> str:
    """One field as the hash stores it: None as "", a dict (the metadata) as JSON."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def encode(values: dict[str, Any]) -> dict[str | bytes, str]:
    """Field values as the hash stores them (None as ""); ValueError for an unknown field."""
    for name in values:
        if name not in Job.__dataclass_fields__:
            raise ValueError(f"unknown job field {name!r}")
    return {name: _text(value) for name, value in values.items()}


P = ParamSpec("P")
R = TypeVar("R")


def store_error(error: redis.RedisError, job_id: str) -> LipsyncError | None:
    """Ours for one of redis-py's failures (also the asyncio client's): an unreachable
    Redis is StoreUnavailable (a TransientError); a key of another type where a job record
    belongs is CorruptRecord. None: not ours to rename (raise it as it is)."""
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return StoreUnavailable(
            "the job store could not be reached: is Redis running at REDIS_URL?"
        )
    if isinstance(error, redis.ResponseError) and "WRONGTYPE" in str(error):
        return CorruptRecord(keys.job(job_id), "the key holds another type")
    return None


def translated(method: Callable[P, R]) -> Callable[P, R]:
    """Turn redis-py's failures into ours (`store_error`) at the store's boundary."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as e:
            job_id = next((a for a in args if isinstance(a, str)), "?")
            ours = store_error(e, job_id)
            if ours is None:
                raise
            raise ours from e

    return wrapper
