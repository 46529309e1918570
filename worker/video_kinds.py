"""The checked requests of Akool's other video kinds (talking photo, video translation,
talking avatar, character swap), as `contract.lipsync_request` is lip-sync's.

Each builder checks its kind's documented limits and returns a `contract.Request` whose
`kind` is the kind's name (worker.akool.KINDS) and whose `fields` are `{"body": <exactly the
JSON Akool gets, without the webhook field>, "webhook_url": <the caller's own, or None>}`.
Every refusal is a ValueError naming the argument and the limit, raised before anything is
stored, in the order of the builder's arguments and then of `common` (as for lip-sync).

`common` is what `submit_lipsync` takes besides its URLs: on_complete, notify_url,
idempotency_key, metadata, archive_key and webhook_url.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from worker.akool import KINDS, Kind
from worker.contract import ECHO_CHARS, Request, check_url, request_of

TALKING_PHOTO = KINDS["talking_photo"]
VIDEO_TRANSLATION = KINDS["video_translation"]
TALKING_AVATAR = KINDS["talking_avatar"]
CHARACTER_SWAP = KINDS["character_swap"]

# Akool's documented limits.
MAX_PROMPT_CHARS = 500
TALKING_PHOTO_RESOLUTIONS = ("720", "1080")
CHARACTER_SWAP_RESOLUTIONS = ("480p", "720p", "1080p")
CHARACTER_SWAP_MODES = ("animate", "replace")
MIN_DURATION_SECONDS = 1
MAX_DURATION_SECONDS = 120
MIN_CAPTION_TYPE, MAX_CAPTION_TYPE = 0, 4
AVATAR_SOURCES = (2, 3)  # 2: one of Akool's avatars, 3: the user's own
ELEMENT_TYPES = ("avatar", "image", "audio")
DEFAULT_SOURCE_LANGUAGE = "DEFAULT"  # Akool detects the spoken language
# Our own bounds where Akool documents none: generous, but no unbounded input is stored.
MAX_LANGUAGE_CODE_CHARS = 16
MAX_LANGUAGES = 20
MAX_SPEAKERS = 20
MAX_STUDIO_VOICE_BYTES = 4096
MIN_DIMENSION, MAX_DIMENSION = 64, 4096
MAX_ELEMENTS = 50
MAX_ELEMENT_ID_CHARS = 128
MAX_INPUT_TEXT_CHARS = 5000

_LANGUAGE_CODE = re.compile(rf"[A-Za-z0-9-]{{1,{MAX_LANGUAGE_CODE_CHARS}}}")


def talking_photo_request(
    photo_url: str,
    audio_url: str,
    *,
    prompt: str | None = None,
    resolution: str | None = None,
    **common: Any,
) -> Request:
    """A talking photo (a still photo speaking `audio_url`), checked: `prompt` (gestures) at
    most MAX_PROMPT_CHARS characters, `resolution` one of TALKING_PHOTO_RESOLUTIONS."""
    check_url("photo_url", photo_url)
    check_url("audio_url", audio_url)
    body: dict[str, Any] = {"talking_photo_url": photo_url, "audio_url": audio_url}
    if prompt is not None:
        body["prompt"] = _text("prompt", prompt, MAX_PROMPT_CHARS)
    if resolution is not None:
        body["resolution"] = _choice("resolution", resolution, TALKING_PHOTO_RESOLUTIONS)
    return _kind_request(TALKING_PHOTO, body, common)


def video_translation_request(
    video_url: str,
    language: str,
    *,
    source_language: str = DEFAULT_SOURCE_LANGUAGE,
    lipsync: bool = False,
    options: Mapping[str, Any] | None = None,
    **common: Any,
) -> Request:
    """A video translated into `language` (one or more comma-separated language codes),
    checked; `options` holds Akool's other documented fields (TRANSLATION_OPTIONS), each
    checked against its documented type; an unknown one is refused."""
    check_url("video_url", video_url)
    body: dict[str, Any] = {
        "url": video_url,
        "language": _languages("language", language),
        "source_language": _languages("source_language", source_language),
        "lipsync": _flag("lipsync", lipsync),
    }
    if options is not None:
        body.update(_options(options))
    return _kind_request(VIDEO_TRANSLATION, body, common)


def talking_avatar_request(
    elements: list[dict[str, Any]],
    *,
    avatar_from: int,
    width: int | None = None,
    height: int | None = None,
    **common: Any,
) -> Request:
    """A talking avatar made of `elements` (1 to MAX_ELEMENTS dicts, see ELEMENT_KEYS),
    checked: `avatar_from` one of AVATAR_SOURCES, `width` and `height` whole pixels from
    MIN_DIMENSION to MAX_DIMENSION."""
    body: dict[str, Any] = {
        "elements": _elements(elements),
        "avatar_from": _choice("avatar_from", avatar_from, AVATAR_SOURCES),
    }
    if width is not None:
        body["width"] = _whole("width", width, MIN_DIMENSION, MAX_DIMENSION)
    if height is not None:
        body["height"] = _whole("height", height, MIN_DIMENSION, MAX_DIMENSION)
    return _kind_request(TALKING_AVATAR, body, common)


def character_swap_request(
    image_url: str,
    video_url: str,
    *,
    mode: str = "animate",
    resolution: str | None = None,
    duration: float | None = None,
    prompt: str | None = None,
    **common: Any,
) -> Request:
    """The character of `image_url` (PNG or JPEG) swapped into `video_url` (MP4), checked:
    `mode` one of CHARACTER_SWAP_MODES, `resolution` one of CHARACTER_SWAP_RESOLUTIONS,
    `duration` MIN_DURATION_SECONDS to MAX_DURATION_SECONDS, `prompt` at most
    MAX_PROMPT_CHARS characters."""
    check_url("image_url", image_url)
    check_url("video_url", video_url)
    body: dict[str, Any] = {
        "image": image_url,
        "video": video_url,
        "mode": _choice("mode", mode, CHARACTER_SWAP_MODES),
    }
    if resolution is not None:
        body["resolution"] = _choice("resolution", resolution, CHARACTER_SWAP_RESOLUTIONS)
    if duration is not None:
        body["duration"] = _seconds("duration", duration)
    if prompt is not None:
        body["prompt"] = _text("prompt", prompt, MAX_PROMPT_CHARS)
    return _kind_request(CHARACTER_SWAP, body, common)


def _kind_request(kind: Kind, body: dict[str, Any], common: dict[str, Any]) -> Request:
    """The request of `kind` for a checked `body`, with the caller's webhook URL and the
    arguments every kind takes checked after it."""
    # The builders and the table must agree; a body field the row lacks is our bug.
    assert set(body) <= set(kind.body_fields), sorted(set(body) - set(kind.body_fields))
    webhook_url = common.pop("webhook_url", None)
    if webhook_url is not None:
        check_url("webhook_url", webhook_url)
    return request_of(kind.name, {"body": body, "webhook_url": webhook_url}, **common)


# --- the checks of one value ---------------------------------------------------------------


def _shown(value: object) -> str:
    """A refused value for an error message: at most ECHO_CHARS characters of a string or a
    number, nothing of a string holding an "@" (it may be a password, as in a URL), and only
    the type of anything else (which may be huge)."""
    if isinstance(value, str):
        return "(not quoted)" if "@" in value else repr(value[:ECHO_CHARS])
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large int"  # repr refuses ints past 4,300 digits
    if isinstance(value, int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _number(value: object) -> TypeGuard[int | float]:
    """An int or a float, not a bool (True is no duration)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {_shown(value)}")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters long; at most {limit} are allowed")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError(f"{name} must be valid Unicode (no lone surrogates)")
    return value


