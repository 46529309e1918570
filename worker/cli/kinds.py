"""Akool's video kinds as the `lipsync` command takes them: each kind's arguments (`ARGS`),
spelled as `submit --kind K` flags and as a batch file's columns, read from text, checked by
the kind's request builder and submitted by its public call (worker.api).

An argument's column is its keyword in the public call (`photo_url`, `duration`, ...); its
flag is the short form a person types (`--photo`, `--duration`). Text becomes the type the
call takes: `duration` a number, `avatar_from`, `width` and `height` whole numbers,
`lipsync` true/false, `elements` JSON (from a file on the command line, from the cell in a
batch). Every refusal is a ValueError, as the public calls' are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.api import (
    submit_character_swap,
    submit_lipsync,
    submit_talking_avatar,
    submit_talking_photo,
    submit_video_translation,
)
from worker.contract import Request, lipsync_request
from worker.names import LIPSYNC_KIND, UNKNOWN_KIND
from worker.video_kinds import (
    character_swap_request,
    talking_avatar_request,
    talking_photo_request,
    video_translation_request,
)

# A refused number or flag is quoted up to this many characters.
SHOWN_CHARS = 40
_INTEGER = re.compile(r"[+-]?[0-9]+")
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1"), ("false", "no", "0")


def _text(name: str, text: str) -> str:
    return text


def _whole(name: str, text: str) -> int:
    if not _INTEGER.fullmatch(text.strip()) or len(text) > SHOWN_CHARS:
        raise ValueError(f"{name} must be a whole number, got {text[:SHOWN_CHARS]!r}")
    return int(text)


def _number(name: str, text: str) -> int | float:
    """A whole number stays an int (as a caller would write `duration=10`), else a float."""
    if _INTEGER.fullmatch(text.strip()) and len(text) <= SHOWN_CHARS:
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text[:SHOWN_CHARS]!r}") from None


def _flag(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"{name} must be true or false, got {text[:SHOWN_CHARS]!r}")
    return word in TRUE_WORDS


def _json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:  # the builder then checks what the JSON holds
        raise ValueError(f"{name} must be JSON (a list of objects): {e}") from None


@dataclass(frozen=True)
class Arg:
    """One argument of a kind: its keyword (and batch column), its flag, whether the kind
    needs it, and how its text becomes the value the call takes."""

    name: str
    flag: str
    required: bool = False
    read: Callable[[str, str], Any] = _text
    metavar: str = "TEXT"


ARGS: Mapping[str, tuple[Arg, ...]] = {
    LIPSYNC_KIND: (
        Arg("video_url", "--video", True, metavar="URL"),
        Arg("audio_url", "--audio", True, metavar="URL"),
    ),
    "talking_photo": (
        Arg("photo_url", "--photo", True, metavar="URL"),
        Arg("audio_url", "--audio", True, metavar="URL"),
        Arg("prompt", "--prompt"),
        Arg("resolution", "--resolution", metavar="R"),
    ),
    "video_translation": (
        Arg("video_url", "--video", True, metavar="URL"),
        Arg("language", "--language", True, metavar="CODES"),
        Arg("source_language", "--source-language", metavar="CODE"),
        Arg("lipsync", "--lipsync", read=_flag, metavar="true|false"),
    ),
    "talking_avatar": (
        Arg("elements", "--elements", True, read=_json, metavar="FILE.json"),
        Arg("avatar_from", "--avatar-from", True, read=_whole, metavar="N"),
        Arg("width", "--width", read=_whole, metavar="PX"),
        Arg("height", "--height", read=_whole, metavar="PX"),
    ),
    "character_swap": (
        Arg("image_url", "--image", True, metavar="URL"),
        Arg("video_url", "--video", True, metavar="URL"),
        Arg("mode", "--mode", metavar="M"),
        Arg("duration", "--duration", read=_number, metavar="S"),
        Arg("resolution", "--resolution", metavar="R"),
        Arg("prompt", "--prompt"),
    ),
}
KIND_NAMES = tuple(ARGS)
# What `jobs --kind` may ask for: an adopted job's kind too (Akool's lookup does not say).
LISTED_KINDS = (*KIND_NAMES, UNKNOWN_KIND)

_BUILDERS: Mapping[str, Callable[..., Request]] = {
    LIPSYNC_KIND: lipsync_request,
    "talking_photo": talking_photo_request,
    "video_translation": video_translation_request,
    "talking_avatar": talking_avatar_request,
    "character_swap": character_swap_request,
}
_SUBMITTERS: Mapping[str, Callable[..., str]] = {
    LIPSYNC_KIND: submit_lipsync,
    "talking_photo": submit_talking_photo,
    "video_translation": submit_video_translation,
    "talking_avatar": submit_talking_avatar,
    "character_swap": submit_character_swap,
}


def every_arg() -> dict[str, Arg]:
    """Each argument of any kind once, by flag (kinds share --video, --audio, ...)."""
    return {arg.flag: arg for args in ARGS.values() for arg in args}


def check_kind(kind: str) -> str:
    """`kind` when it is one of KIND_NAMES; ValueError naming them otherwise."""
    if kind not in ARGS:
        raise ValueError(f"kind must be one of {', '.join(KIND_NAMES)}, got {kind[:80]!r}")
    return kind


def read_args(kind: str, texts: Mapping[str, str], *, flags: bool) -> dict[str, Any]:
    """The call's keyword arguments from `texts` (column name -> text, given ones only),
    each read as its Arg says; ValueError for an argument the kind does not take, or one
    it needs missing, named as a flag when `flags`, else as a column."""
    args = {arg.name: arg for arg in ARGS[check_kind(kind)]}

    def named(name: str) -> str:
        return args[name].flag if flags and name in args else name

    for name in texts:
        if name not in args:
            shown = every_arg_by_name(name).flag if flags else name
            taken = ", ".join(named(n) for n in args)
            raise ValueError(f"{shown} is not an argument of kind {kind} (it takes {taken})")
    missing = [named(arg.name) for arg in args.values() if arg.required and arg.name not in texts]
    if missing:
        raise ValueError(f"kind {kind} needs {' and '.join(missing)}")
    return {name: args[name].read(name, text) for name, text in texts.items()}


def every_arg_by_name(name: str) -> Arg:
    """The Arg of any kind whose keyword is `name`."""
    return next(arg for args in ARGS.values() for arg in args if arg.name == name)


def kind_request(kind: str, args: Mapping[str, Any], **common: Any) -> Request:
    """The checked request (worker/contract.py, worker/video_kinds.py) of `kind` for
    `args`; `common` as the public calls take it (idempotency_key, metadata, ...)."""
    return _BUILDERS[check_kind(kind)](**args, **common)


def submit_kind(kind: str, args: Mapping[str, Any], **common: Any) -> str:
    """Submit through the kind's public call (worker.api); the job's id."""
    return _SUBMITTERS[check_kind(kind)](**args, **common)
