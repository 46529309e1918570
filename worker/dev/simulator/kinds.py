"""The video kinds the simulator serves: one table row each, the only place a kind is described.

Every kind shares lip-sync's auth, its result lookup (``infobymodelid``) and its webhook
envelope; only the submit differs (its path, its body and the spelling of its webhook field).
A row names the submit path, the body's required and optional fields with their JSON types,
the field whose URL carries the ``sim_*`` script (see ``scenario``), the webhook field, the
callback's ``type`` and what the lookup adds for the kind. Adding a kind is adding a row.

The product's own table of kinds (worker/akool/kinds.py) is written apart from this one; the
simulator does not import it for now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LIPSYNC = "lipsync"
TALKING_PHOTO = "talking_photo"
VIDEO_TRANSLATION = "video_translation"
TALKING_AVATAR = "talking_avatar"
CHARACTER_SWAP = "character_swap"

# The translation's extra result files: the lookup's ``audio_splits`` field -> the file
# name the simulator serves it under (``/assets/<job id>/<name>``).
ASSET_FILES = {
    "original_srt_url": "original.srt",
    "translated_srt_url": "translated.srt",
    "no_caption_video_url": "no_caption.mp4",
}


@dataclass(frozen=True)
class SimKind:
    """One kind of video job: its submit and what its lookup and callbacks answer."""

    name: str
    path: str
    # Body field -> JSON type ("text", "int", "number", "bool", "object", "objects").
    required: Mapping[str, str]
    optional: Mapping[str, str] = field(default_factory=dict)
    # The field whose URL scripts the job: a name, or "list.0.key" for a list's element.
    primary: str = "video_url"
    audio_field: str | None = "audio_url"
    webhook_field: str = "webhookUrl"
    callback_type: str = LIPSYNC
    # The name of the status in the submit's answer (the lookup always says video_status).
    submit_status_field: str = "video_status"
    # The lookup also answers progress, and error_code/error_reason at status 4.
    detailed: bool = False
    # The lookup's audio_splits fields at status 3 (see ASSET_FILES).
    assets: tuple[str, ...] = ()


KINDS: dict[str, SimKind] = {
    kind.name: kind
    for kind in (
        SimKind(
            LIPSYNC,
            "/api/open/v3/content/video/lipsync",
            {"video_url": "text", "audio_url": "text"},
        ),
        SimKind(
            TALKING_PHOTO,
            "/api/open/v3/content/video/createbytalkingphoto",
            {"talking_photo_url": "text", "audio_url": "text"},
            {"prompt": "text", "resolution": "text"},
            primary="talking_photo_url",
            callback_type="talking photo",
        ),
        SimKind(
            VIDEO_TRANSLATION,
            "/api/open/v3/content/video/createbytranslate",
            {"url": "text", "language": "text"},
            {
                "source_language": "text",
                "lipsync": "bool",
                "speaker_num": "int",
                "remove_bgm": "bool",
                "caption_type": "int",
                "caption_url": "text",
                "studio_voice": "object",
                "dynamic_duration": "bool",
            },
            primary="url",
            audio_field=None,
            callback_type="video translate",
            detailed=True,
            assets=tuple(ASSET_FILES),
        ),
        SimKind(
            TALKING_AVATAR,
            "/api/open/v3/talkingavatar/create",
            {"avatar_from": "int", "elements": "objects"},
            {"width": "int", "height": "int"},
            primary="elements.0.url",
            audio_field=None,
            callback_type="avatar",
        ),
        SimKind(
            CHARACTER_SWAP,
            "/api/open/v4/characterSwap/create",
            {"image": "text", "video": "text"},
            {"duration": "number", "resolution": "text", "mode": "text", "prompt": "text"},
            primary="video",
            audio_field=None,
            webhook_field="webhookurl",
            # Akool's pages name no callback type for character swap: this is our choice,
            # spelled like the others (words, lower case), until a real callback says.
            callback_type="character swap",
            submit_status_field="status",
        ),
    )
}
KINDS_BY_PATH: dict[str, SimKind] = {kind.path: kind for kind in KINDS.values()}


def _has_type(value: Any, json_type: str) -> bool:
    """True when ``value`` is of ``json_type``; a required text or list must not be empty."""
    if json_type in ("int", "number") and isinstance(value, bool):
        return False  # JSON true is no number, though Python's bool is an int
    if json_type == "text":
        return isinstance(value, str)
    if json_type == "int":
        return isinstance(value, int)
    if json_type == "number":
        return isinstance(value, int | float)
    if json_type == "bool":
        return isinstance(value, bool)
    if json_type == "object":
        return isinstance(value, dict)
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def primary_url(kind: SimKind, body: Any) -> str | None:
    """The URL that scripts a job of ``kind`` from its submit ``body``; None when absent."""
    value: Any = body
    for step in kind.primary.split("."):
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value if isinstance(value, str) and value else None


def body_ok(kind: SimKind, body: Any) -> bool:
    """True when ``body`` has every required field, non-empty and of its type, every optional
    field present of its type (null counts as absent), and a primary URL."""
    if not isinstance(body, dict) or primary_url(kind, body) is None:
        return False
    for name, json_type in kind.required.items():
        value = body.get(name)
        if not _has_type(value, json_type) or value in ("", []):
            return False
    return all(
        body.get(name) is None or _has_type(body[name], json_type)
        for name, json_type in kind.optional.items()
    )


def webhook_url(kind: SimKind, body: Any) -> str | None:
    """The webhook URL a submit names in its kind's spelling, or None."""
    value = body.get(kind.webhook_field) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None
