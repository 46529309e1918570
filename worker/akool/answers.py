"""What Akool's answers about a job say: the `_id` a submit gives, and what a status lookup
says (`AkoolStatus`), typed; anything malformed is an error from worker/errors.py. Plain
functions of decoded JSON: the client (worker/akool/client.py) does the HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.errors import AkoolDoneWithoutUrl, AkoolPermanentError, AkoolTransientError
from worker.net import http_url

STATUS_QUEUED, STATUS_PROCESSING, STATUS_COMPLETED, STATUS_FAILED = 1, 2, 3, 4


@dataclass(frozen=True)
class AkoolStatus:
    """What a poll says about one Akool job."""

    akool_id: str
    status: int
    video_url: str | None = None

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
    return AkoolStatus(akool_id=akool_id, status=status, video_url=video_url)