def _choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    # The type too: 720 is not "720", and True is not 1.
    if not any(type(value) is type(c) and value == c for c in choices):
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {_shown(value)}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {_shown(value)}")
    return value


def _whole(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {_shown(value)}")
    return value


def _finite(name: str, value: object) -> float:
    if not _number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {_shown(value)}")
    return value


def _seconds(name: str, value: object) -> float:
    low, high = MIN_DURATION_SECONDS, MAX_DURATION_SECONDS
    if not _number(value) or not low <= value <= high:
        raise ValueError(f"{name} must be {low} to {high} seconds, got {_shown(value)}")
    return value


def _languages(name: str, value: object) -> str:
    """One or more comma-separated language codes (each 1 to MAX_LANGUAGE_CODE_CHARS
    letters, digits or "-"; at most MAX_LANGUAGES of them), passed on as given."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string of language codes, got {_shown(value)}")
    codes = value.split(",")
    if len(codes) > MAX_LANGUAGES:
        raise ValueError(f"{name} has {len(codes)} codes; at most {MAX_LANGUAGES} are allowed")
    if not all(_LANGUAGE_CODE.fullmatch(code) for code in codes):
        raise ValueError(
            f"{name} must be comma-separated codes of 1 to {MAX_LANGUAGE_CODE_CHARS} letters, "
            f"digits or -, got {_shown(value)}"
        )
    return value


def _json_object(name: str, value: object, limit: int) -> dict[str, Any]:
    """A copy of a dict JSON carries exactly (string keys, no NaN, no tuples), at most
    `limit` bytes of UTF-8 JSON."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict, got {_shown(value)}")
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
        raise ValueError(f"{name} must hold only what JSON carries ({type(e).__name__})") from e
    if size > limit:
        raise ValueError(f"{name} is {size} bytes of JSON; at most {limit} are allowed")
    copy = json.loads(text)
    if copy != value:
        raise ValueError(f"{name} must hold only what JSON carries exactly (string keys, lists)")
    assert isinstance(copy, dict)
    return copy


