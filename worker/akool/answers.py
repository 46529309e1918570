"""What Akool's answers about a job say: the `_id` a submit gives, and what a status lookup
says (`AkoolStatus`), typed; anything malformed is an error from worker/errors.py. Plain
functions of decoded JSON: the client (worker/akool/client.py) does the HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.akool.kinds import KINDS
from worker.errors import AkoolDoneWithoutUrl, AkoolPermanentError, AkoolTransientError
from worker.net import http_url

# Entries of a list-shaped container of extra files read, at most (it came off the network).
MAX_SPLITS = 16
STATUS_QUEUED, STATUS_PROCESSING, STATUS_COMPLETED, STATUS_FAILED = 1, 2, 3, 4


@dataclass(frozen=True)
class AkoolStatus:
    """What a poll says about one Akool job."""

    akool_id: str
    status: int
    video_url: str | None = None
    # The extra result files the answer names (a kind's `assets`, worker/akool/kinds.py), by
    # field, each a usable http(s) URL; a file it does not name is simply absent.
    assets: Mapping[str, str] = field(default_factory=dict)
    # Why Akool failed it, where it says (video translation at status 4): its text is
    # Akool's, unchecked; the job's error sentence escapes and bounds it.
    error_code: int | None = None
    error_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.status == STATUS_COMPLETED

    @property
    def failed(self) -> bool:
        return self.status == STATUS_FAILED


def require_id(data: Any, url: str) -> str:
    """Akool's `_id` from a submit's `data`; a success without a usable one is permanent."""
    akool_id = data.get("_id") if isinstance(data, Mapping) else None
    if not isinstance(akool_id, str) or not akool_id.strip() or len(akool_id) > 200:
        raise AkoolPermanentError(
            "Akool accepted the submit but its answer carried no job id (_id)", url=url
        )
    return akool_id


def _unusable(video: Any) -> str:
    """Why a completed answer's `video` is no URL, naming only its type (the text came from
    the network)."""
    if video is None:
        return "missing"
    if isinstance(video, str) and not video.strip():
        return "empty"
    return f"a {type(video).__name__} that is not an http(s) URL with a host"


def parse_status(akool_id: str, data: Any, url: str) -> AkoolStatus:
    """Turn a poll's `data` into an AkoolStatus; a malformed one is transient."""
    status = data.get("video_status") if isinstance(data, Mapping) else None
    if isinstance(status, str) and status in ("1", "2", "3", "4"):
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or status not in (1, 2, 3, 4):
        raise AkoolTransientError(
            f"Akool's status answer had no valid video_status ({status!r:.40})", url=url
        )
    video = data.get("video") if isinstance(data, Mapping) else None
    video_url = http_url(video)
    if status == STATUS_COMPLETED and video_url is None:
        raise AkoolDoneWithoutUrl(
            f"Akool reports the job completed but gives no usable video URL (its video is "
            f"{_unusable(video)})",
            url=url,
        )
    return AkoolStatus(
        akool_id=akool_id,
        status=status,
        video_url=video_url,
        assets=_assets(data) if status == STATUS_COMPLETED else {},
        error_code=_error_code(data) if status == STATUS_FAILED else None,
        error_reason=_error_reason(data) if status == STATUS_FAILED else None,
    )


def _assets(data: Mapping[str, Any]) -> dict[str, str]:
    """The extra result files a completed answer names, by field: any kind's (the table
    says where each lives), each only when it is a usable http(s) URL. A container given as
    a list (one entry per split) is read entry by entry, the first URL of a field winning."""
    found: dict[str, str] = {}
    for asset in (asset for kind in KINDS.values() for asset in kind.assets):
        held = data.get(asset.container)
        entries = held if isinstance(held, list) else [held]
        for entry in entries[:MAX_SPLITS]:
            url = http_url(entry.get(asset.field)) if isinstance(entry, Mapping) else None
            if url is not None and asset.field not in found:
                found[asset.field] = url
    return found


def _error_code(data: Mapping[str, Any]) -> int | None:
    code = data.get("error_code")
    if isinstance(code, bool) or not isinstance(code, int | str):
        return None
    text = str(code).strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


def _error_reason(data: Mapping[str, Any]) -> str | None:
    reason = data.get("error_reason")
    return reason if isinstance(reason, str) and reason.strip() else None
