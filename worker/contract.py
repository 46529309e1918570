"""What the caller may ask for, checked before anything is stored: the URLs, the
idempotency key, the metadata, the archive key and an adopted Akool id, and the request they
make together (`Request`), whose digest decides whether a reused idempotency key names the
same request.

Every refusal is a ValueError naming the argument and the limit; nothing here touches Redis,
so the sync API (worker/api.py), the asyncio API (worker/aio.py) and the CLI's batches share
one set of rules.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from worker.config import AKOOL_FILE_LIFETIME_SECONDS
from worker.names import LIPSYNC_KIND, UNKNOWN_KIND
from worker.net import MAX_URL_CHARS, unsafe_char
from worker.notify import encode_on_complete
from worker.status import JobStatus
from worker.store import Job

# At most this much of a refused value is quoted back in the error.
ECHO_CHARS = 200
# Stripe's limit for its Idempotency-Key, which callers already know.
MAX_IDEMPOTENCY_KEY_CHARS = 255
# Stripe's limits for an object's metadata.
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_CHARS = 40
MAX_METADATA_VALUE_CHARS = 500
# S3 allows 1,024 bytes of UTF-8 in an object key; this leaves room for ARCHIVE_PREFIX.
MAX_ARCHIVE_KEY_BYTES = 900
# The shape of an id Akool gives (hex object ids today); anything else is not sent to it.
MAX_AKOOL_ID_CHARS = 128
_AKOOL_ID = re.compile(r"^[A-Za-z0-9_-]+$")
# A job's own object key (`<job id>.mp4`): no caller's archive_key may take one.
_JOB_OBJECT = re.compile(r"^[0-9a-f]{32}\.mp4$")

ADOPT = "adopt"


def _quoted(value: str) -> str:
    """At most ECHO_CHARS characters of `value` for an error message, escaped by repr;
    nothing of a value holding an "@", which may be a password."""
    if "@" in value:
        return "(not quoted: it may hold a password)"
    return repr(value[:ECHO_CHARS])


def _split(url: str) -> SplitResult | None:
    """The URL's parts, or None when urlsplit refuses it (an unbalanced "[" in the host)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def check_url(name: str, url: str) -> None:
    """Raise ValueError, naming `name`, unless `url` is an http(s) URL with a host.

    Refused as well: URLs over MAX_URL_CHARS characters; any whitespace (space, tab, CR, LF,
    Unicode spaces), surrounding whitespace included, which is not stripped; control
    characters (C0, DEL, C1); and a user name or password (`user:password@`). A URL that
    passes is stored exactly as given. The error quotes at most ECHO_CHARS characters of the
    value, and never a URL's credentials.
    """
    if not isinstance(url, str):
        raise ValueError(f"{name} must be a string")
    if len(url) > MAX_URL_CHARS:
        raise ValueError(
            f"{name} is {len(url)} characters long; at most {MAX_URL_CHARS} are allowed"
        )
    if any(unsafe_char(c) for c in url):
        raise ValueError(
            f"{name} must not contain whitespace or control characters: {_quoted(url)}"
        )
    if any(_surrogate(c) for c in url):
        raise ValueError(f"{name} must be valid Unicode (no lone surrogates)")
    parts = _split(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL with a host, got {_quoted(url)}")
    if "@" in parts.netloc:
        raise ValueError(f"{name} must not carry a user name or password (user:password@host)")


def _control(char: str) -> bool:
    """C0, DEL and C1 control characters (whitespace other than these is allowed)."""
    return unicodedata.category(char) == "Cc"


def _surrogate(char: str) -> bool:
    """A lone surrogate: no character, and not encodable as UTF-8 for Redis."""
    return 0xD800 <= ord(char) <= 0xDFFF


def check_idempotency_key(key: object) -> str:
    """The key, or ValueError: a string of 1 to MAX_IDEMPOTENCY_KEY_CHARS characters
    without control characters."""
    if not isinstance(key, str):
        raise ValueError("idempotency_key must be a string")
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise ValueError(
            f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters long, "
            f"got {len(key)}"
        )
    if any(_control(c) for c in key):
        raise ValueError("idempotency_key must not contain control characters")
    if any(_surrogate(c) for c in key):
        raise ValueError("idempotency_key must be valid Unicode (no lone surrogates)")
    return key


def check_metadata(metadata: object) -> dict[str, str]:
    """A plain copy of the metadata, or ValueError naming the limit: a mapping of at most
    MAX_METADATA_KEYS string keys of 1 to MAX_METADATA_KEY_CHARS characters, each to a
    string of at most MAX_METADATA_VALUE_CHARS characters."""
    if not isinstance(metadata, Mapping):
        raise ValueError("metadata must be a dict of strings to strings")
    if len(metadata) > MAX_METADATA_KEYS:
        raise ValueError(
            f"metadata has {len(metadata)} keys; at most {MAX_METADATA_KEYS} are allowed"
        )
    out: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError("metadata must be a dict of strings to strings")
        if not 1 <= len(name) <= MAX_METADATA_KEY_CHARS:
            raise ValueError(
                f"metadata keys must be 1 to {MAX_METADATA_KEY_CHARS} characters long, "
                f"got {_quoted(name)}"
            )
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise ValueError(
                f"metadata[{_quoted(name)}] is {len(value)} characters long; at most "
                f"{MAX_METADATA_VALUE_CHARS} are allowed"
            )
        if any(_surrogate(c) for c in name + value):
            raise ValueError("metadata must be valid Unicode (no lone surrogates)")
        out[name] = value
    return out


def check_archive_key(key: object) -> str:
    """The key, or ValueError: a relative object key of 1 to MAX_ARCHIVE_KEY_BYTES bytes of
    UTF-8, without control characters, a leading "/", or an empty, "." or ".." segment, and
    not shaped like a job's own key (32 hex digits + ".mp4")."""
    if not isinstance(key, str):
        raise ValueError("archive_key must be a string")
    size = len(key.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_ARCHIVE_KEY_BYTES:
        raise ValueError(
            f"archive_key must be 1 to {MAX_ARCHIVE_KEY_BYTES} bytes of UTF-8, got {size}"
        )
    if any(_control(c) for c in key):
        raise ValueError("archive_key must not contain control characters")
    if any(_surrogate(c) for c in key):
        raise ValueError("archive_key must be valid Unicode (no lone surrogates)")
    if key.startswith("/"):
        raise ValueError("archive_key must be relative to ARCHIVE_PREFIX (no leading /)")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise ValueError(f"archive_key must not have an empty, . or .. segment: {_quoted(key)}")
    if _JOB_OBJECT.fullmatch(key):
        raise ValueError("archive_key must not have the shape of a job's own key (<id>.mp4)")
    return key


def check_akool_id(akool_id: object) -> str:
    """Akool's id of a job to adopt, or ValueError: 1 to MAX_AKOOL_ID_CHARS letters,
    digits, "_" or "-"."""
    if not isinstance(akool_id, str):
        raise ValueError("akool_id must be a string")
    if not 1 <= len(akool_id) <= MAX_AKOOL_ID_CHARS or not _AKOOL_ID.fullmatch(akool_id):
        raise ValueError(
            f"akool_id must be 1 to {MAX_AKOOL_ID_CHARS} letters, digits, _ or -, "
            f"got {_quoted(akool_id)}"
        )
    return akool_id


@dataclass(frozen=True)
class Request:
    """One checked request for a job: what the caller asked for, ready to store."""

    kind: str
    # The record's fields this request sets (video_url, audio_url, akool_id, ...).
    fields: dict[str, Any]
    idempotency_key: str | None = None
    archive_key: str | None = None
    metadata: dict[str, str] | None = field(default=None)

    @property
    def digest(self) -> str:
        """The sha256 of everything asked for: equal for equal requests, whatever their
        order of keyword arguments or of metadata keys."""
        whole = {
            "kind": self.kind,
            **self.fields,
            "archive_key": self.archive_key,
            "metadata": self.metadata,
        }
        text = json.dumps(whole, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()


def request_of(
    kind: str,
    fields: dict[str, Any],
    *,
    on_complete: Mapping[str, Any] | None = None,
    notify_url: str | None = None,
    idempotency_key: str | None = None,
    metadata: Mapping[str, str] | None = None,
    archive_key: str | None = None,
) -> Request:
    """A request of `kind` with its own checked `fields` and the arguments every kind
    takes, checked in this order."""
    if notify_url is not None:
        check_url("notify_url", notify_url)
    callback = encode_on_complete(on_complete) if on_complete is not None else None
    return Request(
        kind=kind,
        fields={**fields, "notify_url": notify_url, "on_complete": callback},
        idempotency_key=None if idempotency_key is None else check_idempotency_key(idempotency_key),
        metadata=None if metadata is None else check_metadata(metadata),
        archive_key=None if archive_key is None else check_archive_key(archive_key),
    )


def lipsync_request(
    video_url: str, audio_url: str, webhook_url: str | None = None, **common: Any
) -> Request:
    """`submit_lipsync`'s arguments, checked; ValueError naming the first one refused.
    `common`: on_complete, notify_url, idempotency_key, metadata, archive_key."""
    check_url("video_url", video_url)
    check_url("audio_url", audio_url)
    if webhook_url is not None:
        check_url("webhook_url", webhook_url)
    fields = {"video_url": video_url, "audio_url": audio_url, "webhook_url": webhook_url}
    return request_of(LIPSYNC_KIND, fields, **common)


def adoption_request(akool_id: str, **common: Any) -> Request:
    """`archive_akool_job`'s arguments, checked; ValueError naming the first one refused.
    `common` as for `lipsync_request`."""
    return request_of(ADOPT, {"akool_id": check_akool_id(akool_id)}, **common)


def _record(request: Request, job_id: str, now: float, **values: Any) -> Job:
    return Job(
        id=job_id,
        created_ts=now,
        updated_ts=now,
        idempotency_key=request.idempotency_key,
        request_digest=request.digest,
        metadata=request.metadata,
        archive_key=request.archive_key,
        **request.fields,
        **values,
    )


def queued_job(request: Request, job_id: str, *, now: float) -> Job:
    """The record of a new job for `request` (lip-sync, or another kind whose Akool body
    its fields hold): queued, to be submitted."""
    if request.kind == LIPSYNC_KIND:
        return _record(request, job_id, now, status=JobStatus.QUEUED, kind=LIPSYNC_KIND)
    no_urls = {"video_url": "", "audio_url": ""}
    return _record(request, job_id, now, status=JobStatus.QUEUED, kind=request.kind, **no_urls)


def adopted_job(
    request: Request, job_id: str, *, now: float, poll_timeout: float, poll_owner: str
) -> Job:
    """The record of a job other code submitted to Akool: already `submitted` (never by
    us), polled by the loop named `poll_owner`. Akool's deletion is counted from now, as
    the adopter cannot say when the job was submitted: the expiry guard may be late by as
    much."""
    return _record(
        request,
        job_id,
        now,
        status=JobStatus.SUBMITTED,
        video_url="",
        audio_url="",
        submitted_ts=now,
        adopted_ts=now,
        kind=UNKNOWN_KIND,
        expires_ts=now + AKOOL_FILE_LIFETIME_SECONDS,
        poll_deadline_ts=now + poll_timeout,
        poll_owner=poll_owner,
    )