# --- video translation's options -------------------------------------------------------------


def _caption_url(name: str, value: Any) -> str:
    check_url(name, value)
    return str(value)


TRANSLATION_OPTIONS: Mapping[str, Callable[[str, Any], Any]] = {
    "speaker_num": lambda name, v: _whole(name, v, 1, MAX_SPEAKERS),
    "remove_bgm": _flag,
    "caption_type": lambda name, v: _whole(name, v, MIN_CAPTION_TYPE, MAX_CAPTION_TYPE),
    "caption_url": _caption_url,
    "studio_voice": lambda name, v: _json_object(name, v, MAX_STUDIO_VOICE_BYTES),
    "dynamic_duration": _flag,
}


def _options(options: object) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a dict, got {_shown(options)}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        check = TRANSLATION_OPTIONS.get(key) if isinstance(key, str) else None
        if check is None:
            known = ", ".join(TRANSLATION_OPTIONS)
            raise ValueError(f"options has an unknown key {_shown(key)}; known: {known}")
        out[key] = check(f"options[{key!r}]", value)
    return out


# --- talking avatar's elements ---------------------------------------------------------------


def _element_url(name: str, value: Any) -> str:
    check_url(name, value)
    return str(value)


# An element's keys as Akool's page names them ("scale and offsets": scale_x, scale_y,
# offset_x, offset_y, in the snake case of its other fields).
ELEMENT_KEYS: Mapping[str, Callable[[str, Any], Any]] = {
    "type": lambda name, v: _choice(name, v, ELEMENT_TYPES),
    "url": _element_url,
    "avatar_id": lambda name, v: _text(name, v, MAX_ELEMENT_ID_CHARS),
    "voice_id": lambda name, v: _text(name, v, MAX_ELEMENT_ID_CHARS),
    "input_text": lambda name, v: _text(name, v, MAX_INPUT_TEXT_CHARS),
    "scale_x": _finite,
    "scale_y": _finite,
    "offset_x": _finite,
    "offset_y": _finite,
}


def _elements(elements: object) -> list[dict[str, Any]]:
    if not isinstance(elements, list | tuple):
        raise ValueError(f"elements must be a list of dicts, got {_shown(elements)}")
    if not 1 <= len(elements) <= MAX_ELEMENTS:
        raise ValueError(f"elements must hold 1 to {MAX_ELEMENTS} items, got {len(elements)}")
    return [_element(f"elements[{i}]", element) for i, element in enumerate(elements)]


def _element(name: str, element: object) -> dict[str, Any]:
    if not isinstance(element, Mapping):
        raise ValueError(f"{name} must be a dict, got {_shown(element)}")
    if "type" not in element:
        raise ValueError(f"{name} must have a type, one of {', '.join(ELEMENT_TYPES)}")
    out: dict[str, Any] = {}
    for key, value in element.items():
        check = ELEMENT_KEYS.get(key) if isinstance(key, str) else None
        if check is None:
            known = ", ".join(ELEMENT_KEYS)
            raise ValueError(f"{name} has an unknown key {_shown(key)}; known: {known}")
        out[key] = check(f"{name}.{key}", value)
    return out
